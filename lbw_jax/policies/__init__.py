"""Control laws for ``lbw_guard``."""

from lbw_jax.policies.base import Decision, Policy
from lbw_jax.policies.governor import REASONS, Governor, GovernorState, governor
from lbw_jax.policies.reflex import Reflex, ReflexSignals, ReflexState, reflex
from lbw_jax.policies.reflex_pro import ReflexPro, ReflexProState, reflex_pro

# Every policy by name, for configs and the stress suite: registering one is adding it here.
POLICIES = {law.name: law.create for law in (Reflex, ReflexPro, Governor)}

__all__ = ["Decision", "Policy", "Reflex", "ReflexSignals", "ReflexState", "reflex",
           "ReflexPro", "ReflexProState", "reflex_pro", "Governor", "GovernorState",
           "governor", "REASONS", "POLICIES"]
