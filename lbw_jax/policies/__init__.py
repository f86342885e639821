"""Control laws for ``lbw_guard``."""

from lbw_jax.policies.base import Decision, Policy
from lbw_jax.policies.governor import REASONS, Governor, GovernorState, governor
from lbw_jax.policies.reflex import Reflex, ReflexState, reflex
from lbw_jax.policies.reflex_pro import ReflexPro, ReflexProState, reflex_pro

# Every policy by name, for configs and the stress suite.
POLICIES = {"reflex": reflex, "reflex_pro": reflex_pro, "governor": governor}

__all__ = ["Decision", "Policy", "Reflex", "ReflexState", "reflex",
           "ReflexPro", "ReflexProState", "reflex_pro", "Governor", "GovernorState",
           "governor", "REASONS", "POLICIES"]
