"""Spike skipping: drop an optimizer step whose loss or gradient norm is an outlier.

The rule used in large pretraining runs (e.g. OLMo 2): keep the last ``window``
losses and gradient norms; once ``warmup`` of them are recorded, skip the step when
the loss or the norm exceeds its mean + ``threshold`` standard deviations over
that window. Skipped steps are recorded too, as in OLMo, so that a lasting shift in
level is eventually accepted rather than stalling training for good.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import optax

from lbw_jax import knobs
from lbw_jax._skip import zero_updates
from lbw_jax.sensing import all_finite


class SpikeSkipState(NamedTuple):
    """State of ``skip_spikes``.

    Attributes:
      losses: ring buffer of the last ``window`` finite losses.
      norms: ring buffer of the last ``window`` finite gradient norms.
      recorded: how many values were written to the ring buffers.
      skipped: steps skipped (outliers and non-finite steps).
      inner_state: the inner optimizer's state.
    """

    losses: jax.Array
    norms: jax.Array
    recorded: jax.Array
    skipped: jax.Array
    inner_state: Any


def _outlier(x, buffer, n, threshold):
    valid = jnp.arange(buffer.shape[0]) < n
    count = jnp.maximum(n, 1).astype(jnp.float32)
    mean = jnp.sum(jnp.where(valid, buffer, 0.0)) / count
    var = jnp.sum(jnp.where(valid, jnp.square(buffer - mean), 0.0)) / count
    return x > mean + threshold * jnp.sqrt(var)


def skip_spikes(inner: optax.GradientTransformation, *, window: int = 128,
                threshold: float = 6.0, warmup: int = 64) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner``; its ``update`` needs the loss as ``value=``.

    Args:
      inner: the optimizer, e.g. ``optax.adamw(lr)``.
      window: how many recent steps the statistics cover.
      threshold: standard deviations above the mean that count as a spike.
      warmup: recorded steps before any step may be skipped (at most ``window``).

    A skipped step returns zero updates and leaves ``inner``'s state untouched.
    Non-finite losses or gradients are always skipped and never recorded.
    """
    window = knobs.integer("skip_spikes", "window", window, low=2)
    threshold = knobs.real("skip_spikes", "threshold", threshold, low=0.0, low_open=True)
    warmup = knobs.integer("skip_spikes", "warmup", warmup, low=2, high=window)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return SpikeSkipState(losses=jnp.zeros([window], jnp.float32),
                              norms=jnp.zeros([window], jnp.float32),
                              recorded=jnp.zeros([], jnp.int32), skipped=jnp.zeros([], jnp.int32),
                              inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if extra_args.get("value") is None:
            raise ValueError("skip_spikes: update() needs the loss as value=loss.")
        loss = jnp.asarray(extra_args["value"], jnp.float32)
        norm = optax.tree.norm(updates).astype(jnp.float32)
        finite = jnp.isfinite(loss) & jnp.isfinite(norm) & all_finite(updates)
        n = jnp.minimum(state.recorded, window)
        spike = (state.recorded >= warmup) & (
            _outlier(loss, state.losses, n, threshold) | _outlier(norm, state.norms, n, threshold))
        apply = finite & ~spike

        slot = state.recorded % window
        record = lambda buffer, x: jnp.where(finite, buffer.at[slot].set(x), buffer)
        base = state._replace(losses=record(state.losses, loss), norms=record(state.norms, norm),
                              recorded=state.recorded + finite.astype(jnp.int32))

        def step(_):
            new_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
            return new_updates, base._replace(inner_state=inner_state)

        def skip(_):
            zeros = zero_updates(inner, updates, state.inner_state, params, extra_args)
            return zeros, base._replace(skipped=optax.safe_increment(state.skipped))

        return lax.cond(apply, step, skip, None)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
