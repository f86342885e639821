"""The stress suite's step and controls, in process on a tiny model and random tokens:
every arm runs the cosine schedule (the LR handed to its optimizer is recorded), and a
replay of a guard's own multiplier trajectory reproduces the guard's run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lbw_jax.train.configs.stress_cpu import get_config
from lbw_jax.train.models import CausalLM, DecoderConfig
from lbw_jax.train.optim import schedule
from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.stress.engine.arms import build_arm
from lbw_jax.train.optim import schedule_shape
from lbw_jax.train.stress.engine.suite import plan_cells
from lbw_jax.train.stress.engine.sweep import ArmProgram, Cell, run_cells

VOCAB, SEQ, BATCH, STEPS = 64, 16, 4, 24


# Every test here runs stress-suite arms end to end.
pytestmark = pytest.mark.slow


class RandomOrder:
    """Stands in for a BatchOrder: a fixed batch of random tokens per step."""

    def __init__(self, seed):
        self.seed = seed

    def batch(self, step):
        return np.random.default_rng([self.seed, step]).integers(0, VOCAB, (BATCH, SEQ + 1), dtype=np.int32)


@pytest.fixture(scope="module")
def setup():
    cfg = get_config()
    s = cfg.stress
    s.steps, s.eval_every, s.seeds, s.scenarios = STEPS, 8, 1, ()
    cfg.optimizer.reflex.stats_every = 2
    cfg.optimizer.warmup_steps = 4
    arch = DecoderConfig(model_type="qwen2", vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16, rope_theta=1e4,
                         rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=True,
                         max_position_embeddings=64)
    graphdef, params, frozen = nnx.split(CausalLM(arch, rngs=nnx.Rngs(0)), nnx.Param, ...)
    val = np.stack([RandomOrder(99).batch(i) for i in range(2)])
    common = dict(frozen=frozen, orders={0: RandomOrder(0)}, val=val, steps=STEPS, eval_every=8,
                  stress=s, vocab_size=VOCAB)
    return cfg, graphdef, params, common


def test_every_arm_runs_the_cosine_schedule(setup):
    cfg, graphdef, params, common = setup
    s = cfg.stress
    assert cfg.optimizer.schedule == "cosine"
    shape = schedule_shape(cfg.optimizer.schedule, STEPS, cfg.optimizer.warmup_steps)
    lr = 3e-3
    expected = np.asarray([schedule(cfg, STEPS, peak=lr)(t) for t in range(STEPS)])
    assert expected[0] == 0.0 and expected[4] == pytest.approx(lr)
    assert expected[-1] == pytest.approx(lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 19 / 20))), rel=1e-5)
    runs = {}
    for name in s.arms:   # guards first: controls and replays copy them
        arm = build_arm(name, cfg)
        if arm.source is not None and arm.source not in runs:
            continue
        cells, multipliers = plan_cells(arm, s, [lr], runs.get(arm.source))
        runs[name] = out = run_cells(ArmProgram(arm, graphdef, shape), cells, params,
                                     multipliers=multipliers, **common)
        if arm.kind == "control":       # the cosine schedule at the guard's mean effective LR
            want = expected * cells[0].run_lr / lr
        elif arm.kind == "replay":      # the cosine schedule times the guard's trajectory
            want = expected * runs[arm.source].multiplier[:, 0]
        elif arm.lr_free:               # the schedule's shape: a multiplier of its own estimate
            want = expected / lr
        elif arm.lr_mode == "constant":  # Schedule-Free: the peak LR; it warms up by itself
            want = np.full(STEPS, lr)
        else:
            want = expected
        np.testing.assert_allclose(out.lr[:, 0], want, rtol=1e-6, atol=1e-12, err_msg=name)
    assert {build_arm(n, cfg).kind for n in runs} == {"baseline", "guard", "control", "replay"}
    assert set(runs) == set(s.arms)


def test_a_replay_of_a_guards_own_trajectory_reproduces_its_run(setup):
    cfg, graphdef, params, common = setup
    shape = schedule_shape(cfg.optimizer.schedule, STEPS, cfg.optimizer.warmup_steps)
    lr = 3e-2   # high enough that reflex moves its scale
    guard = run_cells(ArmProgram(build_arm("reflex", cfg), graphdef, shape), [Cell("reflex", lr, 0)],
                      params, keep_params=True, **common)
    trajectory = guard.multiplier[:, 0]
    assert int(guard.skipped[-1, 0]) == 0
    assert trajectory.min() < 0.9 and trajectory.max() == 1.0 and len(set(trajectory.tolist())) > 2

    replay_arm = build_arm("replay_reflex", cfg)
    replay = run_cells(ArmProgram(replay_arm, graphdef, shape), [Cell("replay_reflex", lr, 0)], params,
                       keep_params=True, multipliers=trajectory[None], **common)
    # Without the trajectory the same arm is plain AdamW, which ends elsewhere.
    plain = run_cells(ArmProgram(replay_arm, graphdef, shape), [Cell("replay_reflex", lr, 0)], params,
                      keep_params=True, **common)
    gap = lambda runs: max(float(jnp.max(jnp.abs(a - b))) for a, b in
                           zip(jax.tree.leaves(runs.final_params), jax.tree.leaves(guard.final_params)))
    # Float rounding only: the guard scales AdamW's output (-lr * x) * s, the replay builds
    # AdamW at lr * s; the last bits differ and 24 steps of Adam amplify them a little.
    assert gap(replay) < 2e-5 and gap(replay) < gap(plain) / 100, (gap(replay), gap(plain))
    np.testing.assert_allclose(replay.loss[:, 0], guard.loss[:, 0], rtol=1e-5)
    np.testing.assert_allclose(replay.lr[:, 0], guard.lr[:, 0] * trajectory, rtol=1e-6)


def test_replays_take_the_mean_trajectory_over_seeds_and_faults_get_the_clean_one(setup):
    cfg, *_ = setup
    s = cfg.stress.copy_and_resolve_references()
    s.seeds, s.scenarios, s.scenario_lr, s.lrs = 2, ("nan_grad",), 1e-2, (1e-2, 1e-1)
    s.fault_arms, s.fault_seeds = ("replay_reflex",), 0
    cells = [Cell("reflex", lr, seed, sc) for lr in (1e-2, 1e-1) for seed in (0, 1) for sc in ("none",)]
    cells.append(Cell("reflex", 1e-2, 0, "nan_grad"))
    scale = np.stack([np.full(5, v) for v in (0.2, 0.4, 0.6, 1.0, 0.0)], axis=1)
    fake = type("Runs", (), {"cells": cells, "multiplier": scale})()
    planned, multipliers = plan_cells(build_arm("replay_reflex", cfg), s, [1e-2, 1e-1], fake)
    assert [(c.lr, c.seed, c.scenario) for c in planned] == [
        (1e-2, 0, "none"), (1e-2, 1, "none"), (1e-1, 0, "none"), (1e-1, 1, "none"),
        (1e-2, 0, "nan_grad"), (1e-2, 1, "nan_grad")]
    np.testing.assert_allclose(multipliers[:, 0], [0.3, 0.3, 0.8, 0.8, 0.3, 0.3])
    control, none = plan_cells(build_arm("effective_lr_reflex", cfg), s, [1e-1], fake)
    assert none is None and [c.run_lr for c in control] == [pytest.approx(1e-1 * 0.6), pytest.approx(1e-1)]
    faults = faults_lib.faults_for([c.scenario for c in planned], s)
    assert list(faults.grad_step) == [-1, -1, -1, -1, s.inject_at, s.inject_at]


def test_a_cell_records_the_room_probes_forward_passes(setup):
    """The default governor (v4) probes the loss along its step: a cell's record counts the
    forward passes so far (the cost of its cadence); v3.0 and AdamW record none."""
    cfg, graphdef, params, common = setup
    shape = schedule_shape(cfg.optimizer.schedule, STEPS, cfg.optimizer.warmup_steps)
    cfg = cfg.copy_and_resolve_references()
    cfg.stress.variants["governor_v3"] = {"policy": "governor", "kwargs": {"use_room": False}}
    probes = {}
    for name in ("governor", "governor_v3", "adamw"):
        runs = run_cells(ArmProgram(build_arm(name, cfg), graphdef, shape), [Cell(name, 3e-2, 0)], params,
                         **common)
        probes[name] = runs.room_probes[:, 0]
    counts = probes["governor"]
    # A probe on each of the burst's 10 first steps (the first reads nothing: the warmup's LR,
    # so the step, is 0 there), then one every probe_every (25) steps: none more in 24 steps.
    np.testing.assert_array_equal(counts, np.minimum(np.arange(STEPS), 9))
    assert not probes["governor_v3"].any() and not probes["adamw"].any()
