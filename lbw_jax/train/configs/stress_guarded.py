"""The guard over the LR-free and LR-robust baselines, next to each bare baseline, on the suite's
two settings: ``:cpu``, the CPU default (lbw_jax/train/configs/stress_cpu.py), and ``:lora``, the LoRA
shift (lbw_jax/train/configs/stress_lora.py). Same model, data, schedule, LR grid, seeds and faults as
those; the arms are the question's: AdamW, the governor over AdamW, and D-Adaptation and
Prodigy (started at 1e-3), Schedule-Free AdamW and MoMo-Adam (with its online lower bound
of the loss), each bare and inside the governor (``governor@<baseline>``), every arm faulted.

    python -m lbw_jax.train.stress --config stress_guarded:cpu --config.output_dir=docs/stress/guarded/cpu
    python -m lbw_jax.train.stress --config stress_guarded:lora --config.output_dir=docs/stress/guarded/lora
"""

import ml_collections

from lbw_jax.train.configs.stress_cpu import CALIBRATED
from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu
from lbw_jax.train.configs.stress_lora import get_config as stress_lora

SETTINGS = {"cpu": stress_cpu, "lora": stress_lora}
# MoMo's Polyak step (f - f*) / ||d||² uses a lower bound f* of the loss. Its default, 0,
# is far below what a language model's loss can reach (about 4.8 nats at the start here),
# so the Polyak step is overestimated and the cap loosened; MoMo's own remedy is the
# online estimate of the bound (adapt_lower_bound), which the suite runs.
VARIANTS = {**CALIBRATED, "momo_adam_lb": ("momo_adam", {"adapt_lower_bound": True})}
LR_ROBUST = ("dadapt_adamw_lr0", "prodigy_lr0", "schedule_free_adamw", "momo_adam_lb")


def get_config(setting: str = "cpu"):
    if setting not in SETTINGS:
        raise ValueError(f"lbw_jax/train/configs/stress_guarded.py:{setting}: choose one of {sorted(SETTINGS)}")
    c = SETTINGS[setting]()
    c.output_dir = f"runs/stress_guarded_{setting}"
    s = c.stress
    for name, (baseline, knobs) in VARIANTS.items():
        s.variants[name] = ml_collections.ConfigDict({"policy": baseline, "kwargs": knobs})
    s.arms = ("adamw", "governor", *LR_ROBUST, *(f"governor@{r}" for r in LR_ROBUST))
    s.fault_arms = s.arms
    return c
