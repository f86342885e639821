"""lbw-jax: the Learn-by-Wire guard for optax, compiled into the training step."""

from lbw_jax.baselines import skip_spikes, update_clip, zclip
from lbw_jax.guard import GuardState, lbw_guard
from lbw_jax.policies import POLICIES, REASONS, Decision, Policy, governor, reflex, reflex_pro
from lbw_jax.regimes import REGIMES, regime_name
from lbw_jax.telemetry import telemetry

__version__ = "0.1.0"

__all__ = ["lbw_guard", "GuardState", "Policy", "Decision", "reflex", "reflex_pro",
           "telemetry", "REGIMES", "regime_name", "POLICIES", "zclip", "skip_spikes", "update_clip", "governor", "REASONS"]
