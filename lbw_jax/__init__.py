"""lbw-jax: the Learn-by-Wire guard for optax, compiled into the training step."""

from lbw_jax import knobs
from lbw_jax.knobs import KnobError
from lbw_jax.baselines import skip_spikes, update_clip, zclip
from lbw_jax.guard import GuardState, lbw_guard
from lbw_jax.scaled_lr import ScaledLRState, scaled_lr
from lbw_jax.policies import (LAWS, POLICIES, Decision, Governor, Policy, Reflex, ReflexPro,
                              governor, reflex, reflex_pro)
from lbw_jax.sensing import all_finite
from lbw_jax.telemetry import reason_name, regime_name, telemetry

__version__ = "0.2.0"

__all__ = ["lbw_guard", "GuardState", "Policy", "Decision", "reflex", "reflex_pro", "governor",
           "Reflex", "ReflexPro", "Governor", "LAWS", "POLICIES", "telemetry", "regime_name",
           "reason_name", "knobs", "KnobError", "all_finite", "zclip", "skip_spikes", "update_clip",
           "scaled_lr", "ScaledLRState"]
