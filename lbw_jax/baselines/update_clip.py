"""Update clipping as in StableAdamW (Wortsman et al., 2023, "Stable and low-precision
training for large-scale vision-language models").

Per tensor, the step is divided by ``max(1, RMS)`` with
``RMS = sqrt(mean(g**2 / v_hat))``: the root mean square of the gradient measured
in units of Adam's second-moment estimate ``v_hat`` (bias-corrected) from *before*
this step. When a gradient arrives much larger than the moment estimate expects
(the estimate lags behind a sudden change, the usual cause of an Adam blow-up),
the step of that tensor is shrunk; in the calm, RMS is near or below 1 and the step
is Adam's own.

It is a wrapper, not a gradient transform chained ahead of Adam, because it needs
both the raw gradient and Adam's moment estimate, and scales Adam's *output*
(weight decay included, as StableAdamW scales the learning rate of both).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lbw_jax import knobs


class UpdateClipState(NamedTuple):
    """State of ``update_clip``.

    Attributes:
      clipped: how many steps shrank at least one tensor.
      last_factor: the smallest per-tensor multiplier of the last step (1: nothing shrunk).
      inner_state: the inner optimizer's state.
    """

    clipped: jax.Array
    last_factor: jax.Array
    inner_state: Any


def _adam_state(inner_state):
    """The first ``ScaleByAdamState`` inside ``inner_state`` (count, mu, nu)."""
    found = [s for s in jax.tree.leaves(inner_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
             if isinstance(s, optax.ScaleByAdamState)]
    if not found:
        raise ValueError("update_clip: the inner optimizer has no optax.ScaleByAdamState (the Adam "
                         "family's second moment nu); wrap optax.adam or optax.adamw.")
    return found[0]


def update_clip(inner: optax.GradientTransformation, *, b2: float = 0.95, eps: float = 1e-16,
                include_current: bool = False) -> optax.GradientTransformationExtraArgs:
    """Wraps an Adam-family optimizer with StableAdamW's per-tensor update clipping.

    Args:
      inner: ``optax.adamw(lr, b2=...)`` or another optimizer holding an
        ``optax.ScaleByAdamState``.
      b2: the inner optimizer's second-moment decay, for the bias correction of
        ``nu`` (pass the same value as the inner optimizer's ``b2``).
      eps: the floor of ``v_hat`` in the division (StableAdamW's eps squared).
      include_current: False (the default): ``v_hat`` is the estimate from before this
        step, so a gradient is judged against what the past led Adam to expect; on the
        first step there is no estimate yet and nothing is clipped. True: ``v_hat``
        already folds in this gradient (as the authors' reference code does), which
        bounds RMS by 1/sqrt(1 - b2) and so clips a spike less.

    Non-finite gradients pass through: stopping them is the guard's job.
    """
    b2 = knobs.real("update_clip", "b2", b2, low=0.0, high=1.0, high_open=True)
    eps = knobs.real("update_clip", "eps", eps, low=0.0, low_open=True)
    include_current = knobs.boolean("update_clip", "include_current", include_current)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        inner_state = inner.init(params)
        _adam_state(inner_state)  # fails now, naming the problem, rather than at the first update
        return UpdateClipState(clipped=jnp.zeros([], jnp.int32), last_factor=jnp.ones([], jnp.float32),
                               inner_state=inner_state)

    def update_fn(updates, state, params=None, **extra_args):
        adam = _adam_state(state.inner_state)
        seen = adam.count + int(include_current)  # steps folded into the estimate
        correction = 1.0 - jnp.asarray(b2, jnp.float32) ** seen.astype(jnp.float32)

        def factor(g, nu):
            g2 = jnp.square(g.astype(jnp.float32))
            nu = nu.astype(jnp.float32)
            if include_current:
                nu = b2 * nu + (1.0 - b2) * g2
            v_hat = nu / jnp.where(seen > 0, correction, 1.0)
            rms = jnp.sqrt(jnp.mean(g2 / jnp.maximum(v_hat, eps)))
            return jnp.where(seen > 0, 1.0 / jnp.maximum(1.0, rms), 1.0)

        factors = jax.tree.map(factor, updates, adam.nu)
        inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        scaled = jax.tree.map(lambda u, f: (u * f).astype(u.dtype), inner_updates, factors)
        smallest = jnp.min(jnp.stack(jax.tree.leaves(factors)))
        return scaled, UpdateClipState(clipped=state.clipped + (smallest < 1.0).astype(jnp.int32),
                                       last_factor=smallest, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
