"""``scaled_lr``: an optimizer that takes the guard's scale as a multiplier of its own
learning rate, for optimizers whose state depends on the step they take.

``lbw_guard`` normally multiplies the inner optimizer's output by its scale. For AdamW
that is exactly AdamW at ``lr * scale``. It is not for an optimizer whose state assumes
that its own output was applied:

* D-Adaptation and Prodigy weight their step-size estimate by the learning rate they
  ran at; a scale applied outside is invisible to that weighting.
* Schedule-Free keeps two sequences and returns the move of their interpolation; a
  scaled move leaves the parameters off the point its state describes.
* Mechanic rebuilds the parameters from its anchor ``x0`` and its accumulated updates,
  so it undoes a scaled step on the next one.

``scaled_lr(factory, learning_rate, **kwargs)`` builds ``factory(learning_rate=lr_t *
lr_scale, **kwargs)`` at every step, through ``optax.inject_hyperparams``: ``lr_t`` is
``learning_rate`` (a number or a schedule of the optimizer's own step count) and
``lr_scale`` is an extra argument of ``update`` (1 when absent). Under
``lbw_guard(..., scale_inside=True)`` the guard passes its scale as ``lr_scale``, so the
guarded optimizer is, step for step, the bare optimizer at ``learning_rate * scale``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

LR_SCALE = "lr_scale"   # the extra argument of ``update`` that carries the scale


class ScaledLRState(NamedTuple):
    """State of ``scaled_lr`` (its type marks where the guard's scale is taken).

    Attributes:
      inner_state: the ``optax.inject_hyperparams`` state of the optimizer; its ``count``
        is the step of ``learning_rate``'s schedule, and ``hyperparams["learning_rate"]``
        the learning rate of the last update, ``lr_t * lr_scale``.
    """

    inner_state: Any


def scaled_lr(factory: Callable[..., optax.GradientTransformation], learning_rate,
              **kwargs) -> optax.GradientTransformationExtraArgs:
    """``factory(learning_rate=learning_rate_t * lr_scale, **kwargs)`` with the scale an
    extra argument of ``update``.

    Args:
      factory: an optax optimizer factory taking ``learning_rate`` (``optax.adamw``,
        ``optax.contrib.dadapt_adamw``, ``optax.contrib.schedule_free_adamw``...).
      learning_rate: a number or a schedule (of this optimizer's own update count).
      **kwargs: the factory's other arguments; they are static, never injected.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` takes
      ``lr_scale=`` (a positive scalar, default 1) and forwards every other extra
      argument (``value=``) to the optimizer.
    """
    if not callable(factory):
        raise TypeError(f"scaled_lr: factory must be an optimizer factory, got {factory!r}")
    if "learning_rate" in kwargs:
        raise TypeError("scaled_lr: give learning_rate once, as the second argument")
    first = learning_rate(0) if callable(learning_rate) else learning_rate
    injected = optax.inject_hyperparams(factory, static_args=tuple(kwargs))(
        learning_rate=jnp.asarray(first, jnp.float32), **kwargs)

    def init_fn(params):
        return ScaledLRState(inner_state=injected.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        scale = jnp.asarray(extra_args.pop(LR_SCALE, 1.0), jnp.float32)
        inner = state.inner_state
        base = learning_rate(inner.count) if callable(learning_rate) else learning_rate
        lr = jnp.asarray(base, jnp.float32) * scale
        old = inner.hyperparams["learning_rate"]
        # A numeric hyperparameter is read from the state at every update: setting it
        # there is how inject_hyperparams takes a value computed outside.
        inner = inner._replace(hyperparams={**inner.hyperparams,
                                            "learning_rate": lr.astype(jnp.asarray(old).dtype)})
        new_updates, inner = injected.update(updates, inner, params, **extra_args)
        return new_updates, ScaledLRState(inner_state=inner)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def find_scaled_lr(state) -> list[ScaledLRState]:
    """Every ``ScaledLRState`` in an optimizer state, wherever it nests."""
    is_scaled = lambda x: isinstance(x, ScaledLRState)
    return [s for s in jax.tree.leaves(state, is_leaf=is_scaled) if is_scaled(s)]
