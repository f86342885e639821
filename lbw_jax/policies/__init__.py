"""Control laws for ``lbw_guard``."""

from lbw_jax.policies.base import Decision, Policy, Reason, Regime
from lbw_jax.policies.governor import Governor, GovernorReason, GovernorRegime, GovernorState, governor
from lbw_jax.policies.governor_state import GovernorRoomState
from lbw_jax.policies.reflex import Reflex, ReflexRegime, ReflexSignals, ReflexState, reflex
from lbw_jax.policies.reflex_pro import ReflexPro, ReflexProRegime, ReflexProState, reflex_pro

# Every policy class by name, for configs and the stress suite (``POLICIES[name].create(**knobs)``
# builds one): registering a policy is adding it here.
POLICIES = {policy.name: policy for policy in (Reflex, ReflexPro, Governor)}
LAWS = POLICIES   # the registry's former name, kept for one release

__all__ = ["Decision", "Policy", "Regime", "Reason", "Reflex", "ReflexRegime", "ReflexSignals",
           "ReflexState", "reflex", "ReflexPro", "ReflexProRegime", "ReflexProState", "reflex_pro",
           "Governor", "GovernorRegime", "GovernorReason", "GovernorState", "GovernorRoomState", "governor",
           "LAWS", "POLICIES"]
