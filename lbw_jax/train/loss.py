"""Next-token cross-entropy without materialising the logits of the whole batch.

For a 152k vocabulary the logits dominate a small model's memory: 8 x 1024 tokens of
float32 logits are 5 GB, and plain autodiff keeps them (and their gradient) alive
between the forward and the backward pass. Here the sequence is split into chunks and
a ``lax.scan`` runs the LM-head matmul and the cross-entropy one chunk at a time:

* ``mean_nll`` (the training loss) is a ``jax.custom_vjp`` whose forward pass also
  forms each chunk's gradient (``softmax - onehot``) while its logits are at hand, and
  keeps only the gradient of the hidden states [B, T, D] and the accumulated gradient
  of the head [D, V] for the backward pass. No logits survive a chunk, and none are
  recomputed: the head's FLOPs are the unchunked loss's, so MFU is not diluted.
  The price is the head-gradient accumulator's memory traffic ([D, V] float32 read
  and written per chunk): on a GPU, chunks below ~1,000 tokens make that matmul
  memory-bound, so the GPU configs use 4,096-token chunks.
* ``token_nll`` (evaluation) returns the per-token loss, chunk by chunk, under
  ``jax.checkpoint`` so that differentiating it is memory-safe too.

Per token the arithmetic is the unchunked loss's: the matmul in the compute dtype,
its result cast to float32, ``log_softmax``, and a float32 gradient cast back to the
compute dtype before the matmuls of the backward pass.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from lbw_jax.train.models.sharding import constrain


# ``chunk_tokens=AUTO``: chunks whose float32 logits take at most this many bytes.
AUTO, FULL = 0, -1
AUTO_CHUNK_BYTES = 256 * 2 ** 20


def resolve_chunk_tokens(chunk_tokens: int, vocab_size: int) -> int:
    """Tokens per chunk for the setting ``chunk_tokens``: itself when positive; for
    ``AUTO`` (0) as many as keep a chunk's float32 logits within ``AUTO_CHUNK_BYTES``
    (a 152k vocabulary: 441 tokens; a 4k one: 16,384, so small models never chunk);
    for ``FULL`` (-1), all tokens at once (returned as 0)."""
    if chunk_tokens == FULL:
        return 0
    if chunk_tokens == AUTO:
        return max(1, AUTO_CHUNK_BYTES // (4 * vocab_size))
    if chunk_tokens < FULL:
        raise ValueError(f"chunk_tokens={chunk_tokens}: a token count, 0 (auto) or -1 (full logits)")
    return chunk_tokens


def chunk_positions(batch: int, length: int, chunk_tokens: int) -> int:
    """Sequence positions per chunk: at most ``chunk_tokens`` tokens of the [batch, length]
    block (at least one position), balanced so that the last chunk is nearly full (no
    chunk computes much padding); ``chunk_tokens <= 0``: the whole sequence."""
    if chunk_tokens <= 0:
        return length
    widest = max(1, min(length, chunk_tokens // batch))
    chunks = -(-length // widest)
    return -(-length // chunks)


def _logits(hidden, head):
    return constrain((hidden @ head).astype(jnp.float32), ("batch", "length", "act_vocab"))


def _chunked(hidden, labels, c):
    """[B, T, ...] -> [n, B, c, ...] chunks along the sequence (so the batch axis keeps
    its sharding), the last one padded; and the mask of real positions [n, B, c]."""
    b, t = labels.shape
    pad = (-t) % c
    mask = jnp.pad(jnp.ones((b, t), jnp.float32), ((0, 0), (0, pad)))
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    labels = jnp.pad(labels, ((0, 0), (0, pad)))
    n = (t + pad) // c
    split = lambda x: x.reshape(b, n, c, *x.shape[2:]).swapaxes(0, 1)
    return split(hidden), split(labels), split(mask)


def _unchunked(x, t):
    n, b, c = x.shape[:3]
    return x.swapaxes(0, 1).reshape(b, n * c, *x.shape[3:])[:, :t]


def token_nll(hidden: jax.Array, head: jax.Array, labels: jax.Array, *,
              chunk_tokens: int = AUTO) -> jax.Array:
    """Per-token negative log-likelihood [B, T] (float32) of ``labels`` [B, T] under
    logits ``hidden [B, T, D] @ head [D, V]``, ``chunk_tokens`` tokens at a time
    (``resolve_chunk_tokens``; rounded to whole sequence positions)."""
    b, t, _ = hidden.shape
    c = chunk_positions(b, t, resolve_chunk_tokens(chunk_tokens, head.shape[-1]))
    nll = lambda h, head, y: optax.softmax_cross_entropy_with_integer_labels(_logits(h, head), y)
    if c >= t:
        return nll(hidden, head, labels)
    hs, ys, _ = _chunked(hidden, labels, c)
    one_chunk = jax.checkpoint(nll)
    _, out = jax.lax.scan(lambda _, xs: (None, one_chunk(xs[0], head, xs[1])), None, (hs, ys))
    return _unchunked(out, t)


def mean_nll(hidden: jax.Array, head: jax.Array, labels: jax.Array, *,
             chunk_tokens: int = AUTO) -> jax.Array:
    """The mean of ``token_nll`` over all tokens, with the fused chunked gradient
    described in the module docstring (a single chunk: plain autodiff)."""
    b, t, _ = hidden.shape
    c = chunk_positions(b, t, resolve_chunk_tokens(chunk_tokens, head.shape[-1]))
    if c >= t:
        return token_nll(hidden, head, labels, chunk_tokens=FULL).mean()
    return _fused_mean_nll(hidden, head, labels, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _fused_mean_nll(hidden, head, labels, c):
    return token_nll(hidden, head, labels, chunk_tokens=c * hidden.shape[0]).mean()


def _fused_forward(hidden, head, labels, c):
    b, t, _ = hidden.shape
    scale = 1.0 / (b * t)   # d mean / d nll, applied in float32 as autodiff would
    hs, ys, masks = _chunked(hidden, labels, c)

    def chunk(d_head, xs):
        h, y, mask = xs
        logits = _logits(h, head)
        lse = jax.nn.logsumexp(logits, axis=-1)
        nll = (lse - jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]) * mask
        # One elementwise pass over the logits, which die here: XLA reuses their buffer.
        onehot = y[..., None] == jnp.arange(logits.shape[-1])
        d_logits = ((jnp.exp(logits - lse[..., None]) - onehot) * (scale * mask)[..., None])
        d_logits = d_logits.astype(head.dtype)
        d_h = jnp.einsum("bcv,dv->bcd", d_logits, head)
        d_head = d_head + jnp.einsum("bcd,bcv->dv", h, d_logits, preferred_element_type=jnp.float32)
        return d_head, (jnp.sum(nll), d_h)

    d_head, (sums, d_hs) = jax.lax.scan(chunk, jnp.zeros(head.shape, jnp.float32), (hs, ys, masks))
    loss = jnp.sum(sums) * scale
    return loss, (_unchunked(d_hs, t).astype(hidden.dtype), d_head.astype(head.dtype), labels)


def _fused_backward(c, residuals, g):
    d_hidden, d_head, labels = residuals
    zero_labels = jnp.zeros(labels.shape, jax.dtypes.float0)   # integer input: no gradient
    return ((g * d_hidden.astype(jnp.float32)).astype(d_hidden.dtype),
            (g * d_head.astype(jnp.float32)).astype(d_head.dtype), zero_labels)


_fused_mean_nll.defvjp(_fused_forward, _fused_backward)
