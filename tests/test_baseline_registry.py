"""The registry of baselines (lbw_jax.train.baseline_registry): each baseline is exactly
its optax.contrib transform, its probe reads state by name, the arm names parse into
one typed spec, and adding a baseline is one record."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lbw_jax.train.configs.base import base_config
from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu
from lbw_jax.train import baseline_registry as baselines, optim
from lbw_jax.train.errors import ConfigError
from lbw_jax.train.stress.engine.arms import ArmSpec, build_arm, copy_of, parse_arm, specs_from_results
from lbw_jax.train.validate import check_config as validate


def _cfg(baseline, schedule="cosine"):
    cfg = base_config()
    cfg.optimizer.update(policy="none", baseline=baseline, schedule=schedule, warmup_steps=3, lr=2e-2)
    cfg.train.steps = 12
    return cfg


def _toy_run(tx, steps=8):
    """A quadratic in two tensors: the updates and states of ``steps`` steps."""
    target = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([[0.3, -0.7]])}
    params = jax.tree.map(jnp.zeros_like, target)
    state = tx.init(params)
    out = []
    for _ in range(steps):
        grads = jax.tree.map(lambda p, t: 2 * (p - t), params, target)
        updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


def _expected(name, cfg):
    opt = cfg.optimizer
    if name == "mechanize":
        return optax.contrib.mechanize(optax.adamw(optim.schedule(cfg, cfg.train.steps), b1=opt.b1, b2=opt.b2,
                                                   weight_decay=opt.weight_decay))
    shape = optim.schedule_shape(opt.schedule, cfg.train.steps, opt.warmup_steps)
    floored = lambda t: jnp.maximum(shape(t), baselines.LR_FREE_FLOOR)
    if name == "prodigy":
        return optax.contrib.prodigy(floored, betas=(opt.b1, opt.b2), weight_decay=opt.weight_decay)
    if name == "dadapt_adamw":
        return optax.contrib.dadapt_adamw(floored, betas=(opt.b1, opt.b2), weight_decay=opt.weight_decay)
    return optax.contrib.schedule_free_adamw(opt.lr, warmup_steps=opt.warmup_steps, b1=opt.b1, b2=opt.b2,
                                             weight_decay=opt.weight_decay)


@pytest.mark.parametrize("name", ["mechanize", "prodigy", "dadapt_adamw", "schedule_free_adamw"])
def test_each_baseline_is_its_optax_transform(name):
    cfg = _cfg(name, "constant" if name == "schedule_free_adamw" else "cosine")
    got, got_state = _toy_run(optim.build_optimizer(cfg))
    want, want_state = _toy_run(_expected(name, cfg))
    chex.assert_trees_all_equal(got, want)
    chex.assert_trees_all_equal(got_state, want_state)
    assert float(jnp.max(jnp.abs(got[-1]["a"] - got[0]["a"]))) > 0   # it moved


def test_the_lr_free_baselines_survive_a_warmup_from_zero():
    # optax's prodigy and dadapt_adamw turn every parameter NaN when their LR starts at 0
    # (a linear warmup from 0); the record floors the multiplier.
    for name in ("prodigy", "dadapt_adamw"):
        cfg = _cfg(name)
        assert float(optim.schedule_shape("cosine", 12, 3)(0)) == 0.0
        params, state = _toy_run(optim.build_optimizer(cfg))
        assert all(np.isfinite(x).all() for x in jax.tree.leaves((params, state))), name
        raw, _ = _toy_run(getattr(optax.contrib, name)(optim.schedule_shape("cosine", 12, 3)))
        assert not all(np.isfinite(x).all() for x in jax.tree.leaves(raw)), "the trap is gone: drop the floor"


def test_schedule_free_is_evaluated_at_its_averaged_point():
    cfg = _cfg("schedule_free_adamw", "constant")
    params, state = _toy_run(optim.build_optimizer(cfg))
    record = baselines.BASELINES["schedule_free_adamw"]
    chex.assert_trees_all_equal(record.eval_params(state, params[-1]),
                                optax.contrib.schedule_free_eval_params(state, params[-1]))


def test_probes_read_state_by_name():
    cfg = _cfg("prodigy")
    _, state = _toy_run(optim.build_optimizer(cfg))
    probe = baselines.probe_of("prodigy")(state)
    assert float(probe["estimate"]) == float(state.estim_lr) > 1e-6     # it rose
    assert float(probe["multiplier"]) == 1.0 and int(probe["skipped"]) == 0
    cfg = _cfg("mechanize")
    _, state = _toy_run(optim.build_optimizer(cfg))
    assert float(baselines.probe_of("mechanize")(state)["multiplier"]) == pytest.approx(float(jnp.sum(state.s)))
    assert np.isnan(float(baselines.probe_of("clip")(state)["estimate"]))  # clip reads nothing
    with pytest.raises(KeyError, match="no field 'last_factor'"):
        baselines.read(scale="last_factor")(state)                          # never a silent default


def test_arm_names_parse_once_into_a_spec():
    s = stress_cpu().stress
    assert parse_arm("replay_governor", s) == ArmSpec("replay_governor", "replay", "governor")
    assert parse_arm("effective_lr_governor", s) == ArmSpec("effective_lr_governor", "control", "governor")
    assert parse_arm("effective_lr", s) == ArmSpec("effective_lr", "control", s.effective_lr_of)
    assert parse_arm("prodigy", s).kind == "baseline" and parse_arm("governor", s).kind == "guard"
    results = {"kinds": {"governor": "guard", "replay_governor": "replay", "effective_lr_governor": "control"},
               "sources": {"replay_governor": "governor", "effective_lr_governor": "governor"}}
    specs = specs_from_results(results)
    assert copy_of(specs, "governor", "replay") == "replay_governor"
    assert copy_of(specs, "governor", "control") == "effective_lr_governor"
    assert copy_of(specs, "reflex", "replay") is None


def test_the_stress_arms_of_the_baselines():
    cfg = stress_cpu()
    arms = {name: build_arm(name, cfg) for name in ("mechanize", "prodigy", "dadapt_adamw", "schedule_free_adamw")}
    assert [a.lr_mode for a in arms.values()] == ["schedule", "shape", "shape", "constant"]
    assert arms["schedule_free_adamw"].eval_params is not None and arms["prodigy"].eval_params is None
    assert arms["prodigy"].label == "Prodigy (optax.contrib.prodigy)"


def test_adding_a_baseline_is_one_record(monkeypatch):
    def signum(opt, learning_rate, *, momentum: float = 0.9):
        return optax.chain(optax.trace(momentum), optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))

    record = baselines.Baseline("Signum", "sign of the momentum, in place of AdamW", "replaces",
                                signum, signum, probe=baselines.read(estimate=("trace", lambda t: jnp.float32(0))))
    monkeypatch.setitem(baselines.BASELINES, "signum", record)
    cfg = base_config()                                        # the knob is a config field now
    assert cfg.optimizer.signum.momentum == 0.9
    cfg.optimizer.update(policy="none", baseline="signum", lr=1e-2)
    cfg.optimizer.signum.momentum = 0.5
    validate(cfg)                                              # lbw_jax.train.run accepts it
    params, _ = _toy_run(optim.build_optimizer(cfg), steps=2)
    want, _ = _toy_run(optax.with_extra_args_support(optax.chain(
        optax.trace(0.5), optax.scale_by_sign(), optax.scale_by_learning_rate(1e-2))), steps=2)
    chex.assert_trees_all_equal(params, want)
    scfg = stress_cpu()
    scfg.stress.arms = ("adamw", "signum")
    arm = build_arm("signum", scfg)                            # and the suite runs it as an arm
    assert (arm.kind, arm.label, arm.lr_mode) == ("baseline", "Signum", "schedule")


@pytest.mark.parametrize("setting, message", [
    ({"baseline": "schedule_free_adamw", "schedule": "cosine"},
     "optimizer.baseline='schedule_free_adamw' brings its own schedule"),
    ({"baseline": "prodigy", "prodigy.learning_rate": -1.0}, r"optimizer.prodigy.learning_rate=-1.0 must be"),
    ({"baseline": "mechanize", "mechanize.bogus": 1}, "bogus"),
])
def test_bad_baseline_settings_are_named(setting, message):
    cfg = base_config()
    cfg.optimizer.policy = "none"
    with cfg.unlocked():
        for key, value in setting.items():
            group, _, field = key.rpartition(".")
            (cfg.optimizer[group] if group else cfg.optimizer)[field] = value
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


@pytest.mark.slow
def test_train_run_logs_what_a_baselines_record_reads(tmp_path):
    from harness_helpers import small_config, unguarded
    from lbw_jax.train.data.build import build_data
    from lbw_jax.train.trainer import Trainer

    cfg = unguarded(small_config(tmp_path))
    cfg.optimizer.update(baseline="prodigy", schedule="cosine", warmup_steps=2)
    trainer = Trainer.build(cfg, build_data(cfg))
    for step in range(3):   # each step's record is Prodigy's estim_lr after that step
        logged = float(trainer.run_step(step)["baseline_estimate"])
        assert logged == pytest.approx(float(trainer.opt_state.estim_lr), rel=1e-6)
    assert logged == pytest.approx(1e-6, rel=1e-3)     # its published start, hardly moved yet
