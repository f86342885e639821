"""Time to target (lbw_jax.train.stress.metrics.target) and the flat line of an LR-free baseline in the
headline, on a hand-made results file with every number worked out by hand."""

import json
import math

import pytest

from lbw_jax.train.stress.metrics import target
from lbw_jax.train.stress.metrics.headline import headline

EVAL_STEPS = [0, 10, 20, 30]
START = 100.0


def _row(finals, flat=False):
    return {"mean": sum(finals) / len(finals), "finals": finals, "diverged": 0, "seeds": len(finals),
            **({"flat": True} if flat else {})}


def _results():
    # Tuned AdamW: LR 0.01, mean final 20.0, so the target is 20.2.
    curves = {
        ("adamw", 0.001): [[100, 60, 40, 30], [100, 62, 41, 31]],
        ("adamw", 0.01): [[100, 40, 25, 20.1], [100, 41, 26, 19.9]],   # both reach at step 30
        ("governor", 0.01): [[100, 30, 20.2, 20.0], [100, 35, 20.1, 20.0]],  # both at step 20
        ("governor", 0.001): [[100, 50, 20.1, 20.0], [100, 70, 50, 40]],   # one seed only
        ("prodigy", 0.001): [[100, 90, 80, None], [100, 90, 80, 70]],     # never (a NaN at the end)
    }
    cells = [{"arm": arm, "lr": lr, "seed": seed, "scenario": "none", "val_ppl": curve}
             for (arm, lr), seeds in curves.items() for seed, curve in enumerate(seeds)]
    cells.append({"arm": "adamw", "lr": 0.01, "seed": 0, "scenario": "nan_grad", "val_ppl": [100, 1, 1, 1]})
    grid = {
        "adamw": {"0.001": _row([30.0, 31.0]), "0.01": _row([20.1, 19.9])},
        "governor": {"0.001": _row([20.0, 40.0]), "0.01": _row([20.0, 20.0])},
        "prodigy": {"0.001": _row([70.0, 70.0], flat=True), "0.01": _row([70.0, 70.0], flat=True)},
    }
    kinds = {"adamw": "baseline", "governor": "guard", "prodigy": "baseline"}
    # 2 cells x 30 steps in 6 s: 0.1 s a cell-step for AdamW; 0.2 s for the governor.
    throughput = {"adamw": {"cells": 5, "run_s": 15.0}, "governor": {"cells": 4, "run_s": 24.0},
                  "prodigy": {"cells": 2, "run_s": 6.0}}
    results = {"grid": grid, "kinds": kinds, "sources": {}, "start_ppl": START, "cells": cells,
               "eval_steps": EVAL_STEPS, "throughput": throughput, "config": {"stress": {"steps": 30}}}
    results["headline"] = headline(results)
    return json.loads(json.dumps(results))


def test_first_reach():
    assert target.first_reach(EVAL_STEPS, [100, 30, 20.2, 19], 20.2) == 20
    assert target.first_reach(EVAL_STEPS, [100, None, math.nan, 21], 20.2) is None


def test_time_to_target_by_hand():
    t = target.time_to_target(_results())
    assert t["target"] == pytest.approx(20.2) and t["tuned_lr"] == 0.01
    adamw = t["arms"]["adamw"][0.01]
    assert adamw["steps"] == [30, 30] and adamw["mean_steps"] == 30.0
    assert adamw["mean_seconds"] == pytest.approx(30 * 15.0 / (5 * 30))        # 3.0 s; faults not counted
    assert t["tuned_steps"] == 30.0
    gov = t["arms"]["governor"][0.01]
    assert gov["steps"] == [20, 20] and gov["mean_seconds"] == pytest.approx(20 * 24.0 / (4 * 30))
    part = t["arms"]["governor"][0.001]
    assert (part["reached"], part["seeds"], part["mean_steps"]) == (1, 2, None)
    assert t["arms"]["prodigy"][0.001]["reached"] == 0
    assert t["arms"]["adamw"][0.001]["reached"] == 0
    # Faster than tuned AdamW in every seed, by one evaluation (10 steps): only the governor at 0.01.
    assert t["resolution"] == 10
    assert t["faster"] == [{"arm": "governor", "lr": 0.01, "mean_steps": 20.0}] and t["ties"] == []
    assert target.describe(gov) == "20 steps (4.0 s)"
    assert target.describe(part) == "1/2 reached" and target.describe(None) == "never"
    assert target.fastest(t["arms"]["governor"]) == (0.01, gov)


def test_sooner_by_less_than_one_evaluation_is_a_tie():
    """Seeds at 20 and 30 against tuned AdamW's 30 and 30: a mean of 25, one seed one
    evaluation earlier, is a tie, not a faster arm; 20 and 20 is faster."""
    r = _results()
    for cell in r["cells"]:
        if (cell["arm"], cell["lr"], cell["seed"]) == ("governor", 0.01, 1):
            cell["val_ppl"] = [100, 35, 21.0, 20.0]
    t = target.time_to_target(r)
    assert t["arms"]["governor"][0.01]["mean_steps"] == 25.0
    assert t["faster"] == [] and t["ties"] == [{"arm": "governor", "lr": 0.01, "mean_steps": 25.0}]


def test_an_lr_free_arm_is_one_flat_line_counted_once():
    h = headline(_results())
    assert h["prodigy"]["lr_free"] and not h["adamw"]["lr_free"]
    assert (h["prodigy"]["cells"], h["prodigy"]["diverged"]) == (2, 0)        # not 2 per LR
    # The best mean log-perplexity over the grid: AdamW at 0.01 (a hair below the governor's log 20).
    best = (math.log(20.1) + math.log(19.9)) / 2
    assert h["prodigy"]["lr_sensitivity"] == pytest.approx(math.log(70.0) - best)


def test_the_size_axis_ranks_the_arms_at_each_size():
    from lbw_jax.train.stress.goals import sizes

    def one(n_params, governor_at_stressed):
        r = _results()
        r["n_params"] = n_params
        r["grid"]["adamw"]["0.1"] = _row([90.0, 90.0])             # a stressed LR for AdamW
        r["grid"]["governor"]["0.1"] = _row([governor_at_stressed] * 2)
        r["grid"]["prodigy"]["0.1"] = _row([70.0, 70.0], flat=True)
        return r

    table = sizes.sizes([one(1e5, 25.0), one(1e6, 80.0)])
    small, large = table["sizes"]
    assert small["stressed"] == [0.1] and small["tuned_lr"] == 0.01
    gov = table["arms"]["governor"]
    assert gov[0]["stressed_pct"][0.1] == pytest.approx(25.0)              # 25 / 20 - 1
    assert [p["rank"] for p in gov] == [1, 2]                             # first, then behind prodigy
    assert table["holds"] == {"adamw": True, "governor": False, "prodigy": False}
    text = sizes.markdown(table, {})
    assert "| governor |" in text and "changes" in text and "0.10M" in text
