"""The governor's measurement (v2 for issue 11, v2.1 for issue 23): the stress suite's CPU default
(lbw_jax/train/configs/stress_cpu.py) with 3 seeds, the arms the goals rank the governor against
(AdamW, clipping, update clipping, reflex, reflex_pro), the governor's own replay and
effective-LR control at the stressed LRs, and its ablation: the governor with each
mechanism removed in turn, as arms of their own (an ablation is not a baseline).

    python -m lbw_jax.train.stress --config experiments/governor_ablation/stress_governor.py
    python -m lbw_jax.train.stress.goals experiments/governor_ablation/cpu/results.json experiments/governor_ablation/cpu/results.json
"""

import ml_collections

from lbw_jax.train.configs.stress_ablation import REMOVED
from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu


def get_config():
    c = stress_cpu()
    c.output_dir = "experiments/governor_ablation/cpu"
    s = c.stress
    s.seeds = 3
    s.arms = ("adamw", "clip", "update_clip", "reflex", "reflex_pro", "governor",
              "replay_governor", "effective_lr_governor", *REMOVED)
    s.fault_arms = ("adamw", "clip", "update_clip", "reflex", "reflex_pro", "governor", *REMOVED)
    for name, knobs in REMOVED.items():
        s.variants[name] = ml_collections.ConfigDict({"policy": "governor", "kwargs": knobs})
    # The v2.1 measurement's own evaluation cadence and arms (before suite v3's baselines).
    s.eval_every = 25
    s.eval_batches = 16
    s.sequential_cells = 0
    return c
