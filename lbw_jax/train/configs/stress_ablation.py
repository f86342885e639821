"""The governor's ablation: the stress suite of lbw_jax/train/configs/stress_cpu.py with the
governor and, as arms of their own, the governor with one mechanism removed. Its
results.json is the optional second argument of ``lbw_jax.train.stress.goals``, which prints the
ablation table beside a policy's goals.

    python -m lbw_jax.train.stress --config stress_ablation
    python -m lbw_jax.train.stress.goals RESULTS.json runs/stress_ablation/results.json
"""

import ml_collections

from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu

# Each mechanism of lbw_jax.governor, and the knob that removes it.
REMOVED = {
    "governor_no_skip": {"use_skip": False},
    "governor_no_trust": {"use_trust": False},
    "governor_no_harm": {"use_harm": False},
    # Not a mechanism of its own: the skip's variance widening (v2.1), whose removal
    # gives v2's skip back.
    "governor_no_widen": {"skip_widen": 1.0},
}


def governor_variants(s, variants: dict) -> None:
    """Runs AdamW, the governor and each ``variants`` entry (name -> changed knobs) as an
    arm of its own, clean and under every fault."""
    s.arms = ("adamw", "governor", *variants)
    s.fault_arms = s.arms
    for name, knobs in variants.items():
        s.variants[name] = ml_collections.ConfigDict({"policy": "governor", "kwargs": knobs})
    s.sequential_cells = 0


def get_config():
    c = stress_cpu()
    c.output_dir = "runs/stress_ablation"
    governor_variants(c.stress, REMOVED)
    return c
