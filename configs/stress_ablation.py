"""The governor's ablation: the stress suite of configs/stress_cpu.py with the
governor and, as arms of their own, the governor with one mechanism removed.

    python -m train.stress --config configs/stress_ablation.py
"""

import ml_collections

from configs.stress_cpu import get_config as stress_cpu

# Each mechanism of lbw_jax.governor, and the knob that removes it.
REMOVED = {
    "governor_no_skip": {"use_skip": False},
    "governor_no_trust": {"use_trust": False},
    "governor_no_harm": {"use_harm": False},
}


def get_config():
    c = stress_cpu()
    c.output_dir = "runs/stress_ablation"
    s = c.stress
    s.arms = ("adamw", "governor", *REMOVED)
    s.fault_arms = s.arms
    for name, knobs in REMOVED.items():
        s.variants[name] = ml_collections.ConfigDict({"policy": "governor", "kwargs": knobs})
    s.sequential_cells = 0
    return c
