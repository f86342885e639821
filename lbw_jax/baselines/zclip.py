"""ZClip: z-score adaptive gradient-norm clipping (Kumar et al., 2025).

An EMA of the global gradient norm and of its variance tracks what a normal step
looks like. After a warmup that only collects norms, a norm whose z-score
``z = (norm - mean) / std`` exceeds ``z_threshold`` is clipped to
``mean + z_threshold**2 / z * std`` (the "reciprocal" rule: the larger the spike,
the harder the clip), and the EMA is fed the clipped norm so that a spike does not
inflate the statistics that judge the next one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lbw_jax import _stats, knobs


class ZClipState(NamedTuple):
    """State of ``zclip``.

    Attributes:
      count: gradients seen with a finite norm.
      mean: EMA of the (clipped) gradient norm; during warmup the running mean.
      var: EMA of its variance; during warmup the running sum of squared deviations.
      clipped: how many gradients were clipped.
      last_factor: the multiplier applied to the last gradient (1 when not clipped).
    """

    count: jax.Array
    mean: jax.Array
    var: jax.Array
    clipped: jax.Array
    last_factor: jax.Array


def zclip(alpha: float = 0.97, z_threshold: float = 2.5, warmup_steps: int = 25,
          eps: float = 1e-6) -> optax.GradientTransformation:
    """Z-score adaptive clipping of the global gradient norm; chain it before the optimizer.

    Args:
      alpha: EMA decay of the norm's mean and variance.
      z_threshold: z-score above which a gradient is clipped.
      warmup_steps: steps that only collect norms; the EMA starts from their mean and variance.
      eps: added to the standard deviation before dividing.

    Non-finite gradients pass through unchanged and do not touch the statistics:
    stopping them is not ZClip's job (``lbw_guard`` or ``optax.apply_if_finite`` does it).
    """
    alpha = knobs.real("zclip", "alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    z_threshold = knobs.real("zclip", "z_threshold", z_threshold, low=0.0, low_open=True)
    warmup_steps = knobs.integer("zclip", "warmup_steps", warmup_steps, low=1)
    eps = knobs.real("zclip", "eps", eps, low=0.0, low_open=True)

    def init_fn(params):
        del params
        zero = lambda: jnp.zeros([], jnp.float32)
        return ZClipState(count=jnp.zeros([], jnp.int32), mean=zero(), var=zero(),
                          clipped=jnp.zeros([], jnp.int32), last_factor=jnp.ones([], jnp.float32))

    def update_fn(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates).astype(jnp.float32)
        finite = jnp.isfinite(norm)
        count = state.count + finite.astype(jnp.int32)
        warming = state.count < warmup_steps

        # Warmup: Welford's running mean and sum of squared deviations.
        w_mean, w_m2 = _stats.welford(state.mean, state.var, norm, count.astype(jnp.float32))
        w_var = jnp.where(count == warmup_steps, w_m2 / warmup_steps, w_m2)  # hand over to the EMA

        # After warmup: clip on the z-score, then feed the clipped norm to the EMA.
        std = jnp.sqrt(state.var)
        z = (norm - state.mean) / (std + eps)
        clip = ~warming & finite & (z > z_threshold)
        target = state.mean + z_threshold ** 2 / jnp.where(clip, z, 1.0) * std
        kept = jnp.where(clip, target, norm)
        e_mean, e_var = _stats.ema(state.mean, state.var, kept, alpha)

        mean = jnp.where(warming, w_mean, e_mean)
        var = jnp.where(warming, w_var, e_var)
        factor = jnp.where(clip, target / norm, 1.0)
        new_state = ZClipState(
            count=count,
            mean=jnp.where(finite, mean, state.mean),
            var=jnp.where(finite, var, state.var),
            clipped=state.clipped + clip.astype(jnp.int32),
            last_factor=factor)
        updates = jax.tree.map(lambda g: (g * factor).astype(g.dtype), updates)
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)
