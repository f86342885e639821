"""The signal study's report: one table of the scores and one figure of the smoothed
signals by LR (the first seed), from what ``lbw_jax.train.study.signal_study`` measured."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lbw_jax.train.study.signal_scores import THRESHOLDS, ema  # noqa: E402


def _table(study) -> list[str]:
    cells, sc = study["cells"], study["scores"]
    stressed = [i for i, c in enumerate(cells) if c["lr"] in study["stressed_lrs"]]
    healthy = [i for i, c in enumerate(cells) if c["lr"] <= study["tuned_lr"]]
    harmed = sum(1 for i in stressed if sc["harm_onset"][i] >= 0)
    lines = [f"Stressed runs: {len(stressed)} (the loss EMA's harm test fires on {harmed}); "
             f"healthy runs: {len(healthy)}.", "",
             "| signal | flags when (smoothed) | stressed: flagged | stressed: flagged before the "
             "harm test | lead over the harm test, steps (median, range) | healthy: flagged | "
             f"healthy: flagged from step {study['transient']} |",
             "|---|---|---|---|---|---|---|"]
    lines.append(f"| the harm test itself (the governor's loss EMA) | — | {harmed}/{len(stressed)} | — | 0 | "
                 f"{sc['harm_healthy_flagged']}/{len(healthy)} | "
                 f"{sc['harm_healthy_flagged_after_transient']}/{len(healthy)} |")
    for name, (op, level) in THRESHOLDS.items():
        s = sc[name]
        lead = s["lead_steps"]
        lead_txt = f"{np.median(lead):+.0f} ({min(lead):+d} to {max(lead):+d})" if lead else "—"
        lines.append(f"| `{name}` | {op} {level:g} | {s['stressed_flagged']}/{len(stressed)} | "
                     f"{s['stressed_flagged_before_harm']}/{len(stressed)} | {lead_txt} | "
                     f"{s['healthy_flagged']}/{len(healthy)} | "
                     f"{s['healthy_flagged_after_transient']}/{len(healthy)} |")
    return lines


LEVEL_STEPS = (5, 10, 50)


def _levels(study) -> list[str]:
    """Each signal's smoothed level by LR at a few steps and at the end: the mean over
    seeds and the range, to read a level against the healthy one rather than a sign."""
    cells, last = study["cells"], len(study["cells"][0]["loss"]) - 1
    steps = [t for t in LEVEL_STEPS if t < last] + [last]
    lines = ["", f"Smoothed levels (EMA {study['smooth']:g}) by LR, mean over seeds [min, max]:", "",
             "| signal | LR | " + " | ".join(f"step {t}" for t in steps) + " |",
             "|---|---|" + "---|" * len(steps)]
    for name in THRESHOLDS:
        for lr in study["means"]:
            rows = [ema(np.array([np.nan if v is None else v for v in c[f"signal_{name}"]], float)[:, None],
                        study["smooth"])[:, 0] for c in cells if c["lr"] == lr]
            vals = np.array([[r[t] for t in steps] for r in rows])
            tag = " (tuned)" if lr == study["tuned_lr"] else (" (stressed)" if lr in study["stressed_lrs"] else "")
            lines.append(f"| `{name}` | {lr:g}{tag} | " + " | ".join(
                f"{np.nanmean(v):.3g} [{np.nanmin(v):.3g}, {np.nanmax(v):.3g}]" if np.isfinite(v).any() else "—"
                for v in vals.T) + " |")
    return lines


NOISE_DECAYS = (0.0, 0.5, 0.8, 0.9, 0.95)


def _noise(study, name: str = "overshoot") -> list[str]:
    """How much a signal moves step to step at the healthy LRs, after each smoothing: the
    standard deviation of its EMA from the restart transient on (mean over seeds). A level a
    law acts on must clear this, and every step of smoothing delays the flag."""
    cells, start = study["cells"], study["transient"]
    lines = ["", f"`{name}` step to step at the LRs at or below tuned, from step {start} on: "
             "the mean and the standard deviation of its EMA (mean over seeds):", "",
             "| LR | mean | " + " | ".join("raw sd" if d == 0 else f"sd, EMA {d:g}" for d in NOISE_DECAYS) + " |",
             "|---|---|" + "---|" * len(NOISE_DECAYS)]
    for lr in study["means"]:
        if lr > study["tuned_lr"]:
            continue
        traces = [np.array([np.nan if v is None else v for v in c[f"signal_{name}"]], float)[:, None]
                  for c in cells if c["lr"] == lr]
        mean = np.mean([np.nanmean(x[start:]) for x in traces])
        sds = [np.mean([np.nanstd(ema(x, d)[start:]) for x in traces]) for d in NOISE_DECAYS]
        lines.append(f"| {lr:g} | {mean:.3g} | " + " | ".join(f"{v:.3g}" for v in sds) + " |")
    return lines


def _figure(study, path: pathlib.Path) -> None:
    cells = [c for c in study["cells"] if c["seed"] == 0]
    names = list(THRESHOLDS)
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(9, 2.2 * (len(names) + 1)), sharex=True)
    for c in cells:
        label = f"LR {c['lr']:g}" + (" (tuned)" if c["lr"] == study["tuned_lr"] else "")
        axes[0].plot(ema(np.array(c["loss"], float)[:, None], 0.8)[:, 0], label=label)
        for ax, name in zip(axes[1:], names):
            x = np.array([np.nan if v is None else v for v in c[f"signal_{name}"]], float)
            ax.plot(ema(x[:, None], study["smooth"])[:, 0])
    axes[0].set_ylabel("loss (EMA 0.8)")
    axes[0].legend(fontsize=7, ncol=3)
    for ax, name in zip(axes[1:], names):
        ax.axhline(THRESHOLDS[name][1], color="k", lw=0.8, ls="--")
        ax.set_ylabel(name)
        ax.set_yscale("symlog", linthresh=1.0)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(study: dict, out: pathlib.Path) -> None:
    _figure(study, out / "signals.png")
    m = study["machine"]
    lines = ["# Signal study", "", f"Command: `{study['command']}`", "",
             f"Machine: {m['devices']}, {m['cpu']}, jax {m['jax']}.", "",
             f"Plain AdamW from the suite's shared start (validation perplexity "
             f"{study['start_ppl']:.2f}); tuned LR {study['tuned_lr']:g}, stressed LRs "
             f"{study['stressed_lrs']}. Final validation perplexity by LR: "
             + ", ".join(f"{lr:g}: {v:.2f}" for lr, v in study["means"].items()) + ".", "",
             f"A signal flags a step when its EMA (decay {study['smooth']:g}) crosses the level "
             f"of its mechanism. The harm test is the governor's, on the training loss: "
             f"{study['harm_knobs']}. Lead: harm step minus first flag (positive: earlier).", ""]
    lines += _table(study)
    lines += _levels(study)
    lines += _noise(study)
    lines += ["", "![signals](signals.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
