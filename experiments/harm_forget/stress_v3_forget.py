"""Governor v3's third design question (issue 23): at LR 0.1 the harm control lets a
collapsed run back to full scale.

In the LoRA design run (experiments/governor_designs/lora/) every design's LR-0.1 outcome is
bimodal over seeds: a seed whose scale reaches the floor (0.01) early recovers (final
perplexity ~190), one whose scale stops near 0.2 ends collapsed (~500, AdamW's level).
The harm reference is the loss EMA's recent best, which forgets upward at ``forget``
(0.1) a step, so within ~1/forget steps of a blow-up the collapsed level is the new
best; the excess falls inside the recovery band and the scale grows back to 1 while
the run is still collapsed. A slower forgetting keeps the harm signal alive until the
scale is low enough for the run to heal.

Arms: AdamW, the governor (v2.1), ``trust_from=11`` (the LoRA runs' best design) and
that design with ``forget`` 0.03 and 0.01; two seeds, the burst and the LR spike (a
slower forgetting also cuts longer after a fault). ``:lora`` is the LoRA shift,
``:cpu`` the CPU default.

    python -m lbw_jax.train.stress --config experiments/harm_forget/stress_v3_forget.py:lora --config.output_dir=experiments/harm_forget/lora
    python -m lbw_jax.train.stress --config experiments/harm_forget/stress_v3_forget.py:cpu --config.output_dir=experiments/harm_forget/cpu
"""

from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu
from lbw_jax.train.configs.stress_lora import get_config as stress_lora
from experiments.governor_designs.comparison import design_comparison
from experiments.governor_designs.stress_lora_v3 import DESIGNS as LORA_DESIGNS

SETTINGS = {"lora": stress_lora, "cpu": stress_cpu}
TRUST_FROM_11 = LORA_DESIGNS["governor_trust_from_11"]
DESIGNS = {"governor_trust_from_11": TRUST_FROM_11,
           "governor_trust_from_11_forget_003": {**TRUST_FROM_11, "forget": 0.03},
           "governor_trust_from_11_forget_001": {**TRUST_FROM_11, "forget": 0.01}}


def get_config(setting: str = "lora"):
    if setting not in SETTINGS:
        raise ValueError(f"experiments/harm_forget/stress_v3_forget.py:{setting}: choose one of {sorted(SETTINGS)}")
    c = SETTINGS[setting]()
    c.output_dir = f"runs/stress_v3_forget_{setting}"
    design_comparison(c, DESIGNS)
    return c
