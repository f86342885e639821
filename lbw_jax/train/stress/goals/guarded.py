"""Checks the goals of the guard over a baseline (``<guard>@<baseline>`` arms) against
stress-suite results, prints them as markdown with their margins and exits 1 when a
measured goal is missed, 2 (one line) when the file is missing or malformed or holds no
such arm: ``python -m lbw_jax.train.stress.goals.guarded RESULTS.json [--guard governor]``.

For every arm ``<guard>@<baseline>`` whose bare baseline and guard over AdamW ran too:
1. No harm to the baseline: at every LR the guarded baseline runs, its mean final perplexity
   is within 1% of the bare baseline's (better is welcome).
2. Its faults are the guard's: every scenario survived by every seed, with a cost at
   most the guard-over-AdamW cost at the same LR plus the larger of the two arms' clean
   seed spreads there.
3. The LR stops mattering: within 5% of tuned AdamW at every LR it runs (an LR-free
   baseline: its one run) and no diverged cell; below tuned AdamW is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from lbw_jax.train.stress.goals.policy import MET, fault_cost, gap, mean_final
from lbw_jax.train.stress.metrics.headline import headline, tuned_adamw
from lbw_jax.train.stress.metrics.summary import clean_spread


def guarded_arms(results, guard: str) -> list[tuple[str, str]]:
    """(guarded arm, bare baseline) for every ``guard@baseline`` arm of the results."""
    return [(a, a.split("@", 1)[1]) for a in results["grid"] if a.startswith(f"{guard}@")]


def check(results, guard: str = "governor", tolerance: float = 0.05) -> list[tuple[str, bool | None, str]]:
    """(goal, met, figures) for every guarded arm's goals; ``met`` None: not measured."""
    grid, pairs = results["grid"], guarded_arms(results, guard)
    if not pairs:
        raise ValueError(f"guarded: the results have no arm {guard}@<baseline>; arms: {sorted(grid)}")
    tuned_lr, tuned = tuned_adamw(grid)
    head = headline(results, tolerance)
    lr = results.get("config", {}).get("stress", {}).get("scenario_lr")
    rows = []
    for arm, baseline in pairs:
        lrs = sorted(float(k) for k in grid[arm])
        if head[arm]["lr_free"]:
            lrs = lrs[:1]   # one run, standing at every LR
        if baseline not in grid:
            rows.append((f"{arm}: no harm to {baseline}", None, f"{baseline} did not run"))
        else:
            for at in lrs:
                mine, theirs = mean_final(results, arm, at), mean_final(results, baseline, at)
                where = "its one run" if head[arm]["lr_free"] else f"LR {at:g}"
                rows.append((f"{arm}: no harm to {baseline} at {where}: within 1%",
                             math.isfinite(mine) and (not math.isfinite(theirs) or mine <= 1.01 * theirs),
                             f"{mine:.2f} vs {theirs:.2f} ({gap(mine, theirs)})"))
        rows.extend(_fault_rows(results, arm, guard, lr))
        worst = max(lrs, key=lambda at: mean_final(results, arm, at) if math.isfinite(mean_final(results, arm, at))
                    else math.inf)
        value = mean_final(results, arm, worst)
        rows.append((f"{arm}: within 5% of tuned AdamW ({tuned:.2f} at {tuned_lr:g}) at every LR",
                     math.isfinite(value) and value <= (1 + tolerance) * tuned,
                     f"worst {value:.2f} ({gap(value, tuned)})"
                     + ("" if head[arm]["lr_free"] else f" at {worst:g}")
                     + ("; below tuned AdamW" if value < tuned else "")))
        rows.append((f"{arm}: no diverged cell", head[arm]["diverged"] == 0,
                     f"{head[arm]['diverged']} of {head[arm]['cells']} diverged"))
    return rows


def _fault_rows(results, arm, guard, lr):
    rows, grid = [], results["grid"]
    for scenario in results["scenarios"].get(arm, {}):
        mine, summary = fault_cost(results, arm, scenario)
        survived = summary["survived"] == summary["seeds"]
        if scenario not in results["scenarios"].get(guard, {}):
            rows.append((f"{arm}, {scenario}: survived, cost within the {guard}'s", None,
                         f"{guard} did not run {scenario}"))
            continue
        theirs = fault_cost(results, guard, scenario)[0]
        spread = max(clean_spread(grid, arm, lr), clean_spread(grid, guard, lr))
        ok = survived and math.isfinite(mine) and (not math.isfinite(theirs) or mine <= theirs + spread)
        rows.append((f"{arm}, {scenario}: survived, cost within the {guard}'s", ok,
                     f"survived {summary['survived']}/{summary['seeds']}, cost {mine:+.2f} vs {guard} "
                     f"{theirs:+.2f} (margin {mine - theirs:+.2f}, clean seed spread {spread:.2f})"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("--guard", default="governor")
    args = parser.parse_args(argv)
    try:
        with open(args.results) as f:
            rows = check(json.load(f), args.guard)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e if not isinstance(e, KeyError) else f'the results lack {e}'}", file=sys.stderr)
        return 2
    print(f"| goal ({args.guard} over a baseline) | met | figures |\n|---|---|---|")
    for goal, ok, figures in rows:
        print(f"| {goal} | {MET[ok]} | {figures} |")
    measured = [ok for _, ok, _ in rows if ok is not None]
    print(f"\n{sum(measured)} of {len(measured)} measured goals met; {len(rows) - len(measured)} not measured.")
    return 0 if all(measured) else 1


if __name__ == "__main__":
    sys.exit(main())
