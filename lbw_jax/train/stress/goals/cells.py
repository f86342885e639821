"""Reading one arm's cells out of a stress-suite results file, for the goal checks: its mean
final perplexity at an LR, its seeds' finals, a fault's cost, and a gap as a signed %."""

from __future__ import annotations

import math

from lbw_jax.train.values import format_pct, pct_change


def gap(mine, theirs) -> str:
    return format_pct(pct_change(mine, theirs), 2, missing="non-finite")


def mean_final(results, arm, lr):
    """The arm's mean final perplexity at ``lr`` (NaN when non-finite or not run)."""
    value = next((row["mean"] for key, row in results["grid"][arm].items() if float(key) == float(lr)), None)
    return math.nan if value is None else value


def finals(results, arm, lr) -> list:
    """The arm's final perplexity at ``lr``, one per seed (None or NaN where it diverged)."""
    return next(row["finals"] for k, row in results["grid"][arm].items() if float(k) == float(lr))


def fault_cost(results, arm, scenario):
    summary = results["scenarios"][arm][scenario]["summary"]
    return math.nan if summary["ppl_loss"] is None else summary["ppl_loss"], summary
