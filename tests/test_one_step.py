"""lbw_jax.train.run and the stress suite train with one step and one optimizer builder: the
suite's cell of an arm and the Trainer end at the same parameters from the same batches,
for AdamW and for the baselines that take their learning rate in each of the other ways
(Mechanic wraps AdamW; Prodigy is LR-free; Schedule-Free warms up by itself and is
evaluated at its averaged point)."""

import jax
import numpy as np
import pytest

from harness_helpers import small_config
from lbw_jax.train.optim import build_optimizer
from lbw_jax.train.stress.engine.arms import build_arm
from lbw_jax.train.stress.engine.sweep import ArmProgram, Cell, run_cells
from lbw_jax.train.data.build import build_data
from lbw_jax.train.trainer import Trainer


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["adamw", "lora", "mechanize", "prodigy", "schedule_free_adamw",
                                 "governor@prodigy", "governor@schedule_free_adamw"])
def test_the_suites_cell_is_the_trainers_step(tmp_path, arm):
    cfg = small_config(tmp_path)
    if arm == "lora":   # a LoRA cell: the adapters train, the base is frozen and shared
        arm = "adamw"
        cfg.lora.update(enabled=True, rank=4, dropout=0.0)   # the suite's cells take no dropout key
    guard, baseline = arm.split("@") if "@" in arm else ("none", arm)   # a guard over a baseline
    schedule = "constant" if baseline == "schedule_free_adamw" else "cosine"   # it brings its own
    cfg.optimizer.update(policy=guard, baseline="none" if baseline == "adamw" else baseline, schedule=schedule,
                         warmup_steps=2, lr=3e-3)
    if arm == "mechanize":
        cfg.optimizer.mechanize.s_init = 1.0   # so that 6 steps move the parameters
    if baseline == "prodigy":
        cfg.optimizer.prodigy.estim_lr0 = 3e-3
    cfg.train.steps = 6
    data = build_data(cfg)
    trainer = Trainer.build(cfg, data)
    start = jax.tree.map(np.asarray, trainer.params)
    losses = [float(trainer.run_step(step)["loss"]) for step in range(cfg.train.steps)]

    from lbw_jax.train.configs.stress_cpu import get_config
    scfg = get_config()
    scfg.optimizer.update(cfg.optimizer.to_dict())
    scfg.stress.update(dict(steps=cfg.train.steps, eval_every=cfg.train.steps, scenarios=()))
    from lbw_jax.train.optim import schedule_shape
    shape = schedule_shape(scfg.optimizer.schedule, cfg.train.steps, cfg.optimizer.warmup_steps)

    class TrainerOrder:   # the trainer's own batches, in its order
        def batch(self, index):
            return data.train.batch(index)

    built = build_arm(arm, scfg)
    assert built.lr_free == (baseline == "prodigy")
    # An LR-free cell runs at peak 1: its optimizer gets the schedule's shape, as in lbw_jax.train.run.
    cell = Cell(arm, cfg.optimizer.lr, 0, run_lr=1.0 if built.lr_free else None)
    program = ArmProgram(built, trainer.graphdef, shape)
    val = data.val_windows[None, :8]
    runs = run_cells(program, [cell], start, trainer.frozen,
                     orders={0: TrainerOrder()}, val=val, steps=cfg.train.steps,
                     eval_every=cfg.train.steps, stress=scfg.stress, vocab_size=data.tokenizer.vocab_size,
                     keep_params=True)
    # Equal up to float rounding: the trainer reduces over 8 sharded devices, the cell on one,
    # and Adam's division by sqrt(v) magnifies the last bits of near-zero gradients; Mechanic
    # magnifies them again, since its scale s follows a sum of g·Δ over every parameter (it
    # drifts by ~1e-5 here, with jax 0.10.2). A step of the schedule off, or a different
    # optimizer, moves parameters by ~lr = 3e-3, so a hundredth of lr still tells them apart.
    np.testing.assert_allclose(runs.loss[:, 0], losses, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(runs.final_params), jax.tree.leaves(trainer.params)):
        np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=cfg.optimizer.lr / 100)
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(jax.tree.leaves(trainer.params), jax.tree.leaves(start)))
    assert moved > 1e-3   # the runs trained; equal ends are not equal starts
    if cfg.lora.enabled:  # what trained is the adapters only
        from flax import nnx
        assert all(isinstance(v, nnx.LoRAParam) for v in jax.tree.leaves(
            trainer.params, is_leaf=lambda x: isinstance(x, nnx.Variable)))
    if baseline == "schedule_free_adamw":
        # Both evaluate the averaged point, not the point they train at.
        assert trainer._eval_params is not None and built.eval_params is not None
        averaged = trainer._eval_params(trainer.opt_state, trainer.params)
        assert max(float(np.max(np.abs(a - b))) for a, b in
                   zip(jax.tree.leaves(averaged), jax.tree.leaves(trainer.params))) > 1e-4


def test_build_optimizer_checks_its_settings(tmp_path):
    cfg = small_config(tmp_path)
    for lr in (float("nan"), float("inf"), 0.0, -1e-3):
        cfg.optimizer.lr = lr
        with pytest.raises(ValueError, match="optimizer.lr=.* must be a finite positive number"):
            build_optimizer(cfg)
    cfg.optimizer.lr = 1e-3
    cfg.optimizer.baseline = "update_clip"
    with pytest.raises(ValueError, match="choose one"):
        build_optimizer(cfg)                      # a guard (reflex) and a baseline
    cfg.optimizer.policy = "none"
    cfg.optimizer.baseline = "lion"
    with pytest.raises(ValueError, match="optimizer.baseline='lion'"):
        build_optimizer(cfg)


@pytest.mark.parametrize("baseline", ["clip", "zclip", "spike_skip", "update_clip", "plateau"])
def test_train_run_builds_every_baseline(tmp_path, baseline):
    cfg = small_config(tmp_path)
    cfg.optimizer.update(policy="none", baseline=baseline)
    tx = build_optimizer(cfg)
    params = {"w": np.ones(3, np.float32)}
    updates, _ = tx.update({"w": np.full(3, 0.5, np.float32)}, tx.init(params), params, value=1.0)
    assert np.all(np.isfinite(updates["w"])) and np.any(updates["w"] != 0)
