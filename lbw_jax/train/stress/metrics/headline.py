"""The suite's headline metrics, from the ``grid`` of results.json (so they can be
recomputed from any results file, and tested on a hand-made one).

Per arm:
  lr_sensitivity: as in Wortsman et al. 2023 ("Small-scale proxies for large-scale
    Transformer training instabilities"): the mean over the LR grid of
    min(final log-perplexity, start log-perplexity) minus the best final
    log-perplexity of any arm. 0 means the arm is as good as the best run anywhere
    at every LR; the cap at the start makes a diverged cell cost as much as
    having learnt nothing. Only for arms that ran the whole grid.
  lr_sensitivity_up: the same mean over the LRs from tuned AdamW's up: the LRs a guard
    can act on (its scale is at most 1, so below tuned it can only equal AdamW). An
    LR-free arm counts with its one run, which stands at every LR.
  worst_gap_pct: the largest gap, in %, of the arm's mean final perplexity over the
    grid to tuned AdamW (the best mean of AdamW over the grid); None when a mean
    is non-finite (a diverged seed).
  diverged / cells: diverged clean cells, and how many clean cells ran.
  lr_free: whether the arm has no LR to choose (one column, flat over the grid).
  vs_replay_pct, vs_control_pct: for a guard, at each stressed LR (above tuned AdamW's,
    where AdamW is more than 5% worse than tuned), its mean final
    perplexity against its replay and its effective-LR control, in % (negative:
    the guard is better).
Final log-perplexities are averaged over seeds per LR.
"""

from __future__ import annotations

import math

from lbw_jax.train.values import is_finite, pct_change


def tuned_adamw(grid: dict) -> tuple[float, float]:
    """(LR, mean final perplexity) of AdamW's best LR in the grid."""
    adamw = {float(lr): row["mean"] for lr, row in grid["adamw"].items() if is_finite(row["mean"])}
    if not adamw:
        raise ValueError("results: AdamW has no finite mean at any LR; there is no tuned AdamW")
    lr = min(adamw, key=adamw.get)
    return lr, adamw[lr]


def stressed_from_means(means: dict, tolerance: float) -> list[float]:
    """The stressed LRs, given AdamW's mean final perplexity per LR (None or non-finite:
    worse than any): those above the best LR where AdamW is more than ``tolerance`` worse
    than there. Too low an LR is not stress: a guard only lowers the step."""
    means = {float(lr): (m if is_finite(m) else math.inf) for lr, m in means.items()}
    tuned_lr = min(means, key=means.get)
    return sorted(lr for lr, m in means.items() if lr > tuned_lr and m > means[tuned_lr] * (1 + tolerance))


def stressed_lrs(grid: dict, tolerance: float) -> list[float]:
    """``stressed_from_means`` of AdamW's row of a results grid."""
    return stressed_from_means({lr: row["mean"] for lr, row in grid["adamw"].items()}, tolerance)


def _log_finals(row, start_log):
    """Per seed: min(log final, log start); a non-finite final counts as the start."""
    return [min(math.log(f), start_log) if is_finite(f) and f > 0 else start_log for f in row["finals"]]


def headline(results: dict, tolerance: float = 0.05) -> dict:
    """arm -> its headline metrics; also ``_tuned`` and ``_stressed``. ``results`` needs
    ``grid``, ``start_ppl``, ``kinds`` and ``sources`` (arm -> the guard it copies)."""
    grid, start_log = results["grid"], math.log(results["start_ppl"])
    lrs = sorted({float(lr) for per in grid.values() for lr in per})
    full = [arm for arm, per in grid.items() if {float(lr) for lr in per} == set(lrs)]
    tuned_lr, tuned = tuned_adamw(grid)
    up = {lr for lr in lrs if lr >= tuned_lr}
    best = min(sum(math.log(f) for f in row["finals"]) / len(row["finals"])
               for arm in full for row in grid[arm].values()
               if row["finals"] and all(is_finite(f) and f > 0 for f in row["finals"]))
    sensitivity = lambda rows: sum(sum(_log_finals(r, start_log)) / len(r["finals"]) - best
                                   for r in rows) / len(rows)
    stressed = stressed_lrs(grid, tolerance)
    copies = {}
    for arm, source in results.get("sources", {}).items():
        if source is not None:
            copies.setdefault(source, {})[results["kinds"][arm]] = arm

    out = {"_tuned": {"lr": tuned_lr, "ppl": tuned}, "_stressed": stressed,
           "_best_log_ppl": best}
    for arm, per in grid.items():
        rows = {float(lr): row for lr, row in per.items()}
        gaps = [pct_change(row["mean"], tuned) for row in rows.values()]
        flat = any(row.get("flat") for row in rows.values())
        unique = list(rows.values())[:1] if flat else list(rows.values())
        entry = {
            "kind": results["kinds"][arm],
            "lr_sensitivity": sensitivity(list(rows.values())) if arm in full else None,
            "lr_sensitivity_up": (sensitivity([rows[lr] for lr in sorted(up)])
                                  if up <= set(rows) else None),
            "worst_gap_pct": None if any(g is None for g in gaps) else max(gaps),
            # An LR-free arm's one column stands at every LR: count its cells once.
            "diverged": sum(row["diverged"] for row in unique),
            "cells": sum(row["seeds"] for row in unique),
            "lr_free": flat,
        }
        for kind, field in (("replay", "vs_replay_pct"), ("control", "vs_control_pct")):
            other = copies.get(arm, {}).get(kind)
            if other is not None:
                theirs = {float(lr): row for lr, row in grid[other].items()}
                entry[field] = {lr: pct_change(rows[lr]["mean"], theirs[lr]["mean"])
                                for lr in stressed if lr in rows and lr in theirs}
        out[arm] = entry
    return out
