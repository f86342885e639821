"""The ladder's report: the largest stable LR at each stop, and each signal's level at it
(what ``lbw_jax.train.study.ladder`` measured)."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# The signals whose level could name a ceiling: the step's overshoot along its own direction,
# the Polyak ratio (below 1: above MoMo's cap) and the update's growth per unit LR.
READ = ("overshoot", "polyak", "update_growth")


def window_level(row: dict, name: str) -> float:
    """A window's level of a signal: the median over its steps after the first (the first
    step's signal compares with the base run's last update, not the window's own)."""
    values = np.asarray([np.nan if v is None else v for v in row[name][1:]], np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def ceilings(study) -> dict:
    """{stop: {seed: the largest stable LR, or None}}."""
    out = {}
    for r in study["windows"]:
        seeds = out.setdefault(r["stop"], {})
        best = seeds.get(r["seed"])
        if r["stable"] and (best is None or r["lr"] > best):
            seeds[r["seed"]] = r["lr"]
        seeds.setdefault(r["seed"], None)
    return out


def _at(study, stop, seed, lr, name) -> float:
    for r in study["windows"]:
        if r["stop"] == stop and r["seed"] == seed and np.isclose(r["lr"], lr):
            return window_level(r, name)
    return float("nan")


def _next_rung(study, lr):
    above = [x for x in study["ladder"] if x > lr * (1 + 1e-9)]
    return min(above) if above else None


def _summary_table(study) -> list[str]:
    base, ceil = study["base_lr"], ceilings(study)
    lines = ["| stop (step) | base run's LR | largest stable LR, × base LR (median (the lower), range over seeds) | "
             + " | ".join(f"`{n}` at it → next rung up" for n in READ) + " |",
             "|---|---|---|" + "---|" * len(READ)]
    for stop in study["stops"]:
        found = {s: lr for s, lr in ceil[stop].items() if lr is not None}
        if not found:
            lines.append(f"| {stop} | {study['schedule_lr'][str(stop)]:.2e} | none stable | "
                         + " | ".join("—" for _ in READ) + " |")
            continue
        rel = sorted(lr / base for lr in found.values())
        top = max(study["ladder"]) / base
        txt = lambda x: f"≥{x:.2f}" if np.isclose(x, top) else f"{x:.2f}"   # the ladder's top: censored
        cols = []
        for name in READ:
            at = np.nanmean([_at(study, stop, s, lr, name) for s, lr in found.items()])
            up = [(s, _next_rung(study, lr)) for s, lr in found.items()]
            nxt = [_at(study, stop, s, lr, name) for s, lr in up if lr is not None]
            cols.append(f"{at:.2f} → {np.nanmean(nxt):.2f}" if nxt else f"{at:.2f} → —")
        lines.append(f"| {stop} | {study['schedule_lr'][str(stop)]:.2e} | {txt(float(np.quantile(rel, 0.5, method='lower')))} "
                     f"({txt(rel[0])}–{txt(rel[-1])}; {len(found)}/{len(ceil[stop])} seeds) | "
                     + " | ".join(cols) + " |")
    return lines


def _rung_table(study, name: str) -> list[str]:
    stops = study["stops"]
    lines = [f"| LR (× base) | " + " | ".join(f"step {t}" for t in stops) + " |",
             "|---|" + "---|" * len(stops)]
    for lr in study["ladder"]:
        cells = []
        for stop in stops:
            rows = [r for r in study["windows"] if r["stop"] == stop and np.isclose(r["lr"], lr)]
            level = np.nanmean([window_level(r, name) for r in rows])
            stable = sum(r["stable"] for r in rows)
            cells.append(f"{level:.2f} ({stable}/{len(rows)})")
        lines.append(f"| {lr / study['base_lr']:.3g} | " + " | ".join(cells) + " |")
    return lines


def _figure(study, path: pathlib.Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    ceil = ceilings(study)
    for stop in study["stops"]:
        for seed, lr in ceil[stop].items():
            if lr is not None:
                a.scatter(stop, lr, color="C0", s=14)
    a.plot(study["stops"], [study["schedule_lr"][str(t)] for t in study["stops"]], "k--",
           label="the base run's scheduled LR")
    a.set(yscale="log", xlabel="step", ylabel="largest stable LR (per seed)",
          title=f"ground truth: windows of {study['window']} steps")
    a.legend()
    for i, stop in enumerate(study["stops"]):
        xs, ys, ok = [], [], []
        for lr in study["ladder"]:
            rows = [r for r in study["windows"] if r["stop"] == stop and np.isclose(r["lr"], lr)]
            xs.append(lr)
            ys.append(np.nanmean([window_level(r, "overshoot") for r in rows]))
            ok.append(all(r["stable"] for r in rows))
        b.plot(xs, ys, color=f"C{i}", label=f"step {stop}")
        b.scatter([x for x, k in zip(xs, ok) if k], [y for y, k in zip(ys, ok) if k], color=f"C{i}", s=14)
    b.set(xscale="log", xlabel="window's constant LR", ylabel="overshoot (median over the window)",
          title="overshoot by rung (dots: stable on every seed)")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(study, out: pathlib.Path) -> None:
    lines = ["# The largest stable LR as training goes on", "",
             f"Command: `{study.get('command', '')}`", "",
             f"Base run: AdamW at peak LR {study['base_lr']:g} on the suite's schedule, seeds "
             f"{study['seeds']}; a window of {study['window']} steps at each constant LR of the ladder "
             f"from the stops {study['stops']}, with the base run's parameters and Adam's state there. "
             "A window is stable when the validation loss after it is at most the stop's.", "",
             "## The ceiling, and each signal's level at it", ""]
    lines += _summary_table(study)
    for name in READ:
        lines += ["", f"## `{name}` by rung (mean over seeds; stable windows of all seeds in brackets)", ""]
        lines += _rung_table(study, name)
    lines += ["", "![the ceiling and the overshoot by rung](ladder.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    _figure(study, out / "ladder.png")
