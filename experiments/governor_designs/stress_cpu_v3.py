"""Governor v3's design measurements (issue 23) on the CPU default, the setting where
governor v2.1 was tuned: do the two designs that helped on the LoRA shift
(experiments/governor_designs/stress_lora_v3.py, experiments/governor_designs/lora/) harm the full-parameter
re-warm?

The CPU default (lbw_jax/train/configs/stress_cpu.py) with AdamW, the governor (v2.1), and as arms of
their own: ``trust_from=11`` (the trust region starts once the calibration ends, so a
LoRA start's first steps pass unclamped) and ``trust_growth=2`` (after a clamp the
reference step may double, so a lasting change is accepted in a few steps). Two seeds,
the burst and the LR spike (one seed): a design comparison, not the goals' measurement.

    python -m lbw_jax.train.stress --config experiments/governor_designs/stress_cpu_v3.py --config.output_dir=experiments/governor_designs/cpu
"""

from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu
from experiments.governor_designs.comparison import design_comparison
from experiments.governor_designs.stress_lora_v3 import DESIGNS

CANDIDATES = ("governor_trust_from_11", "governor_trust_growth_2")


def get_config():
    c = stress_cpu()
    c.output_dir = "runs/stress_cpu_v3"
    design_comparison(c, {name: DESIGNS[name] for name in CANDIDATES})
    return c
