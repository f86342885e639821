"""The governor's trust region on the step (its mechanism 2, ``use_trust``).

From applied step ``trust_from`` on, an applied step whose norm (at scale 1) exceeds
``trust_ratio`` times the reference step norm is shrunk to that bound, for that step only.
The reference follows each applied step (an EMA with ``trust_decay``; 0 makes it the
previous step), but a clamped step lets it grow by ``trust_growth`` only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lbw_jax.policies.governor_state import GovernorReason, GovernorRegime, GovernorState


def limit(policy, updates, state: GovernorState) -> tuple[jax.Array, GovernorState]:
    """This step's factor for ``policy`` (a ``Governor``): its norm may be at most ``trust_ratio``
    times the reference step (from applied step ``trust_from`` on; ``count`` includes it);
    and the state with the reference, ``step_ratio``, ``limits`` and the codes updated."""
    size = optax.tree.norm(updates).astype(jnp.float32)
    bound = policy.trust_ratio * state.step_ref
    clamp = policy.use_trust & (state.count >= policy.trust_from) & (state.step_ref > 0) & (size > bound)
    factor = jnp.where(clamp, bound / (size + policy.eps), 1.0)
    # A clamped step lets the reference grow slowly: a spike does not inflate the
    # reference it is judged by, while a lasting change is accepted in time.
    kept = jnp.where(clamp, policy.trust_growth * state.step_ref, size)
    step_ref = jnp.where(state.count <= 1, size,
                         policy.trust_decay * state.step_ref + (1 - policy.trust_decay) * kept)
    new_state = state._replace(
        step_ref=step_ref, step_ratio=size / (state.step_ref + policy.eps),
        limits=state.limits + clamp.astype(jnp.int32),
        reason=jnp.where(clamp, GovernorReason.STEP_LIMIT, state.reason).astype(jnp.int32),
        regime=jnp.where(clamp & (state.regime == GovernorRegime.CALM), GovernorRegime.STEP_LIMIT,
                         state.regime).astype(jnp.int32))
    return factor.astype(jnp.float32), new_state
