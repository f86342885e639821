"""The CPU stress suite's whole grid: the default setting of stress_cpu.py with every
arm (all the baselines: clipping, ZClip, spike skip, update clipping,
reduce_on_plateau), 3 seeds, and the controls and replays at every LR. Several
hours on 2 CPU cores.

    python -m lbw_jax.train.stress --config stress_cpu_full
"""

from lbw_jax.train.configs.stress_base import stress_config
from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu


def get_config():
    c = stress_cpu()
    full = stress_config().stress   # the base's full lists of arms and fault arms
    c.output_dir = "runs/stress_cpu_full"
    c.stress.arms = full.arms
    c.stress.fault_arms = full.fault_arms
    c.stress.seeds = 3
    c.stress.controls_at = "all"
    return c
