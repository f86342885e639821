"""Cost of the governed update against a plain optax.adamw update.

Times one jitted, buffer-donating step (optimizer update + apply_updates) on a
~16.8M-parameter tree shaped like a small transformer, for plain adamw and for
adamw inside lbw_guard with each reference law. Arms are interleaved in rounds
so that machine drift hits them alike; the figure is the median over rounds of
the mean step time, and the overhead is that median over adamw's. The steps
include the telemetry steps (every 10th) in their natural proportion.
optax.apply_if_finite(adamw) is there for reference: it is optax's own way to
skip non-finite steps, the same mechanism the guard uses by default.

    python bench/guard_overhead.py            # the figure recorded in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lbw_jax


def transformer_like_tree(width: int, layers: int, vocab: int) -> dict:
    rng = np.random.default_rng(0)
    tree = {"embed": rng.standard_normal((vocab, width))}
    for i in range(layers):
        tree[f"layer{i}"] = {
            "attn_qkvo": rng.standard_normal((width, 4 * width)),
            "mlp_in": rng.standard_normal((width, 4 * width)),
            "mlp_out": rng.standard_normal((4 * width, width)),
            "norm": np.ones((width,)),
        }
    return jax.tree.map(lambda x: jnp.asarray(0.02 * x, jnp.float32), tree)


def make_step(opt):
    opt = optax.with_extra_args_support(opt)

    def step(params, state, grads):
        # Every arm gets the loss, as a training step passes it; only some read it.
        updates, state = opt.update(grads, state, params, value=jnp.float32(2.0))
        return optax.apply_updates(params, updates), state
    return jax.jit(step, donate_argnums=(0, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=50, help="steps per arm per round (multiple of 10)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    params = transformer_like_tree(args.width, args.layers, args.vocab)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    grads = jax.tree.map(lambda x: 0.01 * jnp.sin(x * 1e3), params)
    adamw = lambda: optax.adamw(1e-3)
    arms = {
        "adamw": adamw(),
        "optax.apply_if_finite(adamw)": optax.apply_if_finite(adamw(), max_consecutive_errors=10**6),
        "lbw_guard(adamw, reflex)": lbw_jax.lbw_guard(adamw(), policy=lbw_jax.reflex()),
        "lbw_guard(adamw, reflex_pro)": lbw_jax.lbw_guard(adamw(), policy=lbw_jax.reflex_pro()),
        "lbw_guard(adamw, reflex, skip_non_finite=False)":
            lbw_jax.lbw_guard(adamw(), policy=lbw_jax.reflex(), skip_non_finite=False),
        "lbw_guard(adamw, reflex_pro, skip_non_finite=False)":
            lbw_jax.lbw_guard(adamw(), policy=lbw_jax.reflex_pro(), skip_non_finite=False),
        "lbw_guard(adamw, governor)": lbw_jax.lbw_guard(adamw(), policy=lbw_jax.governor()),
    }
    runs = {}
    for name, opt in arms.items():
        p = jax.tree.map(jnp.copy, params)
        runs[name] = [make_step(opt), p, opt.init(p)]
        for _ in range(12):  # compile and warm up, through at least one telemetry step
            runs[name][1], runs[name][2] = runs[name][0](runs[name][1], runs[name][2], grads)
        jax.block_until_ready(runs[name][1])

    per_round = {name: [] for name in arms}
    faults = {name: 0 for name in arms}  # minor page faults: fresh buffers the step touches
    for _ in range(args.rounds):
        for name, run in runs.items():
            step, p, s = run
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            for _ in range(args.steps):
                p, s = step(p, s, grads)
            jax.block_until_ready((p, s))
            per_round[name].append((time.perf_counter() - start) / args.steps)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
            run[1], run[2] = p, s

    base = statistics.median(per_round["adamw"])
    results = {
        "params": n_params, "steps_per_round": args.steps, "rounds": args.rounds,
        "backend": jax.default_backend(), "devices": jax.device_count(),
        "cpu": platform.processor() or platform.machine(), "jax": jax.__version__, "optax": optax.__version__,
        "arms": {name: {"median_step_ms": 1e3 * statistics.median(t),
                        "overhead": statistics.median(t) / base,
                        "page_faults_per_step": faults[name] / (args.rounds * args.steps)}
                 for name, t in per_round.items()},
    }
    print(f"{n_params / 1e6:.1f}M parameters, {jax.default_backend()} x{jax.device_count()}, "
          f"{args.rounds} rounds x {args.steps} steps per arm")
    print("| update | median step (ms) | vs adamw | minor page faults / step |")
    print("|---|---|---|---|")
    for name, r in results["arms"].items():
        print(f"| {name} | {r['median_step_ms']:.2f} | {r['overhead']:.3f}x "
              f"| {r['page_faults_per_step']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
