"""``lbw_guard``: the Learn-by-Wire guard as an optax transformation.

The guard reads telemetry from the raw gradients, lets its policy decide a step
scale in [floor, 1], runs the inner optimizer unchanged and multiplies the
inner updates by the scale. For ``optax.adamw(lr)`` this is exactly adamw with
learning rate ``lr * scale``, decoupled weight decay included.

Why a wrapper rather than a gradient transform chained ahead of Adam: Adam
divides by the root of its second moment, so a scale applied to the gradients
is divided out again within a few hundred steps and leaves the step unchanged.
Only a scale applied to Adam's output changes how far parameters move.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import optax

from lbw_jax._skip import zero_updates
from lbw_jax.policies.base import Policy
from lbw_jax.scaled_lr import LR_SCALE, find_scaled_lr
from lbw_jax.sensing import all_finite, tensor_view


class GuardState(NamedTuple):
    """State of ``lbw_guard``: counters, the policy's and inner's state.

    The policy owns the scale and the regime (``policy_state.scale``, ``.regime``).

    Attributes:
      step: number of updates applied: every update but the skipped ones (``skipped``: a
        non-finite one, or one the policy asked to skip); the t of the control laws.
      multiplier: what the last applied update was multiplied by, float32: the
        policy's scale times its one-step ``limit`` factor.
      interventions: updates on which the policy intervened (``Decision.intervened``:
        it cut or pinned the scale, or skipped the step) or its ``limit`` bounded the step.
      skipped: updates skipped: the gradients or the ``value=`` loss were not
        finite, or the inner optimizer's new scalar state was not (an estimate
        gone 0/0; such updates leave every other field untouched), or the policy
        asked to skip a pathological step (``Decision.skip``).
      policy_state: the control law's own state (telemetry and memory).
      inner_state: the inner optimizer's state.
    """

    step: jax.Array
    multiplier: jax.Array
    interventions: jax.Array
    skipped: jax.Array
    policy_state: Any
    inner_state: Any


_CHAIN_FORM = (
    "lbw_guard wraps the optimizer it governs: write lbw_guard(optax.adamw(lr), policy=...), "
    "not optax.chain(lbw_guard(...), optax.adamw(lr)). A scale applied ahead of Adam is divided "
    "out by Adam's normalisation (its second moment adapts to it), so it would not change the step.")


def lbw_guard(inner: optax.GradientTransformation, *, policy: Policy | None = None,
              skip_non_finite: bool = True, stacked_axes: Callable | None = None,
              scale_inside: bool = False) -> optax.GradientTransformationExtraArgs:
    """Wraps an optimizer with the Learn-by-Wire guard.

    Args:
      inner: the optimizer whose step is governed, normally ``optax.adamw(lr)``.
      policy: the control law; ``lbw_jax.governor()`` when omitted (it needs the loss
        as ``value=``); ``lbw_jax.reflex()`` and ``lbw_jax.reflex_pro()`` are the
        reference laws.
      skip_non_finite: skip steps whose gradients or ``value`` are not finite
        (the default). Turn it off only when something else already stops
        non-finite steps (e.g. ``optax.apply_if_finite`` around the guard): it
        saves a pass over the gradients and a conditional on every step.
      stacked_axes: for parameters that stack several tensors in one array (a model
        whose layers run under a scan): ``stacked_axes(key_path, leaf)`` gives the
        number of leading axes that index separate tensors (0 or 1). Laws that read
        per-tensor statistics (reflex, reflex_pro: the largest per-tensor mean square)
        then see each stacked slice as its own tensor, exactly as with one array per
        layer. ``None``: every leaf is one tensor.
      scale_inside: hand the scale to a ``lbw_jax.scaled_lr`` inside ``inner`` as its
        learning rate's multiplier, instead of multiplying ``inner``'s updates by it: for an
        optimizer whose state depends on the step it takes (D-Adaptation, Prodigy,
        Schedule-Free, Mechanic). ``init`` raises ``TypeError`` if ``inner`` holds no
        ``scaled_lr``. Default False.

    Returns:
      An ``optax.GradientTransformationExtraArgs``. Its ``update`` accepts the
      extra argument ``value=`` (the loss), which reaches the policy and, like
      every other extra argument, is forwarded to ``inner``; and ``value_fn=``, the loss as
      a function of the parameters on the same batch (as optax's line searches take it),
      which a policy that probes the loss along the step reads (``governor(use_room=True)``).

    With ``skip_non_finite``, non-finite gradients or a non-finite ``value`` skip
    the step: the update is zero and the inner state, the policy's statistics and
    the scale stay as they were; ``skipped`` counts such steps. So does a step after
    which a scalar of the inner state is not finite (D-Adaptation's estimate after an
    all-zero first gradient is 0/0, with a finite zero update): it is undone.
    """
    policy = _checked(inner, policy, skip_non_finite, scale_inside, stacked_axes)
    inner = optax.with_extra_args_support(inner)
    g = _Setup(inner, policy, stacked_axes, stacked_axes is not None and policy.reads_tensors,
               skip_non_finite, scale_inside)

    def init_fn(params):
        inner_state = inner.init(params)
        if scale_inside and not find_scaled_lr(inner_state):
            raise TypeError("lbw_guard(scale_inside=True): the inner optimizer has no lbw_jax.scaled_lr "
                            "inside to take the scale; build it as lbw_jax.scaled_lr(factory, "
                            "learning_rate, ...) (or wrap one, as optax.contrib.mechanize does).")
        return GuardState(
            step=jnp.zeros([], jnp.int32),
            multiplier=jnp.ones([], jnp.float32),
            interventions=jnp.zeros([], jnp.int32),
            skipped=jnp.zeros([], jnp.int32),
            policy_state=policy.init(params),
            inner_state=inner_state)

    def update_fn(updates, state, params=None, **extra_args):
        return _update(g, updates, state, params, extra_args)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class _Setup(NamedTuple):
    """What ``lbw_guard`` fixes when it is built, read by every update."""

    inner: optax.GradientTransformationExtraArgs
    policy: Policy
    stacked_axes: Callable | None
    per_tensor: bool          # the policy reads per-tensor statistics of stacked leaves
    skip_non_finite: bool
    scale_inside: bool


def _checked(inner, policy, skip_non_finite, scale_inside, stacked_axes) -> Policy:
    """``lbw_guard``'s arguments checked, each bad one named; the policy (the default law
    when omitted)."""
    if inner is None:
        raise TypeError(f"lbw_guard() was called without the optimizer to govern. {_CHAIN_FORM}")
    if isinstance(inner, Policy):
        raise TypeError(f"lbw_guard: the first argument is the optimizer to govern, got the policy "
                        f"{inner.name!r}; pass it as policy=. {_CHAIN_FORM}")
    if policy is None:
        from lbw_jax.policies.governor import governor
        policy = governor()
    if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
        raise TypeError(f"lbw_guard: inner must be an optax.GradientTransformation, got {inner!r}.")
    if not isinstance(policy, Policy):
        raise TypeError(
            f"lbw_guard: policy must be a lbw_jax.Policy (e.g. lbw_jax.reflex()), got {policy!r}.")
    if not isinstance(skip_non_finite, bool):
        raise TypeError(f"lbw_guard: skip_non_finite must be True or False, got {skip_non_finite!r}.")
    if not isinstance(scale_inside, bool):
        raise TypeError(f"lbw_guard: scale_inside must be True or False, got {scale_inside!r}.")
    if stacked_axes is not None and not callable(stacked_axes):
        raise TypeError(f"lbw_guard: stacked_axes must be a function (key_path, leaf) -> int, "
                        f"got {stacked_axes!r}.")
    return policy


def _update(g: _Setup, updates, state: GuardState, params, extra_args):
    """The guard's ``update``: the policy decides, the inner optimizer proposes, the guard
    applies (or skips) the step."""
    value = extra_args.get("value")
    step = optax.safe_increment(state.step)
    sensed = tensor_view(updates, g.stacked_axes) if g.per_tensor else updates
    decision, policy_state = g.policy.decide(sensed, state.policy_state, step=step, value=value,
                                             inner_state=state.inner_state)
    intervened = jnp.asarray(decision.intervened, jnp.bool_)

    def skip(finite):
        # Non-finite: nothing but the counter moves. A skip the policy asked for keeps
        # the policy's new state (its statistics saw a finite step, its scale may move).
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        return zero_updates(g.inner, updates, state.inner_state, params, extra_args), state._replace(
            policy_state=keep(policy_state, state.policy_state),
            interventions=keep(state.interventions + intervened.astype(jnp.int32),
                               state.interventions),
            skipped=optax.safe_increment(state.skipped))

    def propose(scale):
        if not g.scale_inside:
            return g.inner.update(updates, state.inner_state, params, **extra_args)
        return g.inner.update(updates, state.inner_state, params, **extra_args, **{LR_SCALE: scale})

    def governed(_):
        scale = policy_state.scale.astype(jnp.float32)
        inner_updates, inner_state = propose(scale)
        # A one-step bound on what the inner optimizer proposes (identity for most laws),
        # read per unit of scale in both forms, as the unscaled step of AdamW.
        per_unit = inner_updates if not g.scale_inside else jax.tree.map(
            lambda u: u / scale.astype(u.dtype), inner_updates)
        reads = {"grads": sensed} if g.policy.limit_reads_grads else {}
        if g.policy.limit_reads_value_fn:   # a probe of the loss along the step (optax's value_fn)
            reads.update(params=params, value=value, value_fn=extra_args.get("value_fn"))
        factor, new_policy_state = g.policy.limit(per_unit, policy_state, **reads)
        multiplier = (scale * factor).astype(jnp.float32)
        counted = intervened | (factor < 1.0)
        if g.scale_inside:
            # The state followed the step it proposed: a bounded step is taken again.
            scaled, inner_state = lax.cond(factor < 1.0, lambda: propose(multiplier),
                                           lambda: (inner_updates, inner_state))
        else:
            # Multiply in float32 and cast back, so bf16 updates see the exact scale.
            scaled = jax.tree.map(lambda u: (u * multiplier).astype(u.dtype), inner_updates)
        applied = scaled, GuardState(
            step=step, multiplier=multiplier,
            interventions=state.interventions + counted.astype(jnp.int32),
            skipped=state.skipped, policy_state=new_policy_state, inner_state=inner_state)
        healthy = scalars_finite(inner_state)
        if healthy is None:
            return applied
        return lax.cond(healthy, lambda: applied, lambda: skip(jnp.array(False)))

    finite = jnp.array(True)
    if g.skip_non_finite:
        finite = all_finite(updates)
        if value is not None:
            finite = finite & jnp.all(jnp.isfinite(jnp.asarray(value)))
    elif not g.policy.may_skip:
        return governed(None)
    policy_skip = jnp.asarray(decision.skip) if g.policy.may_skip else jnp.array(False)

    # A cond, as in optax.apply_if_finite: the skipped branch leaves the inner
    # state's buffers as they are. (A select would make XLA copy every moment
    # buffer on every step to keep the old value alive; measured slower.)
    return lax.cond(finite & ~policy_skip, governed, lambda _: skip(finite), None)


def scalars_finite(inner_state) -> jax.Array | None:
    """Whether every floating scalar of an optimizer state is finite (step-size estimates,
    running sums; a per-parameter buffer stays finite while its gradients are), or None
    when it has none (AdamW: then nothing is checked and nothing is compiled)."""
    scalars = [x for x in jax.tree.leaves(inner_state)
               if jnp.ndim(x) == 0 and jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    if not scalars:
        return None
    return jnp.all(jnp.stack([jnp.isfinite(x) for x in scalars]))
