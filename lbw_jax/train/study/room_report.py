"""``python -m lbw_jax.train.study.room_report OUT.md NAME=LADDER_DIR ...``

Part (d) of the signal study (docs/signals.md): the room left along the step, read by three
probes of the critical step eta_c (lbw_jax.policies.room), scored against the ladder's largest
stable LR (``lbw_jax.train.study.ladder``, whose traced AdamW records them at every step):

- ``own``: the parabola through the step's own loss, its slope g.u and one forward pass at u
  (the probe the governor's mechanism 5 runs; 1 forward pass);
- ``held``: the same critical step from three forward passes on a fixed held batch at 0, u, 2u
  (less batch noise, as Kalra et al. do; 3 forward passes);
- ``pooled``: one parabola pooled over steps, -2 EMA(g.u / lr) / EMA(u'Hu / lr^2) with decay
  ``POOL_DECAY`` (Mutschler & Zell 2021; the own probe's forward pass, nothing more).

Each is read as a critical LR, eta_c = room x the LR in use. The tables: eta_c against the
ceiling at every stop; whether it says how much room there is far below the ceiling (eta_c read
at a quarter of it against eta_c read at it, where the overshoot reads about 1); its noise from
step to step; and the fraction lr / eta_c at which the tuned base run trains.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from lbw_jax.train.study.ladder_report import ceilings, window_level

POOL_DECAY = 0.8
PROBES = ("own", "held", "pooled")
COST = {"own": 1, "held": 3, "pooled": 1}


def _ema(x: np.ndarray, decay: float) -> np.ndarray:
    out, acc = np.full_like(x, np.nan), np.nan
    for i, v in enumerate(x):
        if np.isfinite(v):
            acc = v if not np.isfinite(acc) else decay * acc + (1 - decay) * v
        out[i] = acc
    return out


def critical_lrs(trace: dict, seed: int) -> dict[str, np.ndarray]:
    """Each probe's critical LR at every step of one seed's base run (NaN: no reading)."""
    arr = lambda k: np.asarray([np.nan if v is None else v for v in trace[k][seed]], np.float64)
    lr, room, held, pred, curv = (arr(k) for k in ("lr", "room", "room_held", "pred", "curv"))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = -2.0 * _ema(pred / lr, POOL_DECAY) / _ema(curv / lr ** 2, POOL_DECAY)
        pooled = np.where(pooled > 0, pooled, np.nan)
        return {"own": room * lr, "held": held * lr, "pooled": pooled, "lr": lr}


def _window(study, stop, seed, lr, name) -> float:
    """A window's level of signal ``name`` (NaN when that window was not run)."""
    for r in study["windows"]:
        if r["stop"] == stop and r["seed"] == seed and np.isclose(r["lr"], lr):
            return window_level(r, name)
    return float("nan")


