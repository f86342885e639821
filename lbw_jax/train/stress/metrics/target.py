"""Time to target, the paper's speed claim: for each cell, the first evaluation at which
validation perplexity is within ``within`` (1%) of tuned AdamW's final perplexity, and
the wall time to it. Computed from a results file (so it is tested on a hand-made one).

The wall time is the step count times the arm's measured seconds per cell-step in the
suite (its batched run time, evaluations included, over cells x steps): it carries
each arm's own cost per step (a guard's overhead) into the comparison, on the
machine of the results file.
"""

from __future__ import annotations

import numpy as np

from lbw_jax.train.stress.metrics.headline import tuned_adamw
from lbw_jax.train.values import is_finite


def first_reach(eval_steps, val_ppl, target: float) -> int | None:
    """The first evaluation step whose perplexity is finite and at most ``target``."""
    return next((int(s) for s, v in zip(eval_steps, val_ppl) if v is not None and is_finite(v) and v <= target),
                None)


def time_to_target(results: dict, within: float = 0.01) -> dict:
    """{"target", "tuned_lr", "tuned_steps", "arms": arm -> lr -> {"steps", "seconds",
    "reached", "seeds", "mean_steps", "mean_seconds"}, "faster": [...]}.

    ``mean_steps`` is None unless every seed reached the target. ``tuned_steps`` is
    tuned AdamW's; ``faster`` lists every (arm, LR, mean steps) that reaches it, in every
    seed, at least one evaluation interval (``resolution`` steps) sooner than tuned AdamW
    does, and ``ties`` those sooner by less: each seed's step is known only to the
    evaluation it was first seen at, so a mean of 147 against 150 at an evaluation
    every 10 steps is one seed one evaluation earlier, not a faster arm. An LR-free
    arm's one column counts once."""
    tuned_lr, tuned = tuned_adamw(results["grid"])
    target = tuned * (1 + within)
    eval_steps = results["eval_steps"]
    steps_per_run = results["config"]["stress"]["steps"]
    lr_free = {a for a, h in results.get("headline", {}).items() if isinstance(h, dict) and h.get("lr_free")}
    arms = {}
    for cell in results["cells"]:
        if cell["scenario"] != "none":
            continue
        thr = results["throughput"][cell["arm"]]
        per_step = thr["run_s"] / (thr["cells"] * steps_per_run)
        reached = first_reach(eval_steps, cell["val_ppl"], target)
        row = arms.setdefault(cell["arm"], {}).setdefault(float(cell["lr"]), {"steps": [], "seconds": []})
        row["steps"].append(reached)
        row["seconds"].append(None if reached is None else reached * per_step)
    for per in arms.values():
        for row in per.values():
            hit = [s for s in row["steps"] if s is not None]
            row.update(reached=len(hit), seeds=len(row["steps"]))
            every = len(hit) == len(row["steps"])
            row["mean_steps"] = float(np.mean(hit)) if every else None
            row["mean_seconds"] = float(np.mean([s for s in row["seconds"]])) if every else None
    tuned_steps = arms.get("adamw", {}).get(tuned_lr, {}).get("mean_steps")
    resolution = eval_steps[1] - eval_steps[0] if len(eval_steps) > 1 else steps_per_run
    faster, ties = [], []
    for arm, per in arms.items():
        for lr, row in per.items():
            if (arm, lr) == ("adamw", tuned_lr) or row["mean_steps"] is None:
                continue
            entry = {"arm": arm, "lr": None if arm in lr_free else lr, "mean_steps": row["mean_steps"]}
            if tuned_steps is None or row["mean_steps"] <= tuned_steps - resolution:
                faster.append(entry)
            elif row["mean_steps"] < tuned_steps:
                ties.append(entry)
    return {"target": target, "within": within, "tuned_lr": tuned_lr, "tuned_ppl": tuned,
            "tuned_steps": tuned_steps, "resolution": resolution, "arms": arms, "faster": faster,
            "ties": ties}


def fastest(per_lr: dict) -> tuple[float | None, dict | None]:
    """The LR (and row) at which an arm reaches the target in the fewest mean steps."""
    ok = {float(lr): row for lr, row in per_lr.items() if row["mean_steps"] is not None}
    if not ok:
        return None, None
    lr = min(ok, key=lambda k: (ok[k]["mean_steps"], k))
    return lr, ok[lr]


def describe(row: dict | None) -> str:
    """A row as text: "45 steps (12.3 s)", "2/3 reached", or "never"."""
    if row is None or row["reached"] == 0:
        return "never"
    if row["mean_steps"] is None:
        return f"{row['reached']}/{row['seeds']} reached"
    return f"{row['mean_steps']:.0f} steps ({row['mean_seconds']:.1f} s)"
