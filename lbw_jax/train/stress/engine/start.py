"""The suite's shared start: the pretraining every cell starts from, and the fixed
validation batches every cell is evaluated on. ``suite`` and ``shift_base`` (the base of
a domain shift) both use them; neither imports the other for them."""

from __future__ import annotations

import jax

from lbw_jax.train.data import dataset as data_lib
from lbw_jax.train.optim import schedule_shape
from lbw_jax.train.stress.engine.arms import build_arm
from lbw_jax.train.stress.engine.sweep import ArmProgram, Cell, run_cells


def val_batches(windows, eval_batches, batch_size):
    """The first ``eval_batches`` batches of ``batch_size`` validation windows (fewer if
    the split is shorter), as one array [batches, batch_size, window]."""
    n = min(len(windows) // batch_size, eval_batches)
    if n < 1:
        raise ValueError(f"the validation split has {len(windows)} windows, fewer than one batch "
                         f"of {batch_size}: raise data.val_fraction or lower train.batch_size")
    return windows[:n * batch_size].reshape(n, batch_size, -1)


def pretrain_start(cfg, graphdef, params, windows, common, log) -> tuple[object, dict]:
    """The shared start: ``params`` trained ``stress.pretrain_steps`` steps with AdamW at
    ``stress.pretrain_lr`` on a cosine schedule, so that a too-large step has something to
    destroy (the paper fine-tunes a pretrained model). Its data order (``cfg.seed``)
    differs from every cell's (``cfg.seed + 1 + seed``). Returns the parameters and what
    the report says of them."""
    s = cfg.stress
    shape = schedule_shape("cosine", s.pretrain_steps, s.pretrain_warmup)
    pre_orders = {0: data_lib.BatchOrder(windows, cfg.train.batch_size, cfg.seed)}
    runs = run_cells(ArmProgram(build_arm("adamw", cfg), graphdef, shape, cfg.model.loss_chunk_tokens),
                     [Cell("pretrain", s.pretrain_lr, 0)], params, orders=pre_orders, steps=s.pretrain_steps,
                     eval_every=s.pretrain_steps, keep_params=True, **common)
    info = {"steps": s.pretrain_steps, "lr": s.pretrain_lr, "val_ppl": float(runs.val_ppl[-1, 0]),
            "seconds": runs.compile_s + runs.run_s}
    log(f"stress: pretrained {s.pretrain_steps} steps at lr {s.pretrain_lr}: "
        f"validation perplexity {info['val_ppl']:.2f}")
    return jax.tree.map(lambda x: x[0], runs.final_params), info
