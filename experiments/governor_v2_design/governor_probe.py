"""Design probe for control laws: a few arms of the stress suite's CPU default at chosen
LRs and seeds, from one cached pretrained start, with per-step traces.

    python experiments/governor_v2_design/governor_probe.py --arms adamw,governor --lrs 3e-3,1e-1 --seeds 2 \
        [--variant NAME=POLICY:knob=value,knob=value] [--scenarios lr_spike] [--trace]

Prints each arm's mean final validation perplexity per LR and its mean applied multiplier;
``--trace`` also prints the first seed's loss and multiplier every few steps. The pretrained
start is cached under ``--cache`` (keyed by the config), so each probe costs only its cells.
The numbers match the suite's for the same cells (same ArmProgram, batches and start).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import pathlib
import pickle
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from flax import nnx  # noqa: E402

from lbw_jax.train.configs.stress_cpu import get_config  # noqa: E402
from lbw_jax.train.data import dataset as data_lib  # noqa: E402
from lbw_jax.train.models import make_mesh  # noqa: E402
from lbw_jax.train.stress.engine.arms import build_arm  # noqa: E402
from lbw_jax.train.optim import schedule_shape  # noqa: E402
from lbw_jax.train.stress.engine.suite import val_batches  # noqa: E402
from lbw_jax.train.stress.engine.sweep import ArmProgram, Cell, run_cells, run_chunked  # noqa: E402
from lbw_jax.train.data.build import build_data  # noqa: E402
from lbw_jax.train.trainer import build_model  # noqa: E402


def _variant(text):
    name, rest = text.split("=", 1)
    policy, _, knobs = rest.partition(":")
    kwargs = {}
    for item in filter(None, knobs.split(",")):
        key, value = item.split("=", 1)
        kwargs[key] = ast.literal_eval(value)
    return name, policy, kwargs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", default="adamw,governor")
    p.add_argument("--lrs", default="3e-3,1e-2,3e-2,1e-1")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--variant", action="append", default=[], help="NAME=POLICY:knob=value,...")
    p.add_argument("--scenarios", default="", help="faults at stress.scenario_lr, seed 0")
    p.add_argument("--trace", action="store_true")
    p.add_argument("--cache", default="/tmp/lbw_probe_cache")
    args = p.parse_args(argv)

    cfg = get_config()
    s = cfg.stress
    for name, policy, kwargs in map(_variant, args.variant):
        s.variants[name] = {"policy": policy, "kwargs": kwargs}
    data = build_data(cfg)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    model = build_model(cfg, data.tokenizer.vocab_size, mesh)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    windows, batch = data.train.windows, cfg.train.batch_size
    val = val_batches(data.val_windows, s.eval_batches, batch)
    orders = {seed: data_lib.BatchOrder(windows, batch, cfg.seed + 1 + seed) for seed in range(args.seeds)}
    common = dict(frozen=frozen, val=val, stress=s, vocab_size=data.tokenizer.vocab_size)

    key = hashlib.sha1(repr((cfg.model.to_dict(), cfg.data.to_dict(), s.pretrain_steps,
                             s.pretrain_lr, s.pretrain_warmup, cfg.seed)).encode()).hexdigest()[:12]
    cache = pathlib.Path(args.cache) / f"{key}.pkl"
    if cache.exists():
        params = pickle.loads(cache.read_bytes())
    else:
        # The suite's pretraining, exactly (same program, data order and schedule).
        shape = schedule_shape("cosine", s.pretrain_steps, s.pretrain_warmup)
        runs = run_cells(ArmProgram(build_arm("adamw", cfg), graphdef, shape, cfg.model.loss_chunk_tokens),
                         [Cell("pretrain", s.pretrain_lr, 0)], params,
                         orders={0: data_lib.BatchOrder(windows, batch, cfg.seed)},
                         steps=s.pretrain_steps, eval_every=s.pretrain_steps, keep_params=True, **common)
        params = jax.device_get(jax.tree.map(lambda x: x[0], runs.final_params))
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(params))

    shape = schedule_shape(cfg.optimizer.schedule, s.steps, cfg.optimizer.warmup_steps)
    lrs = [float(x) for x in args.lrs.split(",") if x]
    scenarios = [x for x in args.scenarios.split(",") if x]
    for name in args.arms.split(","):
        arm = build_arm(name, cfg)
        cells = [Cell(name, lr, seed) for lr in lrs for seed in range(args.seeds)]
        cells += [Cell(name, s.scenario_lr, 0, sc) for sc in scenarios]
        runs = run_chunked(ArmProgram(arm, graphdef, shape, cfg.model.loss_chunk_tokens), cells,
                           s.max_cells, start_params=params, orders=orders, steps=s.steps,
                           eval_every=s.eval_every, **common)
        row = []
        for lr in lrs:
            idx = [i for i, c in enumerate(runs.cells) if c.lr == lr and c.scenario == "none"]
            ppl = runs.val_ppl[-1, idx]
            row.append(f"{lr:g}: {np.mean(ppl):7.2f} (x{runs.scale[:, idx].mean():.2f})")
        for sc in scenarios:
            i = next(i for i, c in enumerate(runs.cells) if c.scenario == sc)
            row.append(f"{sc}: {runs.val_ppl[-1, i]:.2f}")
        print(f"{name:24s} " + "  ".join(row), flush=True)
        if args.trace:
            for lr in lrs:
                i = next(i for i, c in enumerate(runs.cells) if c.lr == lr)
                pts = list(range(0, 30)) + list(range(30, s.steps, 10))
                print(f"  trace {lr:g} loss  " + " ".join(f"{runs.loss[t, i]:.2f}" for t in pts))
                print(f"  trace {lr:g} scale " + " ".join(f"{runs.scale[t, i]:.2f}" for t in pts))
                print(f"  trace {lr:g} gnorm " + " ".join(f"{runs.grad_norm[t, i]:.2f}" for t in pts))
                print(f"  val {lr:g} " + " ".join(f"{v:.1f}" for v in runs.val_ppl[:, i]))


if __name__ == "__main__":
    main()
