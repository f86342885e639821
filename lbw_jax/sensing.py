"""Gradient telemetry: the statistics both reference laws read from raw gradients."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class GradStats(NamedTuple):
    """Statistics of one gradient pytree.

    Attributes:
      grad_ms: the largest per-leaf mean of squares (or their mean over leaves).
      signed_mean: the sum of all gradient entries over the total entry count.
    """

    grad_ms: jax.Array
    signed_mean: jax.Array


@jax.tree_util.register_pytree_node_class
class StackedTensors:
    """A gradient leaf whose first axis stacks separate tensors (one per scanned layer).
    A pytree node around the array, so it passes through jax unchanged (no slice or
    copy is made); ``grad_stats`` takes its per-tensor statistics along the first axis."""

    def __init__(self, array):
        self.array = array

    def tree_flatten(self):
        return (self.array,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        return cls(*children)


def tensor_view(tree, stacked_axes):
    """``tree`` with each stacked leaf marked as ``StackedTensors``, for laws that read
    per-tensor statistics: ``stacked_axes(key_path, leaf)`` says how many leading axes of
    a leaf index separate tensors (0 or 1; 1 for the weights of scanned layers). A model
    whose layers are scanned then yields the statistics of the same model with one
    tensor per layer, as the reference laws define them."""
    def mark(path, leaf):
        k = stacked_axes(path, leaf)
        if k not in (0, 1):
            raise ValueError(f"lbw_guard: stacked_axes gave {k!r} for {jax.tree_util.keystr(path)}; "
                             f"0 or 1 is supported")
        return StackedTensors(leaf) if k and leaf.ndim > 0 else leaf
    return jax.tree_util.tree_map_with_path(mark, tree)


def grad_stats(grads, *, use_max: bool = True) -> GradStats:
    """Reduces a gradient pytree to its telemetry scalars, in float32. A leaf marked
    ``StackedTensors`` counts as the tensors it stacks.

    The reductions are global: on sharded gradients XLA inserts the collectives,
    so the result equals the unsharded one up to summation order.
    """
    nodes = [g for g in jax.tree.leaves(grads, is_leaf=lambda x: isinstance(x, StackedTensors))
             if (g.array if isinstance(g, StackedTensors) else g).size > 0]
    if not nodes:
        raise ValueError("lbw_guard: the gradient pytree has no non-empty leaves to sense.")

    def tensor_ms(node):
        # Upcast inside the reductions: bf16 squares would lose the spike we look for.
        if isinstance(node, StackedTensors):
            g = node.array
            return jnp.mean(jnp.square(g.astype(jnp.float32)), axis=tuple(range(1, g.ndim)))
        return jnp.mean(jnp.square(node.astype(jnp.float32)))[None]

    per_tensor_ms = jnp.concatenate([tensor_ms(n) for n in nodes])
    grad_ms = jnp.max(per_tensor_ms) if use_max else jnp.mean(per_tensor_ms)
    leaves = jax.tree.leaves(grads)
    total = sum(jnp.sum(g.astype(jnp.float32)) for g in leaves)
    count = sum(g.size for g in leaves)
    return GradStats(grad_ms=grad_ms, signed_mean=total / jnp.float32(count))


def all_finite(tree) -> jax.Array:
    """True when every entry of every floating leaf is finite (a scalar bool). Integer,
    boolean and key leaves (step counters, an optimizer state's flags) are always finite,
    so they are passed over rather than compared."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
