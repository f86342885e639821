"""The design comparison the governor v3 design configs share (moved here from
lbw_jax/train/configs/stress_ablation.py, unchanged)."""

from lbw_jax.train.configs.stress_ablation import governor_variants


def design_comparison(c, variants: dict) -> None:
    """Governor v3's design runs: the variants against AdamW and governor v2.1, two seeds,
    the burst and the LR spike (a comparison of designs, not the goals' measurement)."""
    # The governor arm is v2.1, the default when these were measured (v2.2 starts the
    # trust region at step 11): pinned, so each design config still reproduces its report.
    c.optimizer.governor.trust_from = 2
    governor_variants(c.stress, variants)
    c.stress.seeds = 2
    c.stress.scenarios = ("burst", "lr_spike")
