"""Cost of the guard per full training step of the default model (configs/tiny.py).

Builds the default run's trainer four times (plain AdamW; lbw_guard with reflex, with
and without the non-finite skip; lbw_guard with the governor), then times the jitted training step (forward,
backward, governed update) over the same batches, arms interleaved in rounds; the
figure is the median over rounds of the mean step time.

    python bench/step_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from configs.tiny import get_config
from train.trainer import Trainer, build_data


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    arms = {"adamw": dict(guard="none"), "lbw_guard(adamw, reflex)": dict(guard="reflex"),
            "lbw_guard(adamw, reflex, skip_non_finite=False)": dict(guard="reflex", skip=False),
            "lbw_guard(adamw, governor)": dict(guard="governor")}
    data, trainers = None, {}
    for name, arm in arms.items():
        cfg = get_config()
        cfg.optimizer.guard = arm["guard"]
        cfg.optimizer.skip_non_finite = arm.get("skip", True)
        if data is None:
            data = build_data(cfg)
        trainer = Trainer.build(cfg, data)
        for i in range(3):  # compile and warm up
            trainer.train_step(i)
        jax.block_until_ready(trainer.params)
        trainers[name] = trainer

    per_round = {name: [] for name in arms}
    for r in range(args.rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for i in range(args.steps):
                trainer.train_step(r * args.steps + i)
            jax.block_until_ready(trainer.params)
            per_round[name].append((time.perf_counter() - start) / args.steps)

    base = statistics.median(per_round["adamw"])
    n_params = sum(x.size for x in jax.tree.leaves(trainers["adamw"].params))
    print(f"default model ({n_params / 1e6:.2f}M parameters), batch {get_config().train.batch_size} x "
          f"{get_config().data.seq_len} tokens, {args.rounds} rounds x {args.steps} steps per arm")
    print("| training step | median step (ms) | vs adamw |")
    print("|---|---|---|")
    for name, times in per_round.items():
        t = statistics.median(times)
        print(f"| {name} | {1e3 * t:.1f} | {t / base:.3f}x |")


if __name__ == "__main__":
    main()
