"""Numbers the report shows, computed from the recorded runs: final perplexity per
arm and LR over seeds, divergence, throughput, and the outcome of each fault."""

from __future__ import annotations

import math

import numpy as np

from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.values import is_finite


def diverged(final_ppl: float, start_ppl: float, ratio: float) -> bool:
    """A run diverged when it ends non-finite or ``ratio`` times worse than it started."""
    return not is_finite(final_ppl) or final_ppl > ratio * start_ppl


def _row(runs, idx, result) -> dict:
    s = result.cfg.stress
    finals = [float(runs.val_ppl[-1, i]) for i in idx]
    flags = [diverged(f, result.start_ppl, s.diverge_ratio) for f in finals]
    scales = [float(np.mean(runs.multiplier[:, i])) for i in idx]
    finite = [f for f in finals if is_finite(f)]
    return {
        "mean": float(np.mean(finite)) if len(finite) == len(finals) else math.nan,
        "std": float(np.std(finite)) if len(finite) == len(finals) else math.nan,
        "finals": finals, "diverged": sum(flags), "seeds": len(finals),
        "mean_multiplier": float(np.mean(scales)),
        "run_lr": [runs.cells[i].peak_lr for i in idx],
    }


def grid(result) -> dict:
    """arm -> lr -> {mean, std, finals, diverged, ...} over seeds, clean cells only. An
    LR-free arm ran one column: the same row stands at every LR (marked ``flat``), since
    that is what a user gets whatever LR they would have chosen."""
    s = result.cfg.stress
    out = {}
    for name, runs in result.runs.items():
        clean = [i for i, c in enumerate(runs.cells) if c.scenario == "none"]
        if name in result.lr_free:
            row = {**_row(runs, clean, result), "flat": True}
            out[name] = {lr: dict(row) for lr in s.lrs}
            continue
        ran = {runs.cells[i].lr for i in clean}
        out[name] = {lr: _row(runs, [i for i in clean if runs.cells[i].lr == lr], result)
                     for lr in s.lrs if lr in ran}   # controls and replays may run a subset
    return out


def throughput(result) -> dict:
    out = {}
    for name, runs in result.runs.items():
        cell_steps = len(runs.cells) * runs.loss.shape[0]
        out[name] = {"cells": len(runs.cells), "compile_s": runs.compile_s, "run_s": runs.run_s,
                     "tokens_per_s": cell_steps * result.tokens_per_step / runs.run_s}
    return out


def scenarios(result) -> dict:
    """arm -> scenario -> per-seed outcomes against the clean twin (same arm, LR, seed)."""
    s = result.cfg.stress
    steps = np.asarray(next(iter(result.runs.values())).eval_steps)
    out = {}
    for name, runs in result.runs.items():
        index = {(c.lr, c.seed, c.scenario): i for i, c in enumerate(runs.cells)}
        per = {}
        for scenario in s.scenarios:
            start, stop = faults_lib.window(scenario, s)
            seeds = []
            for seed in range(s.seeds):
                i = index.get((s.scenario_lr, seed, scenario))
                if i is None:
                    continue
                twin = runs.val_ppl[:, index[(s.scenario_lr, seed, "none")]]
                ppl = runs.val_ppl[:, i]
                before = float(ppl[steps <= start][-1])
                after = float(ppl[-1])
                # Recovered: from the first evaluation after the fault on which it is within
                # tolerance of where the clean twin is, and stays so to the end.
                ok = (steps >= stop) & np.isfinite(ppl) & (ppl <= twin * (1 + s.recover_tolerance))
                recovered_at = next((int(steps[k]) for k in np.flatnonzero(ok) if ok[k:].all()), None)
                seeds.append({
                    "seed": seed, "before": before, "after": after, "clean_after": float(twin[-1]),
                    "peak": _peak(ppl[steps >= start]),
                    "survived": is_finite(after) and not diverged(after, before, s.diverge_ratio),
                    "steps_to_recover": None if recovered_at is None else recovered_at - start,
                })
            if seeds:
                per[scenario] = seeds
        if per:
            out[name] = per
    return out


def _peak(ppl) -> float:
    return float(np.nanmax(ppl)) if np.isfinite(ppl).any() else math.nan


def aggregate_scenario(seeds: list[dict]) -> dict:
    after = [x["after"] for x in seeds]
    finite = all(is_finite(a) for a in after)
    loss = [x["after"] - x["clean_after"] for x in seeds]
    recover = [x["steps_to_recover"] for x in seeds]
    return {
        "survived": sum(x["survived"] for x in seeds), "seeds": len(seeds),
        "before": float(np.mean([x["before"] for x in seeds])),
        "after": float(np.mean(after)) if finite else math.nan,
        "ppl_loss": float(np.mean(loss)) if finite else math.nan,
        "recovered": sum(r is not None for r in recover),
        "steps_to_recover": float(np.mean([r for r in recover if r is not None])) if any(
            r is not None for r in recover) else None,
    }


def clean_spread(grid: dict, arm: str, lr) -> float:
    """The seed spread (std) of ``arm``'s clean run at ``lr``, from a grid keyed by LR as
    a number (the live tables) or as text (results.json); 0 where it is not known (one
    seed, an LR the arm did not run, or a non-finite run)."""
    row = next((r for key, r in grid.get(arm, {}).items()
                if lr is not None and float(key) == float(lr)), {})
    std = row.get("std")
    return float(std) if std is not None and math.isfinite(std) else 0.0


def fault_standings(costs: dict, spreads: dict) -> dict:
    """Each arm's fault cost against the lowest of them: a difference
    inside the seed spread of the clean runs is a tie, not a win or a loss. The spread
    of a pair is the larger of the two arms' clean spreads, since either arm's seed noise
    alone could make it. An arm whose cost is not finite (a seed failed) is ``failed``.

    Returns arm -> {"best": the arm of the lowest finite cost, "diff": cost minus it,
    "spread": the pair's spread, "standing": "best" | "tie" | "worse" | "failed"}."""
    finite = {a: c for a, c in costs.items() if c is not None and math.isfinite(c)}
    if not finite:
        return {a: {"best": None, "diff": math.nan, "spread": math.nan, "standing": "failed"} for a in costs}
    best = min(finite, key=finite.get)
    out = {}
    for arm, cost in costs.items():
        spread = max(spreads.get(arm, 0.0), spreads.get(best, 0.0))
        if arm not in finite:
            out[arm] = {"best": best, "diff": math.nan, "spread": spread, "standing": "failed"}
            continue
        diff = cost - finite[best]
        standing = "best" if arm == best else ("tie" if diff <= spread else "worse")
        out[arm] = {"best": best, "diff": diff, "spread": spread, "standing": standing}
    return out
