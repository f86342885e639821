"""Architecture facts, sharding, remat and LoRA training of the NNX decoder."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lbw_jax.train.models import (NAMED_CONFIGS, LoRAConfig, apply_lora, count_params, init_model,
                          make_mesh, model_shardings, named_config)

TINY = dataclasses.replace(NAMED_CONFIGS["qwen2.5-0.5b"], vocab_size=128, hidden_size=64,
                           intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2,
                           head_dim=16, tie_word_embeddings=False)


@pytest.mark.slow  # a whole-model equivalence: the full suite runs it
@pytest.mark.parametrize("name, published_billions", [
    ("qwen2.5-0.5b", 0.49), ("qwen2.5-1.5b", 1.54), ("qwen2.5-3b", 3.09),
    ("qwen2.5-7b", 7.62), ("qwen2.5-14b", 14.77), ("tinyllama-1.1b", 1.10),
])
def test_parameter_counts_match_published_totals(name, published_billions):
    assert round(count_params(named_config(name)) / 1e9, 2) == published_billions


def test_unknown_named_config():
    with pytest.raises(ValueError, match="unknown model 'qwen9'"):
        named_config("qwen9")


def _loss(model, tokens):
    logits = model(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def _tokens(batch=4, length=16, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, TINY.vocab_size, (batch, length)))


@pytest.mark.slow  # a whole-model equivalence: the full suite runs it
def test_sharded_loss_and_grads_equal_unsharded():
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (see conftest)")
    model = init_model(TINY, seed=1)
    tokens = _tokens()
    loss, grads = jax.jit(nnx.value_and_grad(_loss))(model, tokens)

    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    graphdef, state = nnx.split(model)
    shardings = model_shardings(state, mesh)
    sharded = nnx.merge(graphdef, jax.device_put(state, shardings))
    kernel = sharded.layers[0].mlp.gate_proj.kernel[...]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    batch = jax.device_put(tokens, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(("data", "fsdp"), None)))
    with jax.set_mesh(mesh):
        s_loss, s_grads = jax.jit(nnx.value_and_grad(_loss))(sharded, batch)
    np.testing.assert_allclose(s_loss, loss, rtol=1e-5)
    chex.assert_trees_all_close(nnx.state(s_grads), nnx.state(grads), rtol=1e-4, atol=1e-6)


def test_remat_gives_the_same_gradients():
    tokens = _tokens()
    plain = init_model(TINY, seed=2)
    remat = init_model(TINY, seed=2, remat=True)
    g1 = jax.jit(nnx.grad(_loss))(plain, tokens)
    g2 = jax.jit(nnx.grad(_loss))(remat, tokens)
    chex.assert_trees_all_close(nnx.state(g1), nnx.state(g2), rtol=1e-5, atol=1e-7)


def test_segment_ids_isolate_packed_documents():
    model = init_model(TINY, seed=3)
    a, b = _tokens(1, 8, seed=4), _tokens(1, 8, seed=5)
    packed = jnp.concatenate([a, b], axis=1)
    segments = jnp.asarray([[0] * 8 + [1] * 8])
    positions = jnp.asarray([list(range(8)) * 2])
    logits = model(packed, segment_ids=segments, positions=positions)
    np.testing.assert_allclose(logits[:, 8:], model(b), atol=1e-5)


def test_lora_trains_adapters_only_and_keeps_base_out_of_optimizer_state():
    model = init_model(TINY, seed=6)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=("q", "v", "down")))
    base_before = nnx.clone(nnx.state(model, nnx.Not(nnx.LoRAParam)))
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.LoRAParam)
    n_lora = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    assert n_lora == TINY.num_layers * 4 * ((64 + 64) + (64 + 32) + (96 + 64))
    moment_sizes = sum(x.size for x in jax.tree.leaves(optimizer.opt_state))
    assert moment_sizes <= 2 * n_lora + 10   # two Adam moments of the adapters, and counters

    @nnx.jit
    def step(model, optimizer, tokens):
        loss, grads = nnx.value_and_grad(_loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(model, tokens)
        optimizer.update(model, grads)
        return loss

    tokens = _tokens()
    losses = [float(step(model, optimizer, tokens)) for _ in range(5)]
    assert losses[-1] < losses[0]
    chex.assert_trees_all_equal(nnx.state(model, nnx.Not(nnx.LoRAParam)), base_before)


@pytest.mark.slow  # a whole-model equivalence: the full suite runs it
@pytest.mark.parametrize("adapter_dtype", ["float32", "bfloat16"])
def test_lora_adapters_and_their_moments_keep_their_own_dtype_on_a_bf16_base(adapter_dtype):
    model = init_model(TINY, seed=8, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.0, targets=("q", "down"),
                                 param_dtype=adapter_dtype))
    adapters = nnx.state(model, nnx.LoRAParam)
    assert {x.dtype for x in jax.tree.leaves(adapters)} == {jnp.dtype(adapter_dtype)}
    assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Not(nnx.LoRAParam)))} == {
        jnp.dtype(jnp.bfloat16)}
    optimizer = nnx.Optimizer(model, optax.adam(1e-5), wrt=nnx.LoRAParam)
    moments = [x for x in jax.tree.leaves(optimizer.opt_state) if x.ndim > 0]
    assert moments and {x.dtype for x in moments} == {jnp.dtype(adapter_dtype)}
    assert model(_tokens(1, 8)).dtype == jnp.float32      # the branch computes in bf16, as the base

    # One Adam step of ~1e-5 on A (|A| up to 1/sqrt(64)): below bf16's resolution (2^-8
    # relative), so a bf16 adapter drops most of it; a float32 one keeps all of it.
    before = nnx.clone(adapters)
    grads = jax.tree.map(jnp.ones_like, adapters)
    optimizer.update(model, grads)
    a_paths = [p for p, _ in nnx.to_flat_state(before) if p[-1] == "lora_a"]
    after = dict(nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)))
    old = dict(nnx.to_flat_state(before))
    changed = np.mean([np.mean(np.asarray(after[p][...] != old[p][...])) for p in a_paths])
    if adapter_dtype == "float32":
        assert changed > 0.99
    else:
        assert changed < 0.5


def test_bad_lora_config():
    with pytest.raises(ValueError, match=r"unknown \['attn'\]"):
        LoRAConfig(targets=("q", "attn"))
    with pytest.raises(ValueError, match="rank=0"):
        LoRAConfig(rank=0)
    with pytest.raises(ValueError, match="param_dtype='float64'"):
        LoRAConfig(param_dtype="float64")


def test_lora_dropout_only_with_a_key():
    model = init_model(TINY, seed=7)
    apply_lora(model, LoRAConfig(rank=4, alpha=8.0, dropout=0.5, targets=("q", "down")))
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        var[...] = jnp.full(var.shape, 0.05, var.dtype)
    tokens = _tokens(2, 8)
    np.testing.assert_array_equal(model(tokens), model(tokens))
    key = jax.random.key(0)
    with_key = model(tokens, dropout_key=key)
    np.testing.assert_array_equal(with_key, model(tokens, dropout_key=key))
    assert not np.allclose(with_key, model(tokens))
