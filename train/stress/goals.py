"""Checks a policy's goals (issue 6) against stress-suite results and prints them
as markdown: ``python -m train.stress.goals RESULTS.json [ABLATION.json] [--policy governor]``.

The goals, all over every seed of the suite:
1. At every stressed LR (``--stressed-from`` and up), a lower mean final perplexity
   than each of the rivals (the reference laws, clipping, ZClip, spike skip), and no
   divergence where any rival survives.
2. At AdamW's best LR in the grid, within 1% of AdamW.
3. Lower than AdamW run at the policy's own mean effective LR (``effective_lr_<policy>``).
4. Every failure scenario survived, with the smallest perplexity cost among the arms.
An ablation file adds one row per variant: the same numbers with a mechanism removed.
"""

from __future__ import annotations

import argparse
import json
import math

RIVALS = ("reflex", "reflex_pro", "clip", "zclip", "spike_skip")


def _mean(results, arm, lr):
    value = results["grid"][arm][str(lr)]["mean"]
    return math.nan if value is None else value


def _cost(results, arm, scenario):
    summary = results["scenarios"][arm][scenario]["summary"]
    return math.nan if summary["ppl_loss"] is None else summary["ppl_loss"], summary


def check(results, policy: str, stressed_from: float) -> list[tuple[str, bool, str]]:
    lrs = [float(lr) for lr in results["grid"]["adamw"]]
    stressed = [lr for lr in lrs if lr >= stressed_from]
    rivals = [r for r in RIVALS if r in results["grid"]]
    rows = []
    for lr in stressed:
        mine = _mean(results, policy, lr)
        best_rival = min(rivals, key=lambda r: _mean(results, r, lr))
        theirs = _mean(results, best_rival, lr)
        div = results["grid"][policy][str(lr)]["diverged"]
        rival_survives = any(results["grid"][r][str(lr)]["diverged"] < results["grid"][r][str(lr)]["seeds"]
                             for r in rivals)
        ok = mine < theirs and not (div and rival_survives)
        rows.append((f"LR {lr:g}: below every rival", ok,
                     f"{mine:.2f} vs best rival {best_rival} {theirs:.2f} ({100 * (mine / theirs - 1):+.2f}%)"
                     + (f"; diverged {div}" if div else "")))
    best_lr = min(lrs, key=lambda lr: _mean(results, "adamw", lr))
    mine, adamw = _mean(results, policy, best_lr), _mean(results, "adamw", best_lr)
    rows.append((f"AdamW's best LR {best_lr:g}: within 1%", mine <= 1.01 * adamw,
                 f"{mine:.2f} vs AdamW {adamw:.2f} ({100 * (mine / adamw - 1):+.2f}%)"))
    control = f"effective_lr_{policy}"
    if control in results["grid"]:
        for lr in lrs:
            mine, theirs = _mean(results, policy, lr), _mean(results, control, lr)
            rows.append((f"LR {lr:g}: below AdamW at its own mean effective LR", mine < theirs,
                         f"{mine:.2f} vs {theirs:.2f} ({100 * (mine / theirs - 1):+.2f}%)"))
    for scenario in results["scenarios"].get(policy, {}):
        mine, summary = _cost(results, policy, scenario)
        others = {a: _cost(results, a, scenario)[0] for a in results["scenarios"] if a != policy}
        best = min(others, key=lambda a: others[a] if math.isfinite(others[a]) else math.inf)
        ok = summary["survived"] == summary["seeds"] and mine <= others[best]
        rows.append((f"{scenario}: survived, smallest cost", ok,
                     f"survived {summary['survived']}/{summary['seeds']}, cost {mine:+.2f} vs best other "
                     f"{best} {others[best]:+.2f}"))
    return rows


def ablation(results, ablated, policy: str) -> list[str]:
    lrs = list(ablated["grid"][policy])
    scenarios = list(ablated["scenarios"].get(policy, {}))
    head = ("| arm | " + " | ".join(f"LR {float(lr):g}" for lr in lrs) + " | "
            + " | ".join(f"{s} cost" for s in scenarios) + " |")
    lines = [head, "|---" * (1 + len(lrs) + len(scenarios)) + "|"]
    base = {lr: _mean(ablated, policy, lr) for lr in lrs}
    for arm in ablated["grid"]:
        cells = []
        for lr in lrs:
            value = _mean(ablated, arm, lr)
            cells.append(f"{value:.2f}" if arm == policy else f"{value:.2f} ({value - base[lr]:+.2f})")
        for s in scenarios:
            has = s in ablated["scenarios"].get(arm, {})
            cells.append(f"{_cost(ablated, arm, s)[0]:+.2f}" if has else "—")
        lines.append(f"| {ablated['labels'][arm]} | " + " | ".join(cells) + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument("ablation", nargs="?")
    parser.add_argument("--policy", default="governor")
    parser.add_argument("--stressed-from", type=float, default=3e-3)
    args = parser.parse_args()
    results = json.load(open(args.results))
    rows = check(results, args.policy, args.stressed_from)
    print(f"| goal ({args.policy}) | met | figures |\n|---|---|---|")
    for goal, ok, figures in rows:
        print(f"| {goal} | {'yes' if ok else '**no**'} | {figures} |")
    print(f"\n{sum(ok for _, ok, _ in rows)} of {len(rows)} goals met.")
    if args.ablation:
        print()
        print("\n".join(ablation(results, json.load(open(args.ablation)), args.policy)))


if __name__ == "__main__":
    main()
