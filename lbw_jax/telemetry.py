"""``telemetry(state)``: the guard's scalars for logging, from any optimizer state."""

from __future__ import annotations

import jax

from lbw_jax.guard import GuardState


def find_guard_state(state) -> GuardState:
    """Returns the single ``GuardState`` inside an optimizer state pytree
    (the state itself, or one nested in e.g. ``optax.chain``)."""
    if isinstance(state, GuardState):
        return state
    found = [leaf for leaf in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, GuardState))
             if isinstance(leaf, GuardState)]
    if len(found) != 1:
        raise ValueError(
            f"telemetry: expected exactly one lbw_guard state in the optimizer state, "
            f"found {len(found)}; pass the guard's own state.")
    return found[0]


def telemetry(state) -> dict[str, jax.Array]:
    """Scalars describing the guard: ``step``, ``scale`` (what the last applied update
    was multiplied by), ``policy_scale`` (the policy's own scale; it differs from
    ``scale`` only on a step the policy's ``limit`` bounded), ``regime`` (a code into
    ``REGIMES``), ``interventions``, ``skipped`` and the policy's signals
    (for the reference laws ``grad_ms``, ``signed_mean``, ``ema``, ``ratio``,
    ``sign_flip``, ``collections``; reflex_pro adds its window statistics).

    Works under jit and vmap (values then carry the batch dimensions)."""
    guard = find_guard_state(state)
    policy = guard.policy_state
    out = dict(policy.telemetry())
    out.update(step=guard.step, scale=guard.multiplier, policy_scale=policy.scale,
               regime=policy.regime, interventions=guard.interventions, skipped=guard.skipped)
    return out
