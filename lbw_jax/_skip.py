"""The update a skipped step returns: zeros shaped like the inner optimizer's output."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def zero_updates(inner, updates, inner_state, params, extra_args):
    """Zeros shaped (and typed) like ``inner``'s updates, which may differ in dtype
    from the gradients; only shapes are traced, nothing of ``inner`` is computed."""
    shapes = jax.eval_shape(lambda: inner.update(updates, inner_state, params, **extra_args)[0])
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
