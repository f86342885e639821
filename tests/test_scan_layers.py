"""Layers under nnx.scan and the remat policies: the same function, the same gradients,
LoRA and dropout included, as the per-layer model."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lbw_jax.train.models import NAMED_CONFIGS, LoRAConfig, apply_lora, init_model, merged_params
from lbw_jax.train.models.decoder import remat_policy_name
from lbw_jax.train.models.layout import copy_into, stacked_from_per_layer

TINY = dataclasses.replace(NAMED_CONFIGS["qwen2.5-0.5b"], vocab_size=96, hidden_size=32,
                           intermediate_size=48, num_layers=3, num_heads=4, num_kv_heads=2,
                           head_dim=8, tie_word_embeddings=False)


def _tokens(seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, TINY.vocab_size, (2, 12)))


def _loss(model, tokens, key=None):
    logits = model(tokens[:, :-1], dropout_key=key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def _scanned_copy(per_layer, **kwargs):
    """A scanned model holding exactly ``per_layer``'s weights (stacked)."""
    scanned = init_model(TINY, seed=99, scan_layers=True, **kwargs)
    if getattr(per_layer, "lora_config", None) is not None:
        apply_lora(scanned, per_layer.lora_config)
    flat = {p: v[...] for p, v in nnx.to_flat_state(nnx.state(per_layer))}
    copy_into(scanned, stacked_from_per_layer(flat, TINY.num_layers))
    return scanned


def _stacked_grads(grads):
    flat = {p: v[...] for p, v in nnx.to_flat_state(nnx.state(grads))}
    return stacked_from_per_layer(flat, TINY.num_layers)


def test_stacked_weights_carry_the_layers_axis():
    model = init_model(TINY, scan_layers=True)
    kernel = model.layers.mlp.gate_proj.kernel
    assert kernel.shape == (3, 32, 48)
    assert nnx.get_partition_spec(nnx.state(model)).layers.mlp.gate_proj.kernel.get_value() == \
        jax.sharding.PartitionSpec("layers", "embed", "mlp")
    # Each layer is initialised from its own key.
    assert not np.allclose(kernel[...][0], kernel[...][1])


@pytest.mark.parametrize("remat", ["none", "full", "dots_saveable"])
def test_scanned_model_equals_the_per_layer_model(remat):
    per_layer = init_model(TINY, seed=1)
    scanned = _scanned_copy(per_layer, remat=remat)
    tokens = _tokens(1)
    np.testing.assert_allclose(scanned(tokens), per_layer(tokens), atol=1e-5, rtol=0)
    want = _stacked_grads(jax.jit(nnx.grad(_loss))(per_layer, tokens))
    got = {p: v[...] for p, v in nnx.to_flat_state(nnx.state(jax.jit(nnx.grad(_loss))(scanned, tokens)))}
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # a whole-model equivalence: the full suite runs it
def test_lora_and_dropout_under_scan_equal_the_per_layer_model():
    per_layer = apply_lora(init_model(TINY, seed=2), LoRAConfig(rank=4, dropout=0.3))
    for _, var in nnx.to_flat_state(nnx.state(per_layer, nnx.LoRAParam)):  # non-zero B
        var[...] = jnp.asarray(np.random.default_rng(3).normal(0, 0.1, var.shape), jnp.float32)
    scanned = _scanned_copy(per_layer, remat="full")
    assert scanned.layers.self_attn.q_proj.lora_a.shape == (3, 32, 4)
    tokens, key = _tokens(2), jax.random.key(7)
    # Layer i's dropout key is the same in both layouts, so the masks are too.
    loss = nnx.jit(_loss)
    np.testing.assert_allclose(loss(scanned, tokens, key), loss(per_layer, tokens, key), rtol=1e-6)
    lora_grad = nnx.jit(lambda m: nnx.grad(_loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(m, tokens, key))
    got = {p: v[...] for p, v in nnx.to_flat_state(nnx.state(lora_grad(scanned)))}
    # rtol 1e-4: the full remat's recomputation sums in another order (seen: 2e-5).
    chex.assert_trees_all_close(got, _stacked_grads(lora_grad(per_layer)), rtol=1e-4, atol=1e-6)
    merged = stacked_from_per_layer(merged_params(per_layer), TINY.num_layers)
    chex.assert_trees_all_close(merged_params(scanned), merged, rtol=1e-6, atol=1e-7)


def test_remat_policy_names():
    assert remat_policy_name(True) == "full" and remat_policy_name(False) == "none"
    with pytest.raises(ValueError, match="model.remat='some'; choose from"):
        remat_policy_name("some")


@pytest.mark.slow  # a whole-model equivalence: the full suite runs it
@pytest.mark.parametrize("policy", ["reflex", "reflex_pro", "governor"])
def test_the_guard_reads_scanned_layers_as_per_layer_tensors(policy):
    """The reference laws take the largest per-tensor mean square: with scanned layers the
    guard splits each stacked leaf into its layers, so the scale and regime sequences are
    those of the per-layer model, step for step, spikes included."""
    import lbw_jax
    from lbw_jax.train.configs.base import base_config
    from lbw_jax.train.optim import build_optimizer

    cfg = base_config()
    cfg.optimizer.policy = policy
    if policy != "governor":
        cfg.optimizer[policy].stats_every = 1
    per_layer = nnx.state(init_model(TINY, seed=5), nnx.Param)
    flat = {p: v[...] for p, v in nnx.to_flat_state(per_layer)}
    scanned = nnx.state(init_model(TINY, seed=5, scan_layers=True), nnx.Param)
    stacked = stacked_from_per_layer(flat, TINY.num_layers)
    scanned = nnx.from_flat_state([(p, v.replace(stacked[p])) for p, v in nnx.to_flat_state(scanned)])
    tx = build_optimizer(cfg)
    states = [tx.init(per_layer), tx.init(scanned)]
    step = jax.jit(lambda g, s, p, loss: tx.update(g, s, p, value=loss))
    rng = np.random.default_rng(0)
    for t in range(12):
        # One layer's MLP gradient spikes now and then: only per-tensor statistics see it.
        grads = {p: jnp.asarray(rng.normal(0, 1e-3, x.shape), jnp.float32) for p, x in flat.items()}
        if t in (4, 9):
            key = ("layers", 1, "mlp", "down_proj", "kernel")
            grads[key] = grads[key] * 30.0
        g_layer = nnx.from_flat_state([(p, v.replace(grads[p])) for p, v in nnx.to_flat_state(per_layer)])
        g_stack_flat = stacked_from_per_layer(grads, TINY.num_layers)
        g_stack = nnx.from_flat_state([(p, v.replace(g_stack_flat[p])) for p, v in nnx.to_flat_state(scanned)])
        loss = jnp.float32(3.0 + 0.1 * (t % 3))
        _, states[0] = step(g_layer, states[0], per_layer, loss)
        _, states[1] = step(g_stack, states[1], scanned, loss)
        a, b = lbw_jax.telemetry(states[0]), lbw_jax.telemetry(states[1])
        np.testing.assert_allclose(b["multiplier"], a["multiplier"], rtol=1e-5, err_msg=f"step {t}")
        assert int(b["regime"]) == int(a["regime"]), t
    assert lbw_jax.telemetry(states[0])["interventions"] > 0 or policy == "governor"
