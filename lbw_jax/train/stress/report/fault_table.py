"""The failure-scenario table of a stress report, rendered from a results file, so the
report and any results.json give the same rows:
``python -m lbw_jax.train.stress.report.fault_table RESULTS.json`` prints it as markdown (exit 2,
one line, when the file is missing or malformed or holds no scenarios).

Each row is one arm under one fault: survived seeds, perplexity before and after, the
cost against the same arm's clean run, the seed spread (std) of that clean run at the
scenarios' LR, and the cost's standing against the lowest cost of the scenario, where a
difference inside the clean spread is a tie (``summary.fault_standings``: seed noise is
not a win or a loss).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from lbw_jax.train.stress.metrics import summary

HEADER = ["| arm | scenario | survived | ppl before → after | cost | clean spread | against the best "
          "| recovered | steps to recover |",
          "|---|---|---|---|---|---|---|---|---|"]


def _fmt(x, digits=2):
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def rows(results: dict) -> list[str]:
    """The table's rows (without the header), arm by arm in the results' order."""
    grid, labels = results["grid"], results["labels"]
    lr = results["config"]["stress"]["scenario_lr"]
    outcome = {(arm, scenario): v["summary"]
               for arm, per in results["scenarios"].items() for scenario, v in per.items()}
    standings = {}
    for scenario in dict.fromkeys(sc for _, sc in outcome):
        costs = {arm: a["ppl_loss"] for (arm, sc), a in outcome.items() if sc == scenario}
        spreads = {arm: summary.clean_spread(grid, arm, lr) for arm in costs}
        standings.update({(arm, scenario): v for arm, v in summary.fault_standings(costs, spreads).items()})
    out = []
    for (arm, scenario), a in outcome.items():
        st = standings[(arm, scenario)]
        best = labels.get(st["best"], st["best"])
        against = {"best": "best", "failed": "—", "tie": f"tie ({st['diff']:+.2f} vs {best})",
                   "worse": f"{st['diff']:+.2f} vs {best}"}[st["standing"]]
        out.append(
            f"| {labels[arm]} | {scenario} | {a['survived']}/{a['seeds']} | "
            f"{_fmt(a['before'])} → {_fmt(a['after'])} | {_fmt(a['ppl_loss'])} | "
            f"{_fmt(summary.clean_spread(grid, arm, lr))} | {against} | "
            f"{a['recovered']}/{a['seeds']} | {_fmt(a['steps_to_recover'], 0)} |")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    args = parser.parse_args(argv)
    try:
        with open(args.results) as f:
            results = json.load(f)
        if not results.get("scenarios"):
            raise ValueError(f"{args.results} holds no failure scenarios")
        lines = HEADER + rows(results)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e if not isinstance(e, KeyError) else f'the results lack {e}'}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
