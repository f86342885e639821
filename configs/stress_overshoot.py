"""The governor with its overshoot brake (``use_overshoot``, mechanism 4) beside the governor
as it is by default, and plain AdamW, clean and under every fault, on one suite setting:

    python -m train.stress --config configs/stress_overshoot.py:cpu     # the CPU default
    python -m train.stress --config configs/stress_overshoot.py:lora    # the LoRA domain shift
    python -m train.stress.goals runs/stress_overshoot_cpu/results.json --policy governor_overshoot

The default governor is this arm with the brake removed: the ablation of the signal.
"""

from configs.stress_ablation import governor_variants
from configs.stress_cpu import get_config as stress_cpu
from configs.stress_lora import get_config as stress_lora

SETTINGS = {"cpu": stress_cpu, "lora": stress_lora}
VARIANTS = {"governor_overshoot": {"use_overshoot": True}}


def get_config(setting: str = "cpu"):
    if setting not in SETTINGS:
        raise ValueError(f"configs/stress_overshoot.py:{setting}: the setting must be one of {sorted(SETTINGS)}")
    c = SETTINGS[setting]()
    c.output_dir = f"runs/stress_overshoot_{setting}"
    governor_variants(c.stress, VARIANTS)
    return c
