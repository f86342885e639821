"""Cost of the guard per full training step of the default model (lbw_jax/train/configs/tiny.py).

Builds the default run's trainer once per arm (plain AdamW; lbw_guard with reflex, with
and without the non-finite skip; lbw_guard with the governor: the default (v4), without its room
probe (v3.0) and without its brake too (v2.3), and with its room probe on every step and never),
then times the jitted training step (forward, backward, governed update) over the same
batches, arms interleaved in rounds; the figure is the median over rounds of the mean step
time. ``--guardable`` times the baselines that can run inside the guard instead, each bare and inside
the governor (``optimizer.policy=governor`` with ``optimizer.baseline=<baseline>``), against the
bare baseline.

    python bench/step_overhead.py
    python bench/step_overhead.py --guardable
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from lbw_jax.train.configs.tiny import get_config
from lbw_jax.train.baseline_registry import BASELINES
from lbw_jax.train.data.build import build_data
from lbw_jax.train.trainer import Trainer


def _arms(guardable: bool) -> dict:
    """name -> (guard, baseline, skip_non_finite, the arm it is compared with, governor knobs)."""
    if not guardable:
        return {"adamw": ("none", "none", True, "adamw", {}),
                "lbw_guard(adamw, reflex)": ("reflex", "none", True, "adamw", {}),
                "lbw_guard(adamw, reflex, skip_non_finite=False)": ("reflex", "none", False, "adamw", {}),
                # The default law (v4) at its own cadence over these steps; v3.0 without the
                # room probe; v2.3 without the brake's buffer and its two inner products a step.
                "lbw_guard(adamw, governor)": ("governor", "none", True, "adamw", {}),
                "lbw_guard(adamw, governor(use_room=False))": ("governor", "none", True, "adamw",
                                                               {"use_room": False}),
                "lbw_guard(adamw, governor(use_overshoot=False, use_room=False))": (
                    "governor", "none", True, "adamw", {"use_overshoot": False, "use_room": False}),
                # Mechanism 5 at its two extremes: a probe (one forward pass) on every step, and
                # none after the first; a run's cost lies between them by its probe rate
                # (telemetry ``probes`` over steps), which ``--room_rate`` reads off a run.
                "governor, a probe every step": (
                    "governor", "none", True, "adamw", {"probe_every": 1, "probe_held": 1}),
                "governor, no probe after the first": (
                    "governor", "none", True, "adamw", {"probe_every": 10 ** 9, "probe_burst": 0,
                                                        "probe_held": 10 ** 9})}
    out = {}
    for name, record in BASELINES.items():
        if record.guardable:
            out[name] = ("none", name, True, name, {})
            out[f"lbw_guard({name}, governor)"] = ("governor", name, True, name, {})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--guardable", action="store_true",
                        help="time the baselines bare and inside the governor instead")
    parser.add_argument("--room_rate", type=float, default=None,
                        help="the probes per step of a whole run (telemetry probes / steps), for the "
                             "room probe's cost over that run")
    args = parser.parse_args()

    arms = _arms(args.guardable)
    data, trainers = None, {}
    for name, (guard, baseline, skip, _, knobs) in arms.items():
        cfg = get_config()
        cfg.optimizer.update(policy=guard, baseline=baseline, skip_non_finite=skip)
        cfg.optimizer.governor.update(knobs)
        if baseline != "none" and BASELINES[baseline].lr == "constant":
            cfg.optimizer.schedule = "constant"   # Schedule-Free brings its own
        if data is None:
            data = build_data(cfg)
        trainer = Trainer.build(cfg, data)
        for i in range(3):  # compile and warm up
            trainer.run_step(i)
        jax.block_until_ready(trainer.params)
        trainers[name] = trainer

    per_round = {name: [] for name in arms}
    for r in range(args.rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for i in range(args.steps):
                trainer.run_step(r * args.steps + i)
            jax.block_until_ready(trainer.params)
            per_round[name].append((time.perf_counter() - start) / args.steps)

    n_params = sum(x.size for x in jax.tree.leaves(next(iter(trainers.values())).params))
    print(f"default model ({n_params / 1e6:.2f}M parameters), batch {get_config().train.batch_size} x "
          f"{get_config().data.seq_len} tokens, {args.rounds} rounds x {args.steps} steps per arm")
    print("| training step | median step (ms) | vs |")
    print("|---|---|---|")
    for name, times in per_round.items():
        t, versus = statistics.median(times), arms[name][3]
        print(f"| {name} | {1e3 * t:.1f} | {t / statistics.median(per_round[versus]):.3f}x {versus} |")
    if not args.guardable and args.room_rate is not None:
        # Over a whole run: the probe's forward pass paid on a fraction room_rate of the steps.
        every, never = (statistics.median(per_round[f"governor, {k}"])
                        for k in ("a probe every step", "no probe after the first"))
        run = never + args.room_rate * (every - never)
        print(f"| governor at a probe rate of {args.room_rate:.3f} | {1e3 * run:.1f} | "
              f"{run / statistics.median(per_round['adamw']):.3f}x adamw |")


if __name__ == "__main__":
    main()
