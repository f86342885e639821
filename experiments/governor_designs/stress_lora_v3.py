"""Governor v3's first design measurements (issue 23), on the LoRA domain shift, where
governor v2.1 harms healthy runs and falls far behind its own replay at the stressed LRs.

The LoRA shift (lbw_jax/train/configs/stress_lora.py) with AdamW, the governor (v2.1), and as arms of
their own (an ablation is not a baseline):

- the governor without its trust region (``use_trust=False``);
- three designs against the trust region's clamp on a LoRA start. The B factors start at
  zero, so the A factors get no gradient on the first step; when they start moving the
  update's norm jumps against the previous step's, the trust region clamps, and a
  reference that grows by 1.02 a step cannot keep up with a warmup that is still raising
  the LR, so the clamp compounds (docs/governor.md). ``trust_growth`` 1.25 and 2 let
  the reference grow faster after a clamp (a lasting change is accepted in a few
  steps); ``trust_from=11`` starts the trust region once the calibration ends (the
  reference follows the first 10 steps unclamped);
- two designs against the overshoot at high LRs: ``level_cuts`` (a cut to the level
  the excess sets, from the scale where the harm began, instead of a cut on every
  harmful step while the loss EMA lags), alone and with a faster recovery
  (``recover=1.1``);
- the two fixes together (``trust_from=11, level_cuts``).

Two seeds, the burst and the LR spike (one seed): a design comparison, not the goals'
measurement.

    python -m lbw_jax.train.stress --config experiments/governor_designs/stress_lora_v3.py --config.output_dir=experiments/governor_designs/lora
"""

from lbw_jax.train.configs.stress_ablation import REMOVED
from lbw_jax.train.configs.stress_lora import get_config as stress_lora
from experiments.governor_designs.comparison import design_comparison

DESIGNS = {"governor_no_trust": REMOVED["governor_no_trust"],
           "governor_trust_growth_125": {"trust_growth": 1.25},
           "governor_trust_growth_2": {"trust_growth": 2.0},
           "governor_trust_from_11": {"trust_from": 11},
           "governor_level_cuts": {"level_cuts": True},
           "governor_level_cuts_recover": {"level_cuts": True, "recover": 1.1},
           "governor_trust_from_11_level_cuts": {"trust_from": 11, "level_cuts": True}}


def get_config():
    c = stress_lora()
    c.output_dir = "runs/stress_lora_v3"
    design_comparison(c, DESIGNS)
    return c
