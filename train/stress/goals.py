"""Checks a policy's goals against stress-suite results, prints them as markdown and
exits 1 when any goal is missed (so it can gate a change), 2 (one line) when a file is
missing or malformed or the results hold no such policy:
``python -m train.stress.goals RESULTS.json [ABLATION.json] [--policy governor]``.

The goals (the governor-v2 issue), over every seed of the suite:
1. No harm: at tuned AdamW's LR within 1% of tuned AdamW; at every other LR where
   AdamW is within ``--stressed-above`` (5%) of its best, within 1% of AdamW there.
2. LR nearly irrelevant: the lowest LR sensitivity of all arms that ran the whole
   grid; within 5% of tuned AdamW at every LR; no diverged cell.
3. Feedback, not schedule: better than its replay and its effective-LR control at
   every stressed LR (a control that diverged counts as beaten).
4. Faults: every scenario survived, with the smallest cost among the arms.
The rivals are the arms the report's headline table ranks: every baseline and guard
of the results file (controls and replays are the policy's own yardsticks, and its
``stress.variants`` are its ablation).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from train.stress.headline import headline, stressed_lrs, tuned_adamw
from train.values import format_pct, pct_change


def _gap(mine, theirs) -> str:
    return format_pct(pct_change(mine, theirs), 2, missing="non-finite")


def _mean(results, arm, lr):
    """The arm's mean final perplexity at ``lr`` (NaN when non-finite or not run)."""
    value = next((row["mean"] for key, row in results["grid"][arm].items() if float(key) == float(lr)), None)
    return math.nan if value is None else value


def _cost(results, arm, scenario):
    summary = results["scenarios"][arm][scenario]["summary"]
    return math.nan if summary["ppl_loss"] is None else summary["ppl_loss"], summary


def variants_of(results, policy: str) -> list[str]:
    """The arms that are ``policy`` with some knobs changed (``stress.variants``: an
    ablation), read from the config stored in the results."""
    variants = results.get("config", {}).get("stress", {}).get("variants", {}) or {}
    return [a for a, v in variants.items() if a in results["grid"] and v.get("policy") == policy]


def rivals(results, policy: str) -> list[str]:
    """The arms the policy is ranked against: baselines and other guards (its own
    ablation variants are not rivals)."""
    own = set(variants_of(results, policy))
    return [a for a, kind in results["kinds"].items()
            if kind in ("baseline", "guard") and a != policy and a not in own]


def check(results, policy: str, tolerance: float = 0.05) -> list[tuple[str, bool, str]]:
    """(goal, met, figures) for every goal of ``policy``."""
    grid = results["grid"]
    if policy not in grid:
        raise ValueError(f"goals: the results have no arm {policy!r}; arms: {sorted(grid)}")
    lrs = sorted(float(lr) for lr in grid["adamw"])
    tuned_lr, tuned = tuned_adamw(grid)
    stressed = stressed_lrs(grid, tolerance)
    head = headline(results, tolerance)
    rows = []

    mine = _mean(results, policy, tuned_lr)
    rows.append((f"no harm at tuned AdamW's LR {tuned_lr:g}: within 1%", mine <= 1.01 * tuned,
                 f"{mine:.2f} vs {tuned:.2f} ({_gap(mine, tuned)})"))
    for lr in lrs:
        if lr in stressed or lr == tuned_lr:
            continue
        mine, adamw = _mean(results, policy, lr), _mean(results, "adamw", lr)
        rows.append((f"no harm at healthy LR {lr:g}: within 1% of AdamW", mine <= 1.01 * adamw,
                     f"{mine:.2f} vs {adamw:.2f} ({_gap(mine, adamw)})"))

    sens = {a: head[a]["lr_sensitivity"] for a in [policy, *rivals(results, policy)]
            if head[a]["lr_sensitivity"] is not None}
    best_rival = min((a for a in sens if a != policy), key=sens.get, default=None)
    if best_rival is None:
        rows.append(("lowest LR sensitivity", policy in sens, "no rival ran the whole grid"))
    else:
        ok = policy in sens and sens[policy] < sens[best_rival]
        rows.append(("lowest LR sensitivity", ok,
                     f"{sens.get(policy, math.nan):.3f} vs best rival {best_rival} {sens[best_rival]:.3f}"))
    gap = head[policy]["worst_gap_pct"]
    rows.append(("within 5% of tuned AdamW at every LR", gap is not None and gap <= 5.0,
                 "worst gap " + ("non-finite (a diverged seed)" if gap is None else f"{gap:+.2f}%")))
    rows.append(("no diverged cell", head[policy]["diverged"] == 0,
                 f"{head[policy]['diverged']} of {head[policy]['cells']} diverged"))

    for kind, prefix in (("replay", "replay_"), ("control", "effective_lr_")):
        other = prefix + policy
        if other not in grid:
            rows.append((f"beats its {kind} at the stressed LRs", False, f"{other} did not run"))
            continue
        for lr in stressed:
            mine, theirs = _mean(results, policy, lr), _mean(results, other, lr)
            ok = math.isfinite(mine) and (not math.isfinite(theirs) or mine < theirs)
            rows.append((f"LR {lr:g}: beats its {kind}", ok,
                         f"{mine:.2f} vs {theirs:.2f} ({_gap(mine, theirs)})"))

    for scenario in results["scenarios"].get(policy, {}):
        mine, summary = _cost(results, policy, scenario)
        others = {a: _cost(results, a, scenario)[0] for a in rivals(results, policy)
                  if scenario in results["scenarios"].get(a, {})}
        best = min(others, key=lambda a: others[a] if math.isfinite(others[a]) else math.inf, default=None)
        ok = summary["survived"] == summary["seeds"] and (best is None or mine <= others[best])
        rows.append((f"{scenario}: survived, smallest cost", ok,
                     f"survived {summary['survived']}/{summary['seeds']}, cost {mine:+.2f}"
                     + ("" if best is None else f" vs best rival {best} {others[best]:+.2f}")))
    return rows


