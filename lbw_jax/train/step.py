"""The training step that ``lbw_jax.train.run`` and the stress suite share: the loss, and one
optimizer step over (possibly accumulated) micro-batches.

Both callers build the step from these functions and the optimizer from
``lbw_jax.train.optim.build_optimizer``, so the stress suite measures exactly the step that
users run; they differ only in what they wrap around it (sharding and a schedule
for ``lbw_jax.train.run``; vmapped cells, a traced learning rate and injected faults for
the suite).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lbw_jax.train.loss import AUTO, mean_nll


def make_loss(graphdef, *, chunk_tokens: int = AUTO) -> Callable:
    """``loss(params, frozen, tokens, dropout_key=None)``: mean next-token cross-entropy
    of the model ``graphdef`` on ``tokens`` [B, T+1], in float32 whatever the compute
    dtype (bf16 logits would round the loss and its gradient). The logits are formed
    ``chunk_tokens`` tokens at a time (``lbw_jax.train.loss.mean_nll``: 0 auto, -1 all at once)."""

    def loss(params, frozen, tokens, dropout_key=None):
        model = nnx.merge(graphdef, params, frozen)
        hidden = model.hidden_states(tokens[:, :-1], dropout_key=dropout_key)
        return mean_nll(hidden, model.head(), tokens[:, 1:], chunk_tokens=chunk_tokens)

    return loss


def train_step(loss_fn, tx: optax.GradientTransformationExtraArgs, params, opt_state, frozen,
               batch, *, step_key=None, grad_factor=None, lr_factor=None, extra_args=None):
    """One optimizer step on ``batch`` [micro-batches, B, T+1].

    The gradients of the micro-batches are averaged (a scan, so memory holds one
    micro-batch's activations); the loss reaches ``tx`` as ``value=``, and the same loss as a
    function of the parameters as ``value_fn=`` (forward passes only, the same micro-batches
    and dropout keys), the extra argument optax's line searches take: the governor's room
    probe evaluates it at one point along the step (docs/governor.md).

    Args:
      step_key: a key for dropout (folded with the micro-batch index); None: no dropout.
      grad_factor: multiplies the averaged gradient before the update (the stress
        suite's injected gradient faults); None: untouched.
      lr_factor: multiplies the optimizer's update (``lbw_jax.train.run``'s LR factor
        after a rollback, and its injected LR faults: for AdamW, whose update is
        ``-lr * (direction + weight_decay * params)``, exactly a scaled LR); None: untouched.
      extra_args: further extra arguments of ``tx.update`` (the signal study's held batch).

    Returns:
      ``(params, opt_state, metrics)`` with metrics ``loss`` and ``grad_norm`` (of the
      gradient the optimizer saw).
    """
    grad_fn = jax.value_and_grad(loss_fn)

    def micro(carry, inputs):
        grads_sum, loss_sum = carry
        tokens, index = inputs
        loss, grads = grad_fn(params, frozen, tokens, keys(index))
        return (jax.tree.map(jnp.add, grads_sum, grads), loss_sum + loss), None

    n = batch.shape[0]
    keys = lambda index: None if step_key is None else jax.random.fold_in(step_key, index)

    def value_fn(at_params):
        # The training loss of this batch at other parameters: unused (and compiled away) unless
        # the optimizer evaluates it, as the governor's probe does inside a lax.cond.
        def one(total, inputs):
            tokens, index = inputs
            return total + loss_fn(at_params, frozen, tokens, keys(index)), None
        total, _ = jax.lax.scan(one, jnp.zeros([], jnp.float32), (batch, jnp.arange(n)))
        return total / n

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, loss), _ = jax.lax.scan(micro, (zeros, jnp.zeros([], jnp.float32)), (batch, jnp.arange(n)))
    grads = jax.tree.map(lambda g: g / n, grads)
    loss = loss / n
    if grad_factor is not None:
        grads = jax.tree.map(lambda g: (g * grad_factor).astype(g.dtype), grads)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss, value_fn=value_fn,
                                   **(extra_args or {}))
    if lr_factor is not None:
        updates = jax.tree.map(lambda u: (u * lr_factor).astype(u.dtype), updates)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}
