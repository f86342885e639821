"""Checks a policy's goals against stress-suite results, prints them as markdown and exits
1 when any measured goal is missed (so it can gate a change), 2 (one line) when a file is
missing or malformed or the results hold no such policy:
``python -m lbw_jax.train.stress.goals RESULTS.json [ABLATION.json] [--policy governor]``. A goal
whose yardstick did not run (a control, a replay) is "not measured", apart from "missed":
it does not count in the exit status, and the last line says how many.

The goals of a guard policy, over every seed of the suite:
1. No harm: within 1% of AdamW at tuned AdamW's LR, and at every LR where AdamW is
   within ``--stressed-above`` (5%) of its best.
2. The learning rate stops mattering: within 5% of tuned AdamW at every LR from tuned up
   to the top of the grid, on the mean and for every seed, with a seed spread of at most 5%
   of the mean (no bimodality); no diverged cell; the lowest LR sensitivity over the LRs a
   guard can act on (``lr_sensitivity_up``: from tuned AdamW's up; a scale of at most 1 can
   only equal AdamW below), of all arms that ran them, LR-free arms with their one run.
3. The oracle: within 2% of AdamW run at the policy's own mean effective LR
   (``effective_lr_<policy>``) at every stressed LR (a control that diverged is met), and no
   worse there than its own open-loop replay (``replay_<policy>``) beyond the seed spread
   (the larger of the two arms' population std).
4. Faults: every scenario survived, with the smallest cost among the arms that train
   (``training_arms``: their clean run at the scenario's LR ends at least 5% below the
   start; the others are listed as not training, with their cost), where a difference
   inside the clean runs' seed spread at the scenario's LR (the larger of the two arms'
   std, ``summary.fault_standings``) is a tie; and under every fault better than its own
   open-loop replay (``replay_<policy>``, blind to the fault).
5. Against the LR-free rivals: within 1% of D-Adaptation started at 1e-3 (or better) at every
   LR from tuned AdamW's up (``rivals``; not measured where that arm did not run).
(The cost per training step is a benchmark: ``bench/step_overhead.py``.) Two
goals of governor v2 are dropped because no law can meet them: beating its replay on a
clean run (the replay of the same trajectory is the same run; goal 3 asks it to be no
worse) and being within 5% of tuned AdamW below the tuned LR. The baselines are the arms the
report's headline table ranks: every baseline and guard of the results file (controls and
replays are the policy's own yardsticks, and its ``stress.variants`` are its ablation).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

from lbw_jax.train.stress.engine.arms import copy_of, specs_from_results
from lbw_jax.train.stress.metrics.headline import headline, stressed_lrs, tuned_adamw
from lbw_jax.train.stress.metrics.summary import clean_spread, fault_standings
from lbw_jax.train.stress.goals.cells import fault_cost, finals as _finals, gap, mean_final
from lbw_jax.train.stress.goals.rivals import against_lr_free
from lbw_jax.train.values import pct_change


def variants_of(results, policy: str) -> list[str]:
    """The arms that are ``policy`` with some knobs changed (``stress.variants``: an
    ablation), read from the config stored in the results."""
    variants = results.get("config", {}).get("stress", {}).get("variants", {}) or {}
    return [a for a, v in variants.items() if a in results["grid"] and v.get("policy") == policy]


def compared_arms(results, policy: str) -> list[str]:
    """The arms the policy is ranked against: baselines and other guards (its own
    ablation variants are not baselines)."""
    own = set(variants_of(results, policy))
    return [a for a, spec in specs_from_results(results).items()
            if spec.kind in ("baseline", "guard") and a != policy and a not in own]


TRAINS_BY = 0.05   # an arm trains when its clean run ends at least this far below the start


def training_arms(results, arms, lr) -> tuple[list[str], list[str]]:
    """(arms that train, arms that do not): whether each arm's mean clean final at ``lr``
    is at least ``TRAINS_BY`` below the start perplexity."""
    if lr is None:   # a results file that does not say where the faults ran: rank them all
        return list(arms), []
    start = results["start_ppl"]
    trains = lambda a: mean_final(results, a, lr) <= (1 - TRAINS_BY) * start
    return [a for a in arms if trains(a)], [a for a in arms if not trains(a)]


def check(results, policy: str, tolerance: float = 0.05) -> list[tuple[str, bool | None, str]]:
    """(goal, met, figures) for every goal of ``policy``; ``met`` is None for a goal that
    was not measured (its yardstick did not run)."""
    grid = results["grid"]
    if policy not in grid:
        raise ValueError(f"goals: the results have no arm {policy!r}; arms: {sorted(grid)}")
    lrs = sorted(float(lr) for lr in grid["adamw"])
    tuned_lr, tuned = tuned_adamw(grid)
    stressed = stressed_lrs(grid, tolerance)
    head = headline(results, tolerance)
    above = [lr for lr in lrs if lr >= tuned_lr]   # the LRs a guard can act on
    rows = (_no_harm(results, policy, lrs, tuned_lr, tuned, tolerance)
            + _lr_stops_mattering(results, policy, above, tuned_lr, tuned, tolerance, head))
    specs = specs_from_results(results)
    return (rows + _oracle(results, policy, stressed, specs) + _faults(results, policy, specs)
            + [against_lr_free(results, policy, above)])


def _no_harm(results, policy, lrs, tuned_lr, tuned, tolerance) -> list:
    """Goal 1: no harm where AdamW itself is healthy."""
    rows = []
    mine = mean_final(results, policy, tuned_lr)
    rows.append((f"no harm at tuned AdamW's LR {tuned_lr:g}: within 1%", mine <= 1.01 * tuned,
                 f"{mine:.2f} vs {tuned:.2f} ({gap(mine, tuned)})"))
    for lr in lrs:
        mine, adamw = mean_final(results, policy, lr), mean_final(results, "adamw", lr)
        if lr == tuned_lr or not adamw <= (1 + tolerance) * tuned:
            continue
        rows.append((f"no harm at healthy LR {lr:g}: within 1% of AdamW", mine <= 1.01 * adamw,
                     f"{mine:.2f} vs {adamw:.2f} ({gap(mine, adamw)})"))
    return rows


def _lr_stops_mattering(results, policy, above, tuned_lr, tuned, tolerance, head) -> list:
    """Goal 2: the learning rate stops mattering, over ``above`` (tuned AdamW's LR and up)."""
    rows = []
    gaps = {lr: pct_change(mean_final(results, policy, lr), tuned) for lr in above}
    worst = max(above, key=lambda lr: gaps[lr] if gaps[lr] is not None else math.inf)
    ok = all(g is not None and g <= 100 * tolerance for g in gaps.values())
    moon = "met" if all(g is not None and g <= 2.0 for g in gaps.values()) else "missed"
    rows.append((f"within 5% of tuned AdamW at every LR from {tuned_lr:g} up", ok,
                 f"worst at {worst:g}: " + (f"{mean_final(results, policy, worst):.2f} ({gap(mean_final(results, policy, worst), tuned)})"
                                            if gaps[worst] is not None else "non-finite")
                 + f"; the moonshot, within 2%: {moon}"))
    rows.append(_every_seed(results, policy, above, tuned_lr, tuned, tolerance))
    rows.append(("no diverged cell", head[policy]["diverged"] == 0,
                 f"{head[policy]['diverged']} of {head[policy]['cells']} diverged"))
    sens = {a: head[a]["lr_sensitivity_up"] for a in [policy, *compared_arms(results, policy)]
            if head[a].get("lr_sensitivity_up") is not None}
    whole = lambda a: "—" if head[a]["lr_sensitivity"] is None else f"{head[a]['lr_sensitivity']:.3f}"
    best_other = min((a for a in sens if a != policy), key=sens.get, default=None)
    if best_other is None or policy not in sens:
        rows.append((f"lowest LR sensitivity from {tuned_lr:g} up", None, "no baseline ran those LRs"
                     if best_other is None else f"{policy} did not run every LR from {tuned_lr:g} up"))
    else:
        rows.append((f"lowest LR sensitivity from {tuned_lr:g} up", sens[policy] < sens[best_other],
                     f"{sens[policy]:.3f} vs best baseline {best_other} {sens[best_other]:.3f} (whole grid: "
                     f"{whole(policy)} vs {whole(best_other)})"))
    return rows


def _every_seed(results, policy, above, tuned_lr, tuned, tolerance) -> tuple:
    """Goal 2 seed by seed: a mean inside the band can hide a bimodal pair of seeds."""
    name = f"every seed within 5% of tuned AdamW from {tuned_lr:g} up, spread ≤ 5%"
    seeds = {lr: _finals(results, policy, lr) for lr in above}
    if not all(f is not None and math.isfinite(f) for fs in seeds.values() for f in fs):
        return name, False, "a seed diverged"
    worst = max(above, key=lambda lr: max(seeds[lr]))
    spread = {lr: statistics.pstdev(fs) / statistics.fmean(fs) for lr, fs in seeds.items()}
    widest = max(above, key=spread.get)
    return (name, max(seeds[worst]) <= (1 + tolerance) * tuned and spread[widest] <= tolerance,
            f"worst seed at {worst:g}: {max(seeds[worst]):.2f} ({gap(max(seeds[worst]), tuned)}); "
            f"widest spread at {widest:g}: {100 * spread[widest]:.1f}% of the mean")


def _beats_replay(results, policy, lr, replay) -> tuple:
    """Goal 3's other half: no worse than its own open-loop replay beyond the seed spread."""
    name = f"LR {lr:g}: no worse than its replay beyond the seed spread"
    if replay is None or lr not in {float(k) for k in results["grid"][replay]}:
        return name, None, f"replay_{policy} did not run there"
    mine, theirs = mean_final(results, policy, lr), mean_final(results, replay, lr)
    finite = lambda a: [f for f in _finals(results, a, lr) if f is not None and math.isfinite(f)]
    spread = max(statistics.pstdev(finite(a) or [math.nan]) for a in (policy, replay))
    ok = math.isfinite(mine) and (not math.isfinite(theirs) or mine <= theirs + spread)
    return name, ok, f"{mine:.2f} vs {theirs:.2f}; seed spread {spread:.2f}"


def _oracle(results, policy, stressed, specs) -> list:
    """Goal 3: within 2% of AdamW at the policy's own mean effective LR, and no worse than
    its own replay beyond the seed spread."""
    rows = []
    control, replay = copy_of(specs, policy, "control"), copy_of(specs, policy, "replay")
    for lr in stressed:
        name = f"LR {lr:g}: within 2% of its effective-LR control"
        if control is None or lr not in {float(k) for k in results["grid"][control]}:
            rows.append((name, None, f"effective_lr_{policy} did not run there"))
        else:
            mine, theirs = mean_final(results, policy, lr), mean_final(results, control, lr)
            ok = math.isfinite(mine) and (not math.isfinite(theirs) or mine <= 1.02 * theirs)
            rows.append((name, ok, f"{mine:.2f} vs {theirs:.2f} ({gap(mine, theirs)})"))
        rows.append(_beats_replay(results, policy, lr, replay))
    return rows


def _faults(results, policy, specs) -> list:
    """Goal 4: every fault survived at the smallest cost (ties inside the clean spread),
    and better than the open-loop replay of its own trajectory."""
    rows = []
    grid = results["grid"]
    lr = results.get("config", {}).get("stress", {}).get("scenario_lr")
    replay = copy_of(specs, policy, "replay")
    for scenario in results["scenarios"].get(policy, {}):
        mine, summary = fault_cost(results, policy, scenario)
        faulted = [a for a in compared_arms(results, policy) if scenario in results["scenarios"].get(a, {})]
        training, idle = training_arms(results, faulted, lr)
        others = {a: fault_cost(results, a, scenario)[0] for a in training}
        standing = fault_standings({policy: mine, **others},
                                   {a: clean_spread(grid, a, lr) for a in (policy, *others)})[policy]
        survived = summary["survived"] == summary["seeds"]
        ok = survived and standing["standing"] in ("best", "tie")
        best = min((a for a in others if math.isfinite(others[a])), key=others.get, default=None)
        spread = _spread(grid, lr, policy, *([best] if best else []))
        versus = "" if best is None else (f" vs best baseline {best} {others[best]:+.2f}"
                                          + (" (a tie)" if standing["standing"] == "tie" else ""))
        not_training = "".join(f"; not training: {a} {fault_cost(results, a, scenario)[0]:+.2f}" for a in idle)
        rows.append((f"{scenario}: survived, smallest cost", ok,
                     f"survived {summary['survived']}/{summary['seeds']}, cost {mine:+.2f}{versus}; "
                     f"clean seed spread {spread:.2f}{not_training}"))
        rows.append(_versus_replay(results, policy, replay, scenario, mine, lr))
    return rows


def _spread(grid, lr, *arms) -> float:
    """The larger clean seed spread of ``arms`` at the scenario's LR."""
    return max(clean_spread(grid, a, lr) for a in arms)


def _versus_replay(results, policy, replay, scenario, mine, lr) -> tuple:
    """The goal row of ``scenario`` against the policy's open-loop replay."""
    if replay is None or scenario not in results["scenarios"].get(replay, {}):
        return (f"{scenario}: better than its replay", None, f"replay_{policy} did not run it")
    theirs = fault_cost(results, replay, scenario)[0]
    spread = _spread(results["grid"], lr, policy, replay)
    ok = math.isfinite(mine) and (not math.isfinite(theirs) or mine < theirs)
    tie = ok and math.isfinite(theirs) and theirs - mine <= spread
    return (f"{scenario}: better than its replay", ok and not tie,
            f"cost {mine:+.2f} vs {theirs:+.2f}" + (f" (a tie: inside the clean seed spread {spread:.2f})"
                                                    if tie else ""))


def ablation(results, ablated, policy: str) -> list[str]:
    lrs = list(ablated["grid"][policy])
    scenarios = list(ablated["scenarios"].get(policy, {}))
    head = ("| arm | " + " | ".join(f"LR {float(lr):g}" for lr in lrs) + " | "
            + " | ".join(f"{s} cost" for s in scenarios) + " |")
    lines = [head, "|---" * (1 + len(lrs) + len(scenarios)) + "|"]
    base = {lr: mean_final(ablated, policy, lr) for lr in lrs}
    # The policy and its variants; a file that holds other arms too (one suite run with
    # the ablation inside) shows AdamW as well, for reference.
    own = variants_of(ablated, policy)
    arms = [a for a in ablated["grid"] if a in ("adamw", policy, *own)] if own else list(ablated["grid"])
    for arm in arms:
        cells = []
        for lr in lrs:
            value = mean_final(ablated, arm, lr)
            cells.append(f"{value:.2f}" if arm == policy else f"{value:.2f} ({value - base[lr]:+.2f})")
        for s in scenarios:
            has = s in ablated["scenarios"].get(arm, {})
            cells.append(f"{fault_cost(ablated, arm, s)[0]:+.2f}" if has else "—")
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
        print(f"| {goal} | {MET[ok]} | {figures} |")
    measured = [ok for _, ok, _ in rows if ok is not None]
    print(f"\n{sum(measured)} of {len(measured)} measured goals met; {len(rows) - len(measured)} not "
          f"measured. Baselines: {', '.join(compared_arms(results, args.policy))}.")
    if ablated is not None:
        print("\n" + "\n".join(ablation(results, ablated, args.policy)))
    return 0 if all(measured) else 1


MET = {True: "yes", False: "**no**", None: "not measured"}


if __name__ == "__main__":
    sys.exit(main())
