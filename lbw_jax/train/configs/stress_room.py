"""The governor with its room probe (``use_room``, mechanism 5: governor v4) beside plain AdamW
and governor v3.0, clean and under every fault, on one suite setting (v4's design runs, made
while v3.0 was the default: the ``governor`` arm here is pinned to v3.0 and ``governor_room`` to
v4 as then measured, ``probe_held`` 5, so each command reproduces its report in docs/stress/room/):

    python -m lbw_jax.train.stress --config stress_room:cpu        # the CPU default
    python -m lbw_jax.train.stress --config stress_room:lora       # the LoRA domain shift
    python -m lbw_jax.train.stress --config stress_room:llama      # the Llama-shape check (3 seeds)
    python -m lbw_jax.train.stress --config stress_room:small      # the LoRA size axis (3 seeds)
    python -m lbw_jax.train.stress --config stress_room:large
    python -m lbw_jax.train.stress --config stress_room:heldout    # the held-out setting (3 seeds)
    python -m lbw_jax.train.stress --config stress_room:lora,alone # v4 alone, no faults (a design run)
    python -m lbw_jax.train.stress --config stress_room:lora,forms       # v4's two forms (room_cap)
    python -m lbw_jax.train.stress --config stress_room:lora,fractions   # v4 capping, at other room_fractions
    python -m lbw_jax.train.stress --config stress_room:lora,controls
    python -m lbw_jax.train.stress.goals runs/stress_room_lora/results.json --policy governor_room

The suite's train step hands every optimizer the loss function as ``value_fn=`` (as it does in
``lbw_jax.train.run``), so the ``governor_room`` arm probes; ``,alone`` runs that arm and AdamW
only, without faults (the design runs of docs/governor.md); ``,controls`` adds AdamW replaying its
multiplier trajectory and AdamW at its mean effective LR.
"""

import ml_collections

from lbw_jax.train.configs.stress_overshoot import SETTINGS

VARIANTS = ("", "alone", "controls", "fractions", "forms")
ROOM = {"use_room": True}
# The design runs (docs/governor.md): v4 in its two forms, capping every step by its level
# (``room_cap``, the default) and acting on evidence only; and the capping form at other fractions.
FORMS = {"governor_room_evidence": {"room_cap": False}, "governor_room_cap": {"room_cap": True}}
FRACTIONS = {"governor_room_f010": 0.1, "governor_room_f035": 0.35, "governor_room_f050": 0.5}
CONTROLS = ("replay_governor_room", "effective_lr_governor_room")


def get_config(arg: str = "cpu"):
    setting, _, which = arg.partition(",")
    if setting not in SETTINGS or which not in VARIANTS:
        raise ValueError(f"lbw_jax/train/configs/stress_room.py:{arg}: expected SETTING or SETTING,WHICH "
                         f"with SETTING one of {sorted(SETTINGS)} and WHICH one of {list(VARIANTS[1:])}")
    c = SETTINGS[setting]()
    c.optimizer.governor.update(use_room=False, probe_held=5)   # v3.0; governor_room sets use_room
    if setting == "heldout":
        c.stress.seeds = 3       # the goals ask 3 seeds on every setting
    c.output_dir = f"runs/stress_room_{setting}" + (f"_{which}" if which else "")
    s = c.stress
    s.variants["governor_room"] = ml_collections.ConfigDict({"policy": "governor", "kwargs": dict(ROOM)})
    s.sequential_cells = 0
    keep = tuple(a for a in s.arms if a == "dadapt_adamw_lr0")
    for name, knobs in {**FORMS, **{k: {"room_cap": True, "room_fraction": f} for k, f in FRACTIONS.items()}}.items():
        s.variants[name] = ml_collections.ConfigDict({"policy": "governor", "kwargs": {**ROOM, **knobs}})
    alone = which in ("alone", "fractions", "forms")
    s.arms = {"alone": ("adamw", "governor_room"), "fractions": ("adamw", "governor_room_cap", *FRACTIONS),
              "forms": ("adamw", *FORMS)}.get(which, ("adamw", "governor", "governor_room", *keep))
    s.fault_arms = () if alone or not s.scenarios else ("adamw", "governor", "governor_room")
    if which == "controls":
        s.arms = ("adamw", "governor_room", *CONTROLS)
        s.fault_arms = ("governor_room", CONTROLS[0]) if s.scenarios else ()
    if alone:
        s.scenarios = ()
    return c
