"""The governor's goal against the LR-free rivals (issue 47's): within 1% of
D-Adaptation started at 1e-3 (``LR_FREE_RIVAL``), or better, at every LR from tuned AdamW's
up. D-Adaptation started there is the strongest LR-free arm the suite runs (on the LoRA shift
the best arm of the setting): a guard that ends above it at some LR has made that LR matter
more than a user who gave up choosing one would."""

from __future__ import annotations

import math

from lbw_jax.train.stress.goals.cells import gap, mean_final

LR_FREE_RIVAL = "dadapt_adamw_lr0"   # the suite's arm name for D-Adaptation with estim_lr0=1e-3
WITHIN = 0.01


def against_lr_free(results, policy, above) -> tuple[str, bool | None, str]:
    """(goal, met, figures): the policy's worst gap to ``LR_FREE_RIVAL`` over the LRs
    ``above`` (tuned AdamW's and up); not measured (None) where the rival did not run."""
    name = f"within 1% of D-Adaptation started at 1e-3 (or better) at every LR from {above[0]:g} up"
    if LR_FREE_RIVAL not in results["grid"]:
        return name, None, f"{LR_FREE_RIVAL} did not run"
    gaps = {lr: (mean_final(results, policy, lr), mean_final(results, LR_FREE_RIVAL, lr)) for lr in above}
    if not all(math.isfinite(theirs) for _, theirs in gaps.values()):
        return name, None, f"{LR_FREE_RIVAL} did not run every LR from {above[0]:g} up"
    worst = max(above, key=lambda lr: gaps[lr][0] / gaps[lr][1] if math.isfinite(gaps[lr][0]) else math.inf)
    mine, theirs = gaps[worst]
    ok = all(math.isfinite(m) and m <= (1 + WITHIN) * t for m, t in gaps.values())
    return name, ok, f"worst at {worst:g}: {mine:.2f} vs {theirs:.2f} ({gap(mine, theirs)})"
