"""The governor with its overshoot brake (``use_overshoot``, mechanism 4) beside plain AdamW,
clean and under every fault, on one suite setting:

    python -m train.stress --config configs/stress_overshoot.py:cpu        # the CPU default
    python -m train.stress --config configs/stress_overshoot.py:lora       # the LoRA domain shift
    python -m train.stress --config configs/stress_overshoot.py:llama      # the Llama-shape check (2 seeds)
    python -m train.stress --config configs/stress_overshoot.py:cpu,recovery
    python -m train.stress --config configs/stress_overshoot.py:lora,parts
    python -m train.stress.goals runs/stress_overshoot_cpu/results.json --policy governor_overshoot

The plain settings run the default governor beside the one with the brake: the default is that
arm with the signal removed, its ablation. ``,recovery`` runs instead a faster recovery (x1.05 a
step) with and without the brake's gate on it: the gate is what should let a recovery that fast
stop short of the ceiling. ``,parts`` runs the brake alone and the gate alone.
"""

from configs.stress_ablation import governor_variants
from configs.stress_cpu import get_config as stress_cpu
from configs.stress_llama import get_config as stress_llama
from configs.stress_lora import get_config as stress_lora

SETTINGS = {"cpu": stress_cpu, "lora": stress_lora, "llama": stress_llama}
VARIANTS = {
    "": {"governor_overshoot": {"use_overshoot": True}},
    "recovery": {"governor_fast_recovery": {"recover": 1.05},
                 "governor_overshoot_fast_recovery": {"use_overshoot": True, "recover": 1.05}},
    # Each half of mechanism 4 alone: a level the smoothed overshoot never reaches turns the
    # other half off.
    "parts": {"governor_overshoot_brake_only": {"use_overshoot": True, "over_recover": 1e9},
              "governor_overshoot_gate_only": {"use_overshoot": True, "over_cut": 1e9}},
}


def get_config(arg: str = "cpu"):
    setting, _, which = arg.partition(",")
    if setting not in SETTINGS or which not in VARIANTS:
        raise ValueError(f"configs/stress_overshoot.py:{arg}: expected SETTING or SETTING,WHICH "
                         f"with SETTING one of {sorted(SETTINGS)} and WHICH one of {sorted(VARIANTS)[1:]}")
    c = SETTINGS[setting]()
    c.output_dir = f"runs/stress_overshoot_{setting}" + (f"_{which}" if which else "")
    governor_variants(c.stress, VARIANTS[which])
    if which:   # the default governor ran in the plain setting's run
        c.stress.arms = tuple(a for a in c.stress.arms if a != "governor")
        c.stress.fault_arms = c.stress.arms
    return c
