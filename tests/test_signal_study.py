"""The signal study: its scores on hand-made traces, step by step, and the study end to end
on a tiny model, where the traced AdamW must step exactly as the suite's AdamW does."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness_helpers import ROOT
from lbw_jax.train.study.signal_scores import derived, ema, first_flag, harm_onset, score

TINY = ["--config.model.arch.hidden_size=32", "--config.model.arch.intermediate_size=64",
        "--config.model.arch.num_layers=2", "--config.model.arch.num_heads=2",
        "--config.model.arch.num_kv_heads=1", "--config.model.arch.head_dim=16",
        "--config.data.vocab_size=512", "--config.stress.pretrain_steps=8",
        "--config.stress.seeds=1", "--config.stress.steps=12", "--config.stress.eval_every=4",
        "--config.stress.eval_batches=2", "--config.optimizer.warmup_steps=3"]


def test_ema_skips_nan_and_infinities_and_starts_at_the_first_value():
    x = np.array([[np.nan], [2.0], [np.nan], [np.inf], [4.0]])
    np.testing.assert_allclose(ema(x, 0.5)[:, 0], [np.nan, 2.0, 2.0, 2.0, 3.0])


def test_the_harm_onset_is_the_governors_test_step_by_step():
    loss = np.array([3.0] * 12 + [3.3] * 6)[:, None]
    # fast EMA 0.8: after the jump, fast = 3 + 0.3 (1 - 0.8^k); best follows at forget 0.1.
    fast, best, onset = 3.0, 3.0, -1
    for t in range(1, len(loss)):
        fast = 0.8 * fast + 0.2 * loss[t, 0]
        best = min(fast, best + 0.1 * (fast - best))
        if onset < 0 and t >= 10 and (fast - best) / best > 0.03:
            onset = t
    assert onset == 13   # (the second step at the new level)
    assert harm_onset(loss, fast_decay=0.8, forget=0.1, tolerance=0.03, warmup=10)[0] == onset
    assert harm_onset(loss[:12], fast_decay=0.8, forget=0.1, tolerance=0.03, warmup=10)[0] == -1


def test_a_flag_is_the_first_smoothed_crossing_of_the_mechanisms_level():
    over = np.array([1.0, 1.0, 3.0, 3.0, 3.0, 3.0])[:, None]
    # EMA 0.5: 1, 1, 2, 2.5 -> crosses 2 at step 3 (strictly above)
    assert first_flag(over, "overshoot", smooth=0.5)[0] == 3
    assert first_flag(over, "overshoot", smooth=0.5, start=5)[0] == 5
    assert first_flag(over[:3], "overshoot", smooth=0.5)[0] == -1
    acc = np.array([1.0, -3.0])[:, None]
    assert first_flag(acc, "acceptance", smooth=0.5)[0] == 1


def test_scores_count_leads_and_healthy_flags():
    steps = 30
    loss = np.full((steps, 2), 3.0)
    loss[20:, 0] = 4.0                          # cell 0 stressed: harm from step 20 on
    over = np.ones((steps, 2))
    over[12:, 0] = 5.0                          # flags cell 0 early
    over[2:4, 1] = 50.0                         # cell 1 healthy: flagged in the transient only
    sig = {"overshoot": over, "acceptance": np.ones((steps, 2)), "acceptance_salsa": np.ones((steps, 2)),
           "update_growth": np.ones((steps, 2)), "update_growth_per_lr": np.ones((steps, 2)),
           "polyak": np.full((steps, 2), 2.0)}
    out = score(sig, loss, np.array([True, False]), np.array([False, True]),
                harm_knobs=dict(fast_decay=0.8, forget=0.1, tolerance=0.03, warmup=10),
                smooth=0.0, transient=10)
    o = out["overshoot"]
    assert out["harm_onset"][0] == 20 and out["harm_onset"][1] == -1
    assert out["harm_healthy_flagged"] == 0
    assert o["first_flag"][0] == 12 and o["lead_steps"] == [8]
    assert o["stressed_flagged_before_harm"] == 1
    assert o["healthy_flagged"] == 1 and o["healthy_flagged_after_transient"] == 0
    assert out["acceptance"]["stressed_flagged"] == 0 and out["acceptance"]["lead_steps"] == []


def test_derived_signals_take_the_lr_out_and_smooth_both_sides():
    steps = 6
    lr = np.linspace(0.0, 1.0, steps)[:, None]          # a warmup: the update grows with the LR
    sig = {"update_norm": 2.0 * lr, "pred": np.full((steps, 1), -0.5)}
    loss = np.array([5.0, 4.9, 4.8, 4.9, 5.0, 5.1])[:, None]
    out = derived(sig, loss, lr, decay=0.5)
    growth = out["update_growth_per_lr"][:, 0]
    assert np.isnan(growth[:2]).all() and np.allclose(growth[2:], 1.0)   # 2.0 per unit LR throughout
    # SALSA: EMA(loss change) / EMA(previous prediction); the prediction is -0.5 each step.
    change = ema(np.diff(loss, axis=0, prepend=np.nan), 0.5)[:, 0]
    np.testing.assert_allclose(out["acceptance_salsa"][2:, 0], change[2:] / -0.5)
    assert out["acceptance_salsa"][-1, 0] < 0 < out["acceptance_salsa"][2, 0]
    zero = derived({**sig, "pred": np.zeros((steps, 1))}, loss, lr, decay=0.5)
    assert np.isnan(zero["acceptance_salsa"]).all()        # no prediction: no ratio, not inf


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("signals")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "lbw_jax.train.study.signal_study",
                           f"--config.output_dir={out}", "--config.stress.lrs=(1e-3,3e-2)",
                           "--transient=4", *TINY],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "signals.json").read_text())


@pytest.mark.slow
def test_the_study_writes_its_traces_scores_and_report(tiny_study):
    out, study = tiny_study
    assert (out / "signals.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "| `overshoot` | > 2 |" in report and "Command: `python -m lbw_jax.train.study.signal_study" in report
    assert len(study["cells"]) == 2 and len(study["cells"][0]["loss"]) == 12
    first = study["cells"][0]
    assert first["signal_overshoot"][0] is None            # no previous step: no signal
    # The warmup's first LR is 0: no step, so no Polyak ratio; every later step has one.
    assert first["signal_polyak"][0] is None and all(v is not None for v in first["signal_polyak"][1:])


@pytest.mark.slow
def test_the_traced_adamw_steps_exactly_as_the_suites_adamw(tiny_study, tmp_path):
    _, study = tiny_study
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "lbw_jax.train.stress", f"--config.output_dir={tmp_path}",
                           "--config.stress.lrs=(1e-3,3e-2)", "--config.stress.arms=('adamw',)",
                           "--config.stress.fault_arms=()", "--config.stress.scenarios=()",
                           "--config.stress.controls_at=all", "--config.stress.sequential_cells=0",
                           *TINY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    suite = json.loads((tmp_path / "results.json").read_text())
    for cell, twin in zip(suite["cells"], study["cells"]):
        assert (cell["lr"], cell["seed"]) == (twin["lr"], twin["seed"])
        np.testing.assert_allclose(cell["loss"], twin["loss"], rtol=1e-5)
        assert cell["final_ppl"] == pytest.approx(twin["final_ppl"], rel=1e-5)
