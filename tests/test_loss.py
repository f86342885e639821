"""The chunked cross-entropy (lbw_jax/train/loss.py) against the full-logits loss it replaces."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lbw_jax.train.loss import AUTO, FULL, mean_nll, resolve_chunk_tokens, token_nll
from lbw_jax.train.models import NAMED_CONFIGS, init_model
from lbw_jax.train.step import make_loss

SMALL = dataclasses.replace(NAMED_CONFIGS["qwen2.5-0.5b"], vocab_size=300, hidden_size=32,
                            intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                            head_dim=8)


def _full_logits_loss(graphdef):
    """The loss as it was before chunking: all the logits, then optax's cross-entropy."""
    def loss(params, frozen, tokens, dropout_key=None):
        model = nnx.merge(graphdef, params, frozen)
        logits = model(tokens[:, :-1], dropout_key=dropout_key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
    return loss


def _tokens(shape=(4, 24), seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, SMALL.vocab_size, shape))


# 4 tokens: 1 position a chunk; 20: 5 positions, 28: 6 (balanced), both with a ragged end;
# large: one chunk (plain autodiff).
@pytest.mark.parametrize("chunk_tokens, tied", [(4, True), (20, False), (28, True), (10_000, False)])
def test_loss_and_gradients_equal_the_full_logits_loss(chunk_tokens, tied):
    model = init_model(dataclasses.replace(SMALL, tie_word_embeddings=tied), seed=0,
                       scan_layers=True)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    tokens = _tokens(seed=1)
    want_loss, want_grads = jax.jit(jax.value_and_grad(_full_logits_loss(graphdef)))(params, frozen, tokens)
    loss, grads = jax.jit(jax.value_and_grad(make_loss(graphdef, chunk_tokens=chunk_tokens)))(
        params, frozen, tokens)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=0)
    chex.assert_trees_all_close(grads, want_grads, rtol=1e-5, atol=1e-7)


def test_gradients_follow_the_upstream_cotangent():
    """The fused backward pass scales what it formed in the forward pass by the incoming
    gradient: d(3 * loss) is 3 * d(loss), and a loss that is not differentiated has none."""
    rng = np.random.default_rng(2)
    hidden = jnp.asarray(rng.normal(size=(2, 9, 16)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(16, 50)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 50, (2, 9)))
    full = lambda h, w: 3.0 * token_nll(h, w, labels, chunk_tokens=FULL).mean()
    chunked = lambda h, w: 3.0 * mean_nll(h, w, labels, chunk_tokens=4)
    chex.assert_trees_all_close(jax.grad(chunked, argnums=(0, 1))(hidden, head),
                                jax.grad(full, argnums=(0, 1))(hidden, head), rtol=1e-5, atol=1e-7)


def test_per_token_loss_is_chunk_independent():
    rng = np.random.default_rng(3)
    hidden = jnp.asarray(rng.normal(size=(3, 11, 8)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(8, 40)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 40, (3, 11)))
    want = token_nll(hidden, head, labels, chunk_tokens=FULL)
    for chunk_tokens in (3, 6, 12, 30):
        np.testing.assert_allclose(token_nll(hidden, head, labels, chunk_tokens=chunk_tokens),
                                   want, rtol=1e-6)


@pytest.mark.slow  # a whole-model equivalence: the full suite runs it
def test_bf16_compute_matches_the_full_logits_loss_to_bf16_rounding():
    model = init_model(SMALL, seed=4, scan_layers=True, dtype=jnp.bfloat16)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    tokens = _tokens(seed=5)
    want, want_grads = jax.jit(jax.value_and_grad(_full_logits_loss(graphdef)))(params, frozen, tokens)
    loss, grads = jax.jit(jax.value_and_grad(make_loss(graphdef, chunk_tokens=8)))(params, frozen, tokens)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, want, rtol=1e-3)
    for got, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        assert float(jnp.linalg.norm(got - ref)) <= 0.02 * float(jnp.linalg.norm(ref)) + 1e-8


def test_auto_chunks_only_large_vocabularies():
    assert resolve_chunk_tokens(AUTO, 151_936) == 441        # 256 MiB of float32 logits
    assert resolve_chunk_tokens(AUTO, 4096) == 16_384        # the default run: never chunked
    assert resolve_chunk_tokens(FULL, 151_936) == 0
    assert resolve_chunk_tokens(512, 151_936) == 512
    with pytest.raises(ValueError, match="chunk_tokens=-2"):
        resolve_chunk_tokens(-2, 100)


def test_the_chunked_step_never_holds_the_full_logits():
    """XLA's buffer plan for the loss and its gradient: the temporaries of the chunked
    loss stay below one copy of the full float32 logits; the full loss's exceed it."""
    b, t, d, v = 4, 256, 16, 8192
    args = (jax.ShapeDtypeStruct((b, t, d), jnp.float32), jax.ShapeDtypeStruct((d, v), jnp.float32),
            jax.ShapeDtypeStruct((b, t), jnp.int32))
    logits_bytes = b * t * v * 4

    def temp_bytes(chunk_tokens):
        grad = jax.value_and_grad(lambda h, w, y: mean_nll(h, w, y, chunk_tokens=chunk_tokens),
                                  argnums=(0, 1))
        return jax.jit(grad).lower(*args).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(FULL) > logits_bytes
    assert temp_bytes(64) < logits_bytes / 4
