"""Governor v3's first design measurement (issue 23): the trust region on a LoRA start.

The LoRA domain shift (configs/stress_lora.py) with AdamW, the governor, the governor
without its trust region, the governor whose trust reference may grow faster after a
clamp (``trust_growth`` 1.25 and 2, against the default 1.02), and the governor whose
trust region starts once its calibration ends (``trust_from`` 11, against the default
2: the reference follows the first 10 steps unclamped). On a LoRA start the B
factors are zero, so the A factors get no gradient on the first step; when they start
moving the update's norm jumps against the previous step's, the trust region clamps,
and a reference that grows by 1.02 a step cannot keep up with a warmup that is still
raising the LR, so the clamp compounds (docs/governor.md). A faster-growing reference
accepts a lasting change in a few steps, and a later start never sees the jump; the
question is what each costs under a learning-rate spike, which the trust region exists
to catch. Two seeds, the burst and the LR spike (one seed): a design comparison, not
the goals' measurement.

    python -m train.stress --config configs/stress_lora_trust.py --config.output_dir=docs/stress/lora_trust
"""

from configs.stress_ablation import REMOVED, governor_variants
from configs.stress_lora import get_config as stress_lora

DESIGNS = {"governor_no_trust": REMOVED["governor_no_trust"],
           "governor_trust_growth_125": {"trust_growth": 1.25},
           "governor_trust_growth_2": {"trust_growth": 2.0},
           "governor_trust_from_11": {"trust_from": 11}}


def get_config():
    c = stress_lora()
    c.output_dir = "runs/stress_lora_trust"
    s = c.stress
    governor_variants(s, DESIGNS)
    s.seeds = 2
    s.scenarios = ("burst", "lr_spike")
    return c
