"""The skip replay (lbw_jax.train.study.skip_replay) and the gradient-norm noise floor it measured."""

import json

import numpy as np

from lbw_jax.train.study import skip_replay


def _healthy(steps=120, seed=0):
    rng = np.random.default_rng(seed)
    loss = 5.0 + 0.05 * rng.standard_normal(steps)
    norm = 0.5 * np.exp(0.05 * rng.standard_normal(steps))
    return loss, norm


def test_a_healthy_excursion_of_the_gradient_norm_is_not_skipped_at_the_default_floor():
    # The default run's shape: the gradient norm 2.3x its level for 7 steps, the loss flat.
    loss, norm = _healthy()
    norm[60:67] *= 2.3
    assert not skip_replay.replay(loss, norm)["skip"].any()
    # At the old floor (0.01) the same excursion was skipped: the floor is what changed.
    old = skip_replay.replay(loss, norm, grad_noise=0.01)["skip"]
    assert old[60:67].all() and not old[:60].any()


def test_a_100x_gradient_and_a_burst_of_garbage_stay_skipped():
    loss, norm = _healthy()
    norm[70] *= 100.0
    skip = skip_replay.replay(loss, norm)["skip"]
    assert skip[70] and skip.sum() == 1
    loss, norm = _healthy()
    loss[80:100] = 8.3                       # random tokens: the loss of a uniform guess
    skip = skip_replay.replay(loss, norm)["skip"]
    assert skip[80:100].all() and not skip[:80].any()


def test_the_replay_reads_a_stress_report_and_a_run(tmp_path):
    loss, norm = _healthy(30)
    cells = [{"arm": "adamw", "lr": lr, "seed": 0, "scenario": "none", "loss": loss.tolist(),
              "grad_norm": norm.tolist()} for lr in (1e-3, 1e-2)]
    bad = norm.copy()
    bad[20] *= 100
    cells.append({"arm": "governor", "lr": 1e-3, "seed": 0, "scenario": "grad_x100",
                  "loss": loss.tolist(), "grad_norm": bad.tolist()})
    results = {"headline": {"_tuned": {"lr": 1e-3}}, "cells": cells,
               "config": {"stress": {"inject_at": 20, "burst_len": 5}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    got = skip_replay.traces(tmp_path / "results.json")
    assert [t["kind"] for t in got] == ["healthy", "grad_x100"]   # 1e-2 is above tuned: not healthy
    row = skip_replay.summarize(got[1])
    assert row["fault_skipped"] == 1 and row["skips"] == 1
    recs = [{"kind": "train", "step": i + 1, "loss": float(l), "grad_norm": float(g)}
            for i, (l, g) in enumerate(zip(loss, norm))]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    (run,) = skip_replay.traces(tmp_path / "metrics.jsonl")
    assert skip_replay.summarize(run)["skips"] == 0
