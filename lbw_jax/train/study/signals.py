"""Per-step stability signals of any optax optimizer, read without changing its step: the
instrument of the signal study for a per-step stability signal (governor v3).

``traced(inner)`` wraps an optimizer, passes its updates through unchanged and keeps, in
its state, the candidate signals of the last step. It holds one extra buffer, the previous
update u_{t-1}, and reads the loss f_t of the parameters the gradient g_t was taken at
(``value=``, as the guard does). With the previous step's first-order prediction
p_{t-1} = g_{t-1}·u_{t-1} (negative for a descent step) the signals are:

- ``align``: g_t·u_{t-1} / p_{t-1}, the new gradient along the last update against the
  old one (hypergradient descent reads its sign). 1: the slope along the step did not
  change; 0: the step reached the minimum along its line; negative: it overshot it.
- ``overshoot``: 1 - ``align`` = (g_t - g_{t-1})·u_{t-1} / -p_{t-1}, the step's size
  against the one-dimensional optimum of a quadratic along it (the directional curvature
  times |u|^2 over the slope). Above 2 the step is past the edge of stability along its
  own direction (Cohen et al.: sharpness against 2/eta).
- ``acceptance``: (f_t - f_{t-1}) / p_{t-1}, the loss change against its first-order
  prediction, the classical trust-region ratio (on another batch, so noisy: SALSA smooths
  both sides).
- ``update_growth``: |u_t| over an EMA of the earlier |u| (``growth_decay``): Adam's update
  norm grows before a loss spike.
- ``polyak``: (f_t - f_low) / -(g_t·u_t), the Polyak step over this step, as a ratio to the
  LR in use: above 1 the LR is under the Polyak ceiling (MoMo's cap), below 1 above it.
  ``f_low`` is ``loss_floor`` (0: loose for a language model's loss).
- ``update_norm`` and ``pred``: |u_t| and p_t = g_t·u_t themselves, for signals derived
  after the run (the update norm per unit LR; the acceptance ratio with both sides
  smoothed, as SALSA does).
- ``room``: the critical step along u_t over the step itself, eta_c / eta_t
  (``lbw_jax.policies.room``): the parabola through f_t, its slope p_t and one forward pass of
  ``value_fn`` (the step's own batch) at u_t. ``curv`` is that parabola's curvature u'Hu, for a
  parabola pooled over steps after the run (-2 EMA(p) / EMA(curv)). ``room_held``: the same
  critical step from three forward passes of ``held_value_fn`` (a fixed held batch) at 0, u_t
  and 2 u_t. NaN without those extra arguments.

A quantity without a previous step (the first step) or with a zero denominator is NaN,
never a false zero. Signals are float32 scalars, so they trace into a vmapped cell.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lbw_jax.policies import room as room_lib
from lbw_jax.policies.overshoot import slope   # the float32 inner product the governor reads
from lbw_jax.train.stress.engine.arms import Arm

SIGNALS = ("align", "overshoot", "acceptance", "update_growth", "polyak", "update_norm", "pred",
           "room", "curv", "room_held")


class TracedState(NamedTuple):
    """The inner optimizer's state and the signal memory.

    Attributes:
      inner_state: the wrapped optimizer's state, as it would be alone.
      prev_update: u_{t-1}, the last update the optimizer returned (zeros at first).
      prev_loss: f_{t-1} (NaN before the first step).
      norm_ema: EMA of the earlier update norms (NaN before the first step).
      signals: the last step's signals, by the names of ``SIGNALS``; its ``pred`` is the
        next step's p_{t-1} (NaN before the first step).
    """

    inner_state: optax.OptState
    prev_update: optax.Updates
    prev_loss: jax.Array
    norm_ema: jax.Array
    signals: dict


def _ratio(num, den) -> jax.Array:
    """num / den, NaN where den is 0 or NaN (no signal rather than a false one)."""
    ok = jnp.isfinite(den) & (den != 0)
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), jnp.nan)


def _nan() -> jax.Array:
    return jnp.full([], jnp.nan, jnp.float32)


def traced(inner: optax.GradientTransformation, *, growth_decay: float = 0.9,
           loss_floor: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """``inner`` unchanged, with its per-step stability signals in the state
    (``TracedState.signals``). ``update`` needs ``value=`` (the loss at ``params``)."""
    if not 0.0 <= growth_decay < 1.0:
        raise ValueError(f"traced: growth_decay={growth_decay!r} must be in [0, 1)")
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return TracedState(inner.init(params), optax.tree.zeros_like(params), _nan(), _nan(),
                           {name: _nan() for name in SIGNALS})

    def update_fn(grads, state, params=None, *, value, **extra_args):
        updates, inner_state = inner.update(grads, state.inner_state, params, value=value,
                                            **extra_args)
        loss = jnp.asarray(value, jnp.float32)
        along_last, pred = slope(grads, state.prev_update), slope(grads, updates)
        norm = jnp.sqrt(slope(updates, updates))
        prev_pred = state.signals["pred"]
        align = _ratio(along_last, prev_pred)
        signals = {"align": align, "overshoot": 1.0 - align,
                   "acceptance": _ratio(loss - state.prev_loss, prev_pred),
                   "update_growth": _ratio(norm, state.norm_ema),
                   "polyak": _ratio(loss - loss_floor, -pred), "update_norm": norm, "pred": pred}
        ema = jnp.where(jnp.isnan(state.norm_ema), norm,
                        growth_decay * state.norm_ema + (1.0 - growth_decay) * norm)
        signals.update(_room(params, updates, loss, pred, extra_args))
        return updates, TracedState(inner_state, updates, loss, ema, signals)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _room(params, updates, loss, pred, extra_args) -> dict:
    """The room signals of this step (NaN where their extra argument was not given)."""
    out = {"room": _nan(), "curv": _nan(), "room_held": _nan()}
    value_fn, held_fn = extra_args.get("value_fn"), extra_args.get("held_value_fn")
    if value_fn is not None and params is not None:
        crit, curv, valid = room_lib.probe(value_fn, params, updates, loss, pred, 1.0)
        out.update(room=jnp.where(valid, crit, jnp.nan), curv=curv)
    if held_fn is not None and params is not None:
        f0, f1, f2 = (held_fn(room_lib.moved(params, updates, a)) for a in (0.0, 1.0, 2.0))
        crit, _, valid = room_lib.critical3(f0, f1, f2, 1.0)
        out["room_held"] = jnp.where(valid, crit, jnp.nan)
    return out


def traced_arm(arm: Arm) -> Arm:
    """The stress arm ``arm`` with the stability signals of ``traced`` recorded each step,
    through the engine's record hook (``Arm.make``, ``Arm.probe``, ``Arm.signals``); its steps
    are the arm's own, unchanged (one extra buffer: the previous update)."""
    return dataclasses.replace(arm, make=lambda lr: traced(arm.make(lr)),
                               probe=lambda state: arm.probe(state.inner_state),
                               signals=lambda state: state.signals)
