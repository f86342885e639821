"""The model-size axis (the paper's Fig. 2) from several results files, one per size:
``python -m lbw_jax.train.stress.goals.sizes SMALL.json MIDDLE.json LARGE.json`` prints markdown.

For each size: its parameters, tuned AdamW (the best AdamW LR of that file's grid) and
its stressed LRs (``headline.stressed_lrs``). For each arm that every file holds: its
mean final perplexity against that size's tuned AdamW at the tuned LR and at each
stressed LR, and its rank among those arms by its mean capped log-perplexity over the
stressed LRs (a diverged or non-finite seed counts as the start, as in the LR
sensitivity). An arm's standing holds when its rank is the same at every size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from lbw_jax.train.stress.metrics.headline import stressed_lrs, tuned_adamw
from lbw_jax.train.values import format_pct, is_finite, pct_change


def _row(results, arm, lr):
    return next((row for key, row in results["grid"][arm].items() if float(key) == float(lr)), None)


def _capped(results, arm, lrs) -> float:
    start = math.log(results["start_ppl"])
    logs = [min(math.log(f), start) if is_finite(f) and f > 0 else start
            for lr in lrs for f in (_row(results, arm, lr) or {"finals": [math.nan]})["finals"]]
    return sum(logs) / len(logs)


def sizes(files: list[dict], tolerance: float = 0.05) -> dict:
    """{"sizes": [{n_params, tuned_lr, tuned_ppl, stressed, start_ppl}], "arms": arm ->
    [per size {"tuned_pct", "stressed_pct": {lr: pct}, "rank", "diverged"}], "holds": arm -> bool}."""
    arms = [a for a in files[0]["grid"] if all(a in f["grid"] for f in files)
            and files[0]["kinds"].get(a) in ("baseline", "guard")]
    out = {"sizes": [], "arms": {a: [] for a in arms}, "holds": {}}
    for f in files:
        tuned_lr, tuned = tuned_adamw(f["grid"])
        stressed = stressed_lrs(f["grid"], tolerance)
        out["sizes"].append({"n_params": f["n_params"], "tuned_lr": tuned_lr, "tuned_ppl": tuned,
                             "stressed": stressed, "start_ppl": f["start_ppl"]})
        score = {a: _capped(f, a, stressed) for a in arms} if stressed else {a: 0.0 for a in arms}
        order = sorted(arms, key=lambda a: score[a])
        for a in arms:
            at = lambda lr: (_row(f, a, lr) or {}).get("mean")
            out["arms"][a].append({
                "tuned_pct": pct_change(at(tuned_lr), tuned),
                "stressed_pct": {lr: pct_change(at(lr), tuned) for lr in stressed},
                "rank": order.index(a) + 1,
                "diverged": sum((_row(f, a, lr) or {}).get("diverged", 0) for lr in stressed),
            })
    for a, per in out["arms"].items():
        out["holds"][a] = len({p["rank"] for p in per}) == 1
    return out


def markdown(table: dict, labels: dict) -> str:
    head = [f"{s['n_params'] / 1e6:.2f}M (tuned AdamW {s['tuned_ppl']:.2f} at {s['tuned_lr']:g}; "
            f"start {s['start_ppl']:.2f})" for s in table["sizes"]]
    lines = ["| arm | " + " | ".join(head) + " | standing |", "|---" * (len(head) + 2) + "|"]
    for arm, per in table["arms"].items():
        cells = []
        for p in per:
            stressed = ", ".join(f"{lr:g}: {format_pct(v)}" for lr, v in p["stressed_pct"].items()) or "none"
            cells.append(f"tuned {format_pct(p['tuned_pct'])}; stressed {stressed}"
                         + (f" (†{p['diverged']})" if p["diverged"] else "") + f"; rank {p['rank']}")
        lines.append(f"| {labels.get(arm, arm)} | " + " | ".join(cells) + " | "
                     + ("holds" if table["holds"][arm] else "changes") + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="one results.json per model size, smallest first")
    args = parser.parse_args(argv)
    try:
        files = [json.loads(open(path).read()) for path in args.results]
        table = sizes(files)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = {}
    for f in files:
        labels.update(f.get("labels", {}))
    print("Final validation perplexity against each size's tuned AdamW (mean over seeds; † diverged "
          "cells at the stressed LRs); rank by the mean capped log-perplexity over that size's "
          "stressed LRs.\n")
    print(markdown(table, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
