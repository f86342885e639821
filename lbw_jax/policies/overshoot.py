"""The governor's per-step stability signal: the overshoot of the last step along itself.

Mechanism 4 of the governor (``use_overshoot``; on by default since v3.0). After an applied step u
(at scale 1, the inner optimizer's proposal) taken from a gradient g, the next gradient g'
tells how far along u the step went against the one-dimensional optimum:

    overshoot = 1 - (g' . u) / (g . u)

0 for a step too small to matter, 1 at the optimum along u, 2 at the edge of stability along
it (a quadratic's curvature x |u|^2 over the slope). It is invariant to the scale of u, so the
law keeps the unscaled proposal (one parameter-sized buffer, ``prev``) and its slope g . u.
Only a descent step (g . u < 0) gives a reading; a step's reading is clipped to
[-over_clip, over_clip] before an EMA (``over_decay``, starting at 1) smooths it.

The signal study (docs/signals.md, part (c)) measured its level at the largest LR that does
not raise the loss: 1.03-1.27 on two settings at every point of training, while that ceiling
fell by 2-8x. So the law reads it against fixed levels:

- **Brake.** While the EMA is above ``brake_above`` the step overshoots past any ceiling measured:
  the scale is cut by (brake_above / EMA) ** over_gain (at most to ``max_cut`` a step).
- **Gated recovery.** The harm control's recovery (x ``recover`` a step) happens only while
  the EMA is below ``recover_below``: the scale climbs back only as far as the step is still
  below the ceiling, instead of into the next blow-up.

The signal folds back far above the ceiling (about 1 again at 16-32x), so the brake must catch
the crossing on the way up; the loss's harm control still catches what it misses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def buffer(params, enabled: bool):
    """The buffer for the last proposal: zeros like ``params``, or () when the mechanism is off."""
    return jax.tree.map(jnp.zeros_like, params) if enabled else ()


def slope(grads, updates) -> jax.Array:
    """g . u in float32, over every leaf (optax.tree.vdot stays in a bf16 tree's precision)."""
    # An element-wise product and a sum keep each leaf's sharding (a vdot ravels the leaf,
    # which gathers a sharded one whole: a full copy of the parameters per device).
    dots = jax.tree.map(lambda g, u: jnp.sum(g.astype(jnp.float32) * u.astype(jnp.float32)), grads, updates)
    return sum(jax.tree.leaves(dots), jnp.zeros([], jnp.float32))


def read(grads, prev, prev_slope, clip: float) -> tuple[jax.Array, jax.Array]:
    """This step's overshoot of the last applied proposal, and whether it is a reading
    (the last step went downhill: its slope was negative)."""
    valid = prev_slope < 0
    ratio = slope(grads, prev) / jnp.where(valid, prev_slope, -1.0)
    return jnp.clip(1.0 - ratio, -clip, clip), valid


def follow(grads, state, decay: float, clip: float) -> tuple[jax.Array, jax.Array]:
    """The overshoot kept and its EMA after this step: ``state``'s (``overshoot``, ``over_ema``)
    moved by this step's reading, or left as they were when it is none."""
    over, valid = read(grads, state.prev, state.prev_slope, clip)
    ema = jnp.where(valid, decay * state.over_ema + (1 - decay) * over, state.over_ema).astype(jnp.float32)
    return jnp.where(valid, over, state.overshoot).astype(jnp.float32), ema


def remember(updates, dtype_like):
    """The proposal kept for the next reading, in the buffer's dtypes."""
    return jax.tree.map(lambda u, b: u.astype(b.dtype), updates, dtype_like)
