"""The guard over a baseline (``optimizer.policy`` with ``optimizer.baseline``): the guard's
scale enters as the baseline's learning-rate multiplier (``lbw_jax.scaled_lr``), so under a
constant scale s the guarded baseline is the bare baseline at ``learning_rate * s`` step for
step; a step the trust region bounds is taken again at the bounded scale, so
Schedule-Free's sequences stay consistent; a skipped step leaves the baseline's state
exactly as it was; an estimate gone 0/0 is undone."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax
from lbw_jax.train.configs.base import base_config
from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu
from policies_for_tests import ScheduledScale
from lbw_jax.train import optim
from lbw_jax.train.errors import ConfigError
from lbw_jax.train.stress.engine.arms import build_arm, parse_arm
from lbw_jax.train.normalize import prepare_config
from lbw_jax.train.validate import check_config as validate

GUARDABLE = ["mechanize", "prodigy", "dadapt_adamw", "schedule_free_adamw", "momo_adam"]
SCALE = 0.3


@dataclasses.dataclass(frozen=True, kw_only=True)
class HalvedSteps(ScheduledScale):
    """A constant scale whose one-step limit always halves the step (as a trust region)."""

    def limit(self, updates, state):
        return jnp.float32(0.5), state


def _cfg(baseline, lr=2e-2):
    cfg = base_config()
    schedule = "constant" if baseline == "schedule_free_adamw" else "cosine"
    cfg.optimizer.update(policy="none", baseline=baseline, schedule=schedule, warmup_steps=3, lr=lr)
    cfg.train.steps = 40
    if baseline in ("prodigy", "dadapt_adamw"):
        cfg.optimizer[baseline].estim_lr0 = 1e-2   # so that 40 steps move the toy
    if baseline == "mechanize":
        cfg.optimizer.mechanize.s_init = 1.0
    return cfg


def _bare_at(baseline, multiplier):
    """The bare baseline with its learning rate times ``multiplier``."""
    cfg = _cfg(baseline)
    if optim.BASELINES[baseline].lr_free:       # its learning_rate knob multiplies its estimate
        cfg.optimizer[baseline].learning_rate = multiplier
    else:
        cfg.optimizer.lr = cfg.optimizer.lr * multiplier
    return optim.build_optimizer(cfg)


def _toy(tx, steps=40, zero_first=False, nan_at=None):
    """A noisy least-squares problem (the loss is ``value=``): params and states per step."""
    keys = jax.random.split(jax.random.PRNGKey(0), steps)
    params = {"w": jnp.ones((6, 3)), "b": jnp.zeros(3)}
    target = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    loss = lambda p, x: jnp.mean((x @ p["w"] + p["b"] - x @ target) ** 2) + 0.05
    state, out = tx.init(params), []
    for t in range(steps):
        value, grads = jax.value_and_grad(loss)(params, jax.random.normal(keys[t], (8, 6)))
        if zero_first and t == 0:
            grads = jax.tree.map(jnp.zeros_like, grads)
        if nan_at == t:
            grads = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), grads)
        updates, state = jax.jit(tx.update)(grads, state, params, value=value)
        params = optax.apply_updates(params, updates)
        out.append((params, state))
    return out


def _guarded(baseline, policy):
    return optim.build_optimizer(_cfg(baseline), policy_name="scheduled", policy=policy)


@pytest.mark.parametrize("baseline", GUARDABLE)
def test_under_a_constant_scale_the_guarded_baseline_is_the_bare_baseline_at_the_scaled_lr(baseline):
    got = _toy(_guarded(baseline, ScheduledScale(schedule=lambda t: SCALE)))
    want = _toy(_bare_at(baseline, SCALE))
    unscaled = _toy(_bare_at(baseline, 1.0))
    for (p_got, _), (p_want, _) in zip(got, want):
        chex.assert_trees_all_close(p_got, p_want, rtol=1e-4, atol=1e-6)
    # Not a tautology: the scale changed the run (an outside scale would differ, too).
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in
              zip(jax.tree.leaves(got[-1][0]), jax.tree.leaves(unscaled[-1][0])))
    assert gap > 1e-3


@pytest.mark.parametrize("baseline", GUARDABLE)
def test_a_bounded_step_is_taken_again_at_the_bounded_scale(baseline):
    """The trust region's factor is known only after the baseline proposed its step; the
    baseline's state must follow the step applied (Schedule-Free's z and x, D-Adaptation's
    sums), so the guard runs the baseline again at scale x factor."""
    got = _toy(_guarded(baseline, HalvedSteps(schedule=lambda t: SCALE)))
    want = _toy(_bare_at(baseline, SCALE * 0.5))
    for (p_got, s_got), (p_want, _) in zip(got, want):
        chex.assert_trees_all_close(p_got, p_want, rtol=1e-4, atol=1e-6)
    assert float(got[-1][1].multiplier) == pytest.approx(SCALE * 0.5)


def test_schedule_free_under_the_guard_is_evaluated_at_its_average():
    """Schedule-Free's evaluation point under the guard is the bare run's: its state
    describes the run the guard let it take."""
    record = optim.BASELINES["schedule_free_adamw"]
    got = _toy(_guarded("schedule_free_adamw", HalvedSteps(schedule=lambda t: SCALE)))
    want = _toy(_bare_at("schedule_free_adamw", SCALE * 0.5))
    (p_got, s_got), (p_want, s_want) = got[-1], want[-1]
    chex.assert_trees_all_close(record.eval_params(s_got, p_got), record.eval_params(s_want, p_want),
                                rtol=1e-4, atol=1e-6)
    # (y = (1 - b1) z + b1 x: the average x differs from the point trained at.)
    assert not np.allclose(record.eval_params(s_got, p_got)["w"], p_got["w"])


@pytest.mark.parametrize("baseline", GUARDABLE)
def test_a_skipped_step_leaves_the_baselines_state_exactly_as_it_was(baseline):
    run = _toy(_guarded(baseline, lbw_jax.governor()), steps=6, nan_at=3)
    (p_before, s_before), (p_after, s_after) = run[2], run[3]
    assert int(s_after.skipped) == int(s_before.skipped) + 1
    chex.assert_trees_all_equal(s_after.inner_state, s_before.inner_state)
    chex.assert_trees_all_equal(p_after, p_before)
    assert int(run[-1][1].skipped) == 1              # and it trains on after


@pytest.mark.parametrize("baseline", ["dadapt_adamw", "prodigy"])
def test_an_estimate_gone_0_over_0_is_undone(baseline):
    """An all-zero first gradient makes D-Adaptation's and Prodigy's estimate 0/0. Bare,
    D-Adaptation then returns a finite zero update and a NaN estimate that max() keeps
    forever; inside the guard, the step is skipped and the estimate stays as it was."""
    bare = _toy(_bare_at(baseline, 1.0), steps=3, zero_first=True)
    estimate = lambda state: optax.tree_utils.tree_get(state, "estim_lr")
    assert not np.isfinite(estimate(bare[-1][1]))
    run = _toy(_guarded(baseline, lbw_jax.governor()), steps=12, zero_first=True)
    state = run[0][1]
    assert int(state.skipped) == 1 and float(estimate(state)) == pytest.approx(1e-2)
    assert all(np.isfinite(float(estimate(s))) for _, s in run)
    assert int(run[-1][1].skipped) == 1
    moved = float(jnp.max(jnp.abs(run[-1][0]["w"] - 1.0)))
    assert moved > 1e-3


def test_scale_inside_needs_a_scaled_lr_inside():
    with pytest.raises(TypeError, match="no lbw_jax.scaled_lr inside"):
        lbw_jax.lbw_guard(optax.adamw(1e-3), scale_inside=True).init({"w": jnp.ones(2)})


@pytest.mark.parametrize("baseline", GUARDABLE)
def test_train_run_runs_the_guard_over_a_baseline(baseline):
    cfg = _cfg(baseline)
    cfg.optimizer.policy = "governor"
    validate(cfg)
    tx = optim.build_optimizer(cfg)
    state = tx.init({"w": jnp.ones(3)})
    assert isinstance(state, lbw_jax.GuardState)
    assert lbw_jax.ScaledLRState in {type(s) for s in jax.tree.leaves(
        state, is_leaf=lambda x: isinstance(x, lbw_jax.ScaledLRState))}


@pytest.mark.parametrize("baseline", ["clip", "zclip", "spike_skip", "update_clip", "plateau"])
def test_the_guard_over_a_step_control_is_refused_with_the_reason(baseline):
    cfg = _cfg(baseline)
    cfg.optimizer.policy = "governor"
    with pytest.raises(ConfigError, match="two controls of one step"):
        validate(cfg)


def test_the_suite_names_a_guard_over_a_baseline():
    cfg = stress_cpu()
    arm = build_arm("governor@dadapt_adamw_lr0", cfg)
    assert arm.kind == "guard" and arm.lr_free
    assert arm.label == ("lbw_guard(governor, room_cap=False over D-Adaptation AdamW "
                         "(optax.contrib.dadapt_adamw), estim_lr0=0.001)")
    sf = build_arm("governor@schedule_free_adamw", cfg)
    assert sf.lr_mode == "constant" and sf.eval_params is not None
    for name in ("replay_governor@prodigy", "effective_lr_governor@prodigy"):
        with pytest.raises(ValueError, match="a guard over a baseline has no"):
            parse_arm(name, cfg.stress)
    with pytest.raises(ValueError, match="two controls of one step"):
        build_arm("governor@clip", cfg)
    with pytest.raises(ValueError, match="before the @ is not a guard"):
        build_arm("prodigy@dadapt_adamw", cfg)


@pytest.mark.slow
def test_train_run_records_both_parts_of_a_guarded_baseline(tmp_path):
    from harness_helpers import small_config, unguarded
    from lbw_jax.train.session.resume_rules import differences
    from lbw_jax.train.run import train

    cfg = unguarded(small_config(tmp_path, steps=4, log_every=1))
    cfg.optimizer.update(policy="governor", baseline="dadapt_adamw", schedule="cosine", warmup_steps=2)
    cfg.optimizer.dadapt_adamw.estim_lr0 = 1e-3
    summary = train(cfg)
    import json
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["optimizer"]["policy"], saved["optimizer"]["baseline"]) == ("governor", "dadapt_adamw")
    from lbw_jax.train.records.metrics import read_metrics
    rows = read_metrics(tmp_path)
    last = [row for row in rows if "loss" in row][-1]   # the last training step's record
    assert {"multiplier", "regime", "skipped", "baseline_estimate"} <= set(last)
    assert last["baseline_estimate"] >= 1e-3 and last["skipped"] == 0 and summary["status"] == "finished"
    # The resume check compares the knobs of both parts.
    flat = lambda knob: {"optimizer.policy": "governor", "optimizer.baseline": "dadapt_adamw",
                         "optimizer.dadapt_adamw.estim_lr0": knob, "optimizer.governor.tolerance": 0.05}
    assert differences(flat(1e-3), flat(1e-2)) == ["optimizer.dadapt_adamw.estim_lr0: 0.001 -> 0.01"]
    # A run saved before the record's guard knob (room_cap=False over D-Adaptation) resumes
    # with what it trained with, and says so.
    assert saved["optimizer"]["governor"]["room_cap"] is False
    saved["optimizer"]["governor"]["room_cap"] = True
    (tmp_path / "config.json").write_text(json.dumps(saved))
    again = unguarded(small_config(tmp_path, steps=6, log_every=1))
    again.optimizer.update(policy="governor", baseline="dadapt_adamw", schedule="cosine", warmup_steps=2)
    again.optimizer.dadapt_adamw.estim_lr0 = 1e-3
    again.optimizer.decay_steps = 4                 # the saved run's cosine horizon
    resumed = train(again)
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 6
    assert again.optimizer.governor.room_cap is True


def test_the_governor_over_momo_runs_without_its_trust_region_unless_told_otherwise():
    cfg = _cfg("momo_adam")
    cfg.optimizer.policy = "governor"
    notes = prepare_config(cfg)
    assert cfg.optimizer.governor.use_trust is False          # config.json holds what runs
    assert [n.split(":")[0] for n in notes] == ["optimizer.governor.use_trust=False over "
                                                "optimizer.baseline='momo_adam'"]
    assert optim.baseline_guard_knobs(cfg, "governor", "momo_adam") == {}   # set now: it stands
    fresh = _cfg("momo_adam")
    fresh.optimizer.policy = "governor"
    assert optim.baseline_guard_knobs(fresh, "governor", "momo_adam") == {"use_trust": False}
    fresh.optimizer.governor.trust_ratio = 4.0                # another knob set: still applied
    assert optim.baseline_guard_knobs(fresh, "governor", "momo_adam") == {"use_trust": False}
    assert optim.baseline_guard_knobs(fresh, "governor", "dadapt_adamw") == {"room_cap": False}
    assert optim.baseline_guard_knobs(fresh, "governor", "prodigy") == {"room_cap": False}
    assert optim.baseline_guard_knobs(fresh, "governor", "schedule_free_adamw") == {}
    scfg = stress_cpu()
    scfg.stress.variants["momo_lb"] = {"policy": "momo_adam", "kwargs": {"adapt_lower_bound": True}}
    arm = build_arm("governor@momo_lb", scfg)
    assert arm.label.startswith("lbw_guard(governor, use_trust=False over MoMo-Adam")
