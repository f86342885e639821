"""The stress report's PNG figures, one function each."""

from __future__ import annotations

import math

import numpy as np

from lbw_jax.train.stress.engine import faults as faults_lib


def draw(result, out, grid) -> list[str]:
    """Writes every figure into ``out``; returns their file names, in report order."""
    # Optional here, and the backend must be chosen before pyplot is imported.
    import matplotlib
    matplotlib.use("Agg")

    names = [_lr_stress(result, out, grid), _loss_and_scale(result, out)]
    if result.cfg.stress.scenarios:
        names.append(_scenarios(result, out))
    return names


def _linestyle(result, name) -> str:
    return "--" if result.kinds[name] in ("control", "replay") else "-"


def _lr_stress(result, out, grid) -> str:
    import matplotlib.pyplot as plt

    s = result.cfg.stress
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, per in grid.items():
        ran = np.asarray(list(per))
        means = np.array([per[lr]["mean"] for lr in per])
        stds = np.array([per[lr]["std"] for lr in per])
        ok = np.isfinite(means)
        line = ax.errorbar(ran[ok], means[ok], yerr=stds[ok], marker="o", capsize=3,
                           ls=_linestyle(result, name), label=result.labels[name])
        bad = [lr for lr in per if per[lr]["diverged"]]
        for lr in bad:
            y = per[lr]["mean"] if math.isfinite(per[lr]["mean"]) else np.nanmax(
                [g["mean"] for g in per.values()] + [result.start_ppl * s.diverge_ratio])
            ax.plot([lr], [y], "x", color=line[0].get_color(), markersize=10, mew=2)
    ax.axhline(result.start_ppl, color="gray", ls=":", label="start")
    ax.set(xscale="log", yscale="log", xlabel="peak learning rate", ylabel="final validation perplexity",
           title="LR stress: final perplexity (× = diverged)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "lr_stress.png", dpi=120)
    plt.close(fig)
    return "lr_stress.png"


def _panel_row(result, axes, series, ylabel, arms) -> None:
    """One panel per LR: each arm's clean cells at that LR, averaged over seeds."""
    for ax, lr in zip(axes, result.cfg.stress.lrs):
        for name in arms:
            runs = result.runs[name]
            idx = [i for i, c in enumerate(runs.cells) if c.scenario == "none"
                   and (c.lr == lr or name in result.lr_free)]   # an LR-free run stands everywhere
            if idx:
                y = series(runs)[:, idx].mean(axis=1)
                ax.plot(np.arange(1, len(y) + 1), y, label=result.labels[name], lw=1,
                        ls=_linestyle(result, name))
        ax.set(title=f"LR {lr:g}", xlabel="step")
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=6)


def _smooth(runs, k=10):
    x = runs.loss.astype(np.float64)
    kernel = np.ones(k) / k
    return np.stack([np.convolve(np.pad(col, (k - 1, 0), mode="edge"), kernel, "valid")
                     for col in x.T], axis=1)


def _loss_and_scale(result, out) -> str:
    # The loss curves with, beneath them, the multiplier each guard (and plateau) applied:
    # whether a guard acts on events or just decays shows in the second row.
    import matplotlib.pyplot as plt

    lrs = result.cfg.stress.lrs
    scaled = [n for n in result.runs if n == "plateau" or result.kinds[n] == "guard"]
    rows = 2 if scaled else 1
    fig, axes = plt.subplots(rows, len(lrs), figsize=(3.2 * len(lrs), 3.0 * rows), squeeze=False,
                             sharex=True)
    _panel_row(result, axes[0], _smooth, "training loss (10-step mean)", list(result.runs))
    if scaled:
        _panel_row(result, axes[1], lambda r: r.multiplier, "applied step multiplier", scaled)
    fig.tight_layout()
    fig.savefig(out / "loss_and_scale.png", dpi=110)
    plt.close(fig)
    return "loss_and_scale.png"


def _scenarios(result, out) -> str:
    import matplotlib.pyplot as plt

    s = result.cfg.stress
    faulted = [n for n in result.runs if any(c.scenario != "none" for c in result.runs[n].cells)]
    fig, axes = plt.subplots(1, len(s.scenarios), figsize=(3.6 * len(s.scenarios), 3.4), squeeze=False)
    for ax, scenario in zip(axes[0], s.scenarios):
        for name in faulted:
            runs = result.runs[name]
            idx = [i for i, c in enumerate(runs.cells) if c.scenario == scenario]
            y = runs.val_ppl[:, idx].mean(axis=1)
            ax.plot(runs.eval_steps, y, label=result.labels[name], lw=1, marker=".")
        start, stop = faults_lib.window(scenario, s)
        ax.axvspan(start, max(stop, start + 1), color="red", alpha=0.15)
        ax.set(title=scenario, xlabel="step", yscale="log")
    axes[0][0].set_ylabel("validation perplexity")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "scenarios.png", dpi=110)
    plt.close(fig)
    return "scenarios.png"