def ablation(results, ablated, policy: str) -> list[str]:
    lrs = list(ablated["grid"][policy])
    scenarios = list(ablated["scenarios"].get(policy, {}))
    head = ("| arm | " + " | ".join(f"LR {float(lr):g}" for lr in lrs) + " | "
            + " | ".join(f"{s} cost" for s in scenarios) + " |")
    lines = [head, "|---" * (1 + len(lrs) + len(scenarios)) + "|"]
    base = {lr: _mean(ablated, policy, lr) for lr in lrs}
    # The policy and its variants; a file that holds other arms too (one suite run with
    # the ablation inside) shows AdamW as well, for reference.
    own = variants_of(ablated, policy)
    arms = [a for a in ablated["grid"] if a in ("adamw", policy, *own)] if own else list(ablated["grid"])
    for arm in arms:
        cells = []
        for lr in lrs:
            value = _mean(ablated, arm, lr)
            cells.append(f"{value:.2f}" if arm == policy else f"{value:.2f} ({value - base[lr]:+.2f})")
        for s in scenarios:
            has = s in ablated["scenarios"].get(arm, {})
            cells.append(f"{_cost(ablated, arm, s)[0]:+.2f}" if has else "—")
        lines.append(f"| {ablated['labels'][arm]} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("ablation", nargs="?")
    parser.add_argument("--policy", default="governor")
    parser.add_argument("--stressed-above", type=float, default=0.05,
                        help="AdamW this much worse than tuned makes an LR stressed (default 0.05)")
    args = parser.parse_args(argv)
    try:
        with open(args.results) as f:
            results = json.load(f)
        rows = check(results, args.policy, args.stressed_above)
        ablated = None
        if args.ablation:
            with open(args.ablation) as f:
                ablated = json.load(f)
    except (OSError, ValueError, KeyError) as e:  # a missing or malformed file, an unknown arm
        print(f"error: {e if not isinstance(e, KeyError) else f'the results lack {e}'}",
              file=sys.stderr)
        return 2
    print(f"| goal ({args.policy}) | met | figures |\n|---|---|---|")
    for goal, ok, figures in rows:
        print(f"| {goal} | {'yes' if ok else '**no**'} | {figures} |")
    met = sum(ok for _, ok, _ in rows)
    print(f"\n{met} of {len(rows)} goals met. Rivals: {', '.join(rivals(results, args.policy))}.")
    if ablated is not None:
        print("\n" + "\n".join(ablation(results, ablated, args.policy)))
    return 0 if met == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
