"""``telemetry(state)``: the guard's scalars for logging, from any optimizer state, and
the names of its codes (``regime_name``, ``reason_name``) in the active policy's words."""

from __future__ import annotations

import jax

from lbw_jax.guard import GuardState
from lbw_jax.policies.base import Policy, policy_of_state


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
    """Scalars describing the guard, each under the name of the state field it reads:
    ``GuardState``'s ``step``, ``multiplier`` (what the last applied update was multiplied
    by), ``interventions`` and ``skipped``; the policy state's ``scale`` (the policy's own
    scale: ``multiplier`` is it times the one-step ``limit`` factor, so they differ only on a
    step the policy's ``limit`` bounded) and ``regime`` (a code of the policy's ``Regime``;
    ``regime_name`` names it); and the policy's own signals, from its state's ``telemetry()``
    (e.g. the governor's ``loss_z``, ``excess``, ``limits``; reflex's ``grad_ms``, ``ratio``).

    ``policy_scale`` is the former name of ``scale``, kept for one release; until this
    release ``scale`` was the ``multiplier``.

    Works under jit and vmap (values then carry the batch dimensions)."""
    guard = find_guard_state(state)
    policy = guard.policy_state
    out = dict(policy.telemetry())
    out.update(step=guard.step, multiplier=guard.multiplier, scale=policy.scale,
               policy_scale=policy.scale, regime=policy.regime, interventions=guard.interventions,
               skipped=guard.skipped)
    return out


def _policy_and_state(state):
    """(the policy class, its state or None) for ``state``: a policy (class or instance,
    no state), a policy state, a ``GuardState`` or an optimizer state holding one."""
    if isinstance(state, Policy) or (isinstance(state, type) and issubclass(state, Policy)):
        return (state if isinstance(state, type) else type(state)), None
    if policy_of_state(type(state)) is None:
        state = find_guard_state(state).policy_state
    policy = policy_of_state(type(state))
    if policy is None:
        raise ValueError(f"no policy declares the state type {type(state).__name__} as its "
                         f"state_type, so its codes have no names")
    return policy, state


def _code_name(state, code, field: str) -> str:
    policy, policy_state = _policy_and_state(state)
    if code is None:
        if policy_state is None:
            raise TypeError(f"{field}_name(policy) needs the code: {field}_name(policy, code)")
        code = getattr(policy_state, field)
    return policy.regime_name(code) if field == "regime" else policy.reason_name(code)


def regime_name(state, code=None) -> str:
    """The name of a regime code in the vocabulary of the policy that ``state`` belongs to
    (a policy, its state, a ``GuardState`` or an optimizer state holding one).

    ``code``: an int or scalar array; default the state's current regime. Not under jit."""
    return _code_name(state, code, "regime")


def reason_name(state, code=None) -> str:
    """The name of a reason code (``reason`` in the governor's telemetry), as ``regime_name``."""
    return _code_name(state, code, "reason")
