"""The governor with its overshoot brake (``use_overshoot``, mechanism 4) beside plain AdamW,
clean and under every fault, on one suite setting:

    python -m lbw_jax.train.stress --config stress_overshoot:cpu        # the CPU default
    python -m lbw_jax.train.stress --config stress_overshoot:lora       # the LoRA domain shift
    python -m lbw_jax.train.stress --config stress_overshoot:llama      # the Llama-shape check (3 seeds)
    python -m lbw_jax.train.stress --config stress_overshoot:small      # the LoRA size axis (3 seeds)
    python -m lbw_jax.train.stress --config stress_overshoot:large
    python -m lbw_jax.train.stress --config stress_overshoot:heldout    # a held-out setting (2 seeds, as its report)
    python -m lbw_jax.train.stress --config stress_overshoot:lora,controls
    python -m lbw_jax.train.stress --config stress_overshoot:lora,ablation
    python -m lbw_jax.train.stress --config stress_overshoot:lora,guarded
    python -m lbw_jax.train.stress --config stress_overshoot:cpu,recovery
    python -m lbw_jax.train.stress --config stress_overshoot:lora,parts
    python -m lbw_jax.train.stress.goals runs/stress_overshoot_cpu/results.json --policy governor_overshoot

The plain settings run the governor without the brake (v2.3, the default before v3.0) beside the
one with it (the default since v3.0): the first is the second with the signal removed, its
ablation. ``,recovery`` runs instead a faster recovery (x1.05 a
step) with and without the brake's gate on it: the gate is what should let a recovery that fast
stop short of the ceiling. ``,parts`` runs the brake alone and the gate alone. ``,controls``
runs the brake's controls for the oracle goals: AdamW replaying its multiplier trajectory
(faulted too) and AdamW at its mean effective LR. ``,ablation`` runs the law with the brake
and, as arms of their own, with each other mechanism removed in turn (the brake's own removal
is the plain setting's default governor). ``,guarded`` runs the law with the brake over each
baseline of lbw_jax/train/configs/stress_guarded.py (``governor_overshoot@<baseline>``), faulted too; the bare
baselines and the default governor over them are that config's run.
"""

import ml_collections

from lbw_jax.train.configs.stress_ablation import governor_variants
from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu
from lbw_jax.train.configs.stress_guarded import LR_ROBUST
from lbw_jax.train.configs.stress_guarded import VARIANTS as BASELINE_VARIANTS
from lbw_jax.train.configs.stress_heldout import get_config as stress_heldout
from lbw_jax.train.configs.stress_llama import get_config as stress_llama
from lbw_jax.train.configs.stress_lora import get_config as stress_lora
from lbw_jax.train.configs.stress_lora_size import get_config as stress_lora_size


def _three_seeds(make, *args):
    """The goals ask 3 seeds of AdamW and the governor on the size axis and the Llama check."""
    c = make(*args)
    c.stress.seeds = 3
    return c


SETTINGS = {"cpu": stress_cpu, "lora": stress_lora, "llama": lambda: _three_seeds(stress_llama),
            "small": lambda: _three_seeds(stress_lora_size, "small"),
            "large": lambda: _three_seeds(stress_lora_size, "large"),
            "heldout": stress_heldout}
VARIANTS = {
    "": {"governor_overshoot": {"use_overshoot": True}},
    "recovery": {"governor_fast_recovery": {"recover": 1.05},
                 "governor_overshoot_fast_recovery": {"use_overshoot": True, "recover": 1.05}},
    # Each half of mechanism 4 alone: a level the smoothed overshoot never reaches turns the
    # other half off.
    "parts": {"governor_overshoot_brake_only": {"use_overshoot": True, "recover_below": 1e9},
              "governor_overshoot_gate_only": {"use_overshoot": True, "brake_above": 1e9}},
    "controls": {"governor_overshoot": {"use_overshoot": True}},
    "guarded": {"governor_overshoot": {"use_overshoot": True}},
    "ablation": {"governor_overshoot": {"use_overshoot": True},
                 **{f"governor_overshoot_no_{m}": {"use_overshoot": True, f"use_{m}": False}
                    for m in ("skip", "trust", "harm")}},
}
# Arms a setting keeps beside the governors: on the held-out setting, the baseline that beat the
# default governor there.
KEEP = {"heldout": ("dadapt_adamw_lr0",)}
# Arms a variant adds beside its own (controls: their faults run for the replay only).
CONTROLS = ("replay_governor_overshoot", "effective_lr_governor_overshoot")
GUARDED = tuple(f"governor_overshoot@{r}" for r in LR_ROBUST)


def get_config(arg: str = "cpu"):
    setting, _, which = arg.partition(",")
    if setting not in SETTINGS or which not in VARIANTS:
        raise ValueError(f"lbw_jax/train/configs/stress_overshoot.py:{arg}: expected SETTING or SETTING,WHICH "
                         f"with SETTING one of {sorted(SETTINGS)} and WHICH one of {sorted(VARIANTS)[1:]}")
    c = SETTINGS[setting]()
    # The brake is on by default since v3.0: the plain settings' "governor" arm is the law
    # without it (v2.3), its ablation, and every brake arm sets it on by name.
    c.optimizer.governor.use_overshoot = False
    if setting == "heldout":
        c.stress.seeds = 2       # as its report ran (docs/stress/overshoot/heldout)
    # These reports compare v2.3 and v3.0: the room probe (the default since v4) stays off.
    c.optimizer.governor.use_room = False
    c.output_dir = f"runs/stress_overshoot_{setting}" + (f"_{which}" if which else "")
    governor_variants(c.stress, VARIANTS[which])
    s = c.stress
    if which:   # the default governor ran in the plain setting's run
        s.arms = tuple(a for a in s.arms if a != "governor")
        s.fault_arms = s.arms
    s.arms = (*s.arms, *KEEP.get(setting, ()))
    if which == "controls":
        s.arms = (*s.arms, *CONTROLS)
        s.fault_arms = (*s.fault_arms, CONTROLS[0])
    if which == "guarded":
        for name, (baseline, knobs) in BASELINE_VARIANTS.items():
            s.variants[name] = ml_collections.ConfigDict({"policy": baseline, "kwargs": knobs})
        s.arms = (*s.arms, *GUARDED)
        s.fault_arms = s.arms
    if not s.scenarios:
        s.fault_arms = ()
    return c
