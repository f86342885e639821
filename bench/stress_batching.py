"""Cost of a stress-suite training step per cell, by how many cells share a program.

Builds the stress config's model and one arm, then times the vmapped train step
(``lbw_jax.train.stress.engine.sweep.ArmProgram``) with 1, 3, 9 and 27 cells: the figure is the
median over rounds of the wall time per cell-step. It decides ``stress.max_cells``.

    python bench/stress_batching.py [--arm adamw] [--cells 1,3,9,27]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lbw_jax.train.configs.stress_cpu import get_config
from lbw_jax.train.models import make_mesh
from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.stress.engine.arms import build_arm
from lbw_jax.train.stress.engine.sweep import ArmProgram, stack
from lbw_jax.train.optim import schedule_shape
from lbw_jax.train.data.build import build_data
from lbw_jax.train.trainer import build_model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", default="adamw")
    parser.add_argument("--cells", default="1,3,9,27")
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    cfg = get_config()
    data = build_data(cfg)
    model = build_model(cfg, data.tokenizer.vocab_size, make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    program = ArmProgram(build_arm(args.arm, cfg), graphdef, schedule_shape(cfg.optimizer.schedule, cfg.stress.steps, 30))
    batch = data.train.batch(0)
    print(f"stress_cpu model, arm {args.arm}, batch {batch.shape[0]} x {batch.shape[1] - 1} tokens a cell, "
          f"{args.rounds} rounds x {args.steps} steps")
    print("| cells per program | ms per step | ms per cell-step | vs 1 cell |")
    print("|---|---|---|---|")
    base = None
    for n in [int(x) for x in args.cells.split(",")]:
        lrs = jnp.full([n], 1e-3, jnp.float32)
        faults = jax.tree.map(jnp.asarray, faults_lib.faults_for(["none"] * n, cfg.stress))
        p = stack(params, n)
        state = program.init(p, lrs)
        tokens = jnp.asarray(np.stack([data.train.batch(i) for i in range(n)]))
        ones = jnp.ones((n, cfg.stress.steps), jnp.float32)   # no replayed multiplier
        step = program.step.lower(p, state, frozen, tokens, lrs, jnp.int32(0), faults, ones).compile()
        for i in range(3):
            p, state, _ = step(p, state, frozen, tokens, lrs, jnp.int32(i), faults, ones)
        times = []
        for r in range(args.rounds):
            jax.block_until_ready(p)
            t0 = time.perf_counter()
            for i in range(args.steps):
                p, state, m = step(p, state, frozen, tokens, lrs, jnp.int32(50 + i), faults, ones)
            jax.block_until_ready((p, m))
            times.append((time.perf_counter() - t0) / args.steps)
        t = statistics.median(times)
        base = base or t
        print(f"| {n} | {1e3 * t:.1f} | {1e3 * t / n:.1f} | {(t / n) / base:.2f}x |")


if __name__ == "__main__":
    main()