def score(study: dict) -> dict:
    """Per stop: the ceiling and each probe's eta_c (medians over seeds); per probe: the ratio
    ceiling / eta_c's spread over stops, the room far below the ceiling, the noise, and the
    tuned run's fraction lr / eta_c."""
    ceil, seeds = ceilings(study), study["seeds"]
    per_seed = {s: critical_lrs(study["base_trace"], i) for i, s in enumerate(seeds)}
    rows = []
    for stop in study["stops"]:
        found = [ceil[stop][s] for s in seeds if ceil[stop][s] is not None]
        eta = {p: float(np.nanmedian([np.nanmedian(per_seed[s][p][stop:stop + 5]) for s in seeds]))
               for p in PROBES}
        rows.append({"stop": stop, "lr": study["schedule_lr"][str(stop)],
                     "ceiling": float(np.median(found)) if found else None, "eta": eta})
    below = []   # eta_c (own) read at a quarter of the ceiling over eta_c read at the ceiling
    for stop in study["stops"]:
        for s in seeds:
            c = ceil[stop][s]
            quarter = [x for x in study["ladder"] if np.isclose(x, c / 4)] if c else []
            if quarter:
                eta = lambda lr: _window(study, stop, s, lr, "room") * lr   # the critical LR read there
                below.append((eta(quarter[0]) / eta(c), _window(study, stop, s, quarter[0], "overshoot"),
                              _window(study, stop, s, c, "overshoot")))
    out = {"rows": rows, "below": below, "probes": {}}
    for p in PROBES:
        ratios = [r["ceiling"] / r["eta"][p] for r in rows if r["ceiling"] and np.isfinite(r["eta"][p])]
        noise, frac = [], []
        for s in seeds:
            x = np.log(per_seed[s][p][25:])
            d = np.diff(x)
            noise.append(np.nanstd(d[np.isfinite(d)]) / np.sqrt(2) if np.isfinite(d).sum() > 2 else np.nan)
            f = per_seed[s]["lr"][20:] / per_seed[s][p][20:]
            frac += list(f[np.isfinite(f)])
        out["probes"][p] = {"ratio": ratios, "noise": float(np.nanmedian(noise)),
                            "readings": float(np.mean([np.isfinite(per_seed[s][p][1:]).mean() for s in seeds])),
                            "fraction": np.percentile(frac, [10, 50, 90]).tolist() if frac else [np.nan] * 3}
    return out


def _fmt(x, spec=".3g") -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def section(name: str, study: dict) -> list[str]:
    sc = score(study)
    lines = [f"### {name}", "", f"Command: `{study.get('command', '?')}`; machine: {study.get('machine', '?')}.", "",
             "| stop | base run's LR | ceiling (median over seeds) | " +
             " | ".join(f"eta_c `{p}` (ceiling / eta_c)" for p in PROBES) + " |",
             "|---|---|---|" + "---|" * len(PROBES)]
    for r in sc["rows"]:
        cells = [f"{_fmt(r['eta'][p])} ({_fmt(r['ceiling'] / r['eta'][p], '.2f') if r['ceiling'] else '—'})"
                 for p in PROBES]
        lines.append(f"| {r['stop']} | {r['lr']:.2e} | {_fmt(r['ceiling'])} | " + " | ".join(cells) + " |")
    lines += ["", "| probe | forward passes | steps with a reading | ceiling / eta_c over stops (min–max) | "
              "noise step to step (std of log eta_c) | tuned run's lr / eta_c (10th, median, 90th pct) |",
              "|---|---|---|---|---|---|"]
    for p in PROBES:
        q = sc["probes"][p]
        rng = f"{min(q['ratio']):.3f}–{max(q['ratio']):.3f}" if q["ratio"] else "—"
        lines.append(f"| `{p}` | {COST[p]} | {q['readings']:.0%} | {rng} | {_fmt(q['noise'], '.2f')} | "
                     + ", ".join(_fmt(v, ".3f") for v in q["fraction"]) + " |")
    if sc["below"]:
        b = np.asarray(sc["below"], np.float64)
        lines += ["", f"Far below the ceiling (a quarter of it; {len(b)} stop-seeds): eta_c `own` read there over "
                  f"eta_c read at the ceiling, median {np.nanmedian(b[:, 0]):.2f} (range {np.nanmin(b[:, 0]):.2f}–"
                  f"{np.nanmax(b[:, 0]):.2f}; 1 = it says exactly how much room there is), where `overshoot` reads "
                  f"{np.nanmedian(b[:, 1]):.2f} (at the ceiling {np.nanmedian(b[:, 2]):.2f})."]
    return lines + [""]


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    out = pathlib.Path(argv[1])
    lines = ["# The room probes against the ladder (part (d) of docs/signals.md)", "",
             f"Made by `python -m lbw_jax.train.study.room_report {' '.join(argv[1:])}`.", ""]
    for arg in argv[2:]:
        name, _, folder = arg.partition("=")
        lines += section(name, json.loads((pathlib.Path(folder) / "ladder.json").read_text()))
    out.write_text("\n".join(lines))
    print(f"room_report: wrote {out}")


if __name__ == "__main__":
    main(sys.argv)
