"""Which attention implementation each configuration gets (docs/gpu.md, Attention).

On a GPU in bf16 the train step must reach cuDNN's fused (flash) attention with the
causal mask type and no mask tensor: training batches are packed windows of documents
separated by EOS, with no padding mask. The GPU is simulated: the backend check and
``jax.nn.dot_product_attention`` are replaced by recorders that run XLA's version."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from train.models import layers
from train.models import NAMED_CONFIGS, init_model
from train.step import make_loss

import dataclasses

TINY = dataclasses.replace(NAMED_CONFIGS["qwen2.5-0.5b"], vocab_size=64, hidden_size=32,
                           intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                           head_dim=8)


@pytest.fixture
def calls(monkeypatch):
    seen = []
    real = jax.nn.dot_product_attention

    def record(q, k, v, *, mask=None, is_causal=False, implementation=None, **kw):
        seen.append({"implementation": implementation, "mask": mask is not None,
                     "is_causal": is_causal, "dtype": q.dtype})
        return real(q, k, v, mask=mask, is_causal=is_causal, implementation=None, **kw)

    monkeypatch.setattr(layers.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(layers.jax.nn, "dot_product_attention", record)
    return seen


@pytest.mark.parametrize("scan", [False, True])
def test_the_bf16_train_step_reaches_cudnn_causal_attention_without_a_mask(calls, scan):
    model = init_model(TINY, dtype=jnp.bfloat16, scan_layers=scan)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 17)))
    jax.make_jaxpr(jax.grad(make_loss(graphdef)))(params, frozen, tokens)
    assert calls and all(c == {"implementation": "cudnn", "mask": False, "is_causal": True,
                               "dtype": jnp.bfloat16} for c in calls)


def test_float32_and_masked_calls(calls):
    tokens = jnp.ones((1, 8), jnp.int32)
    init_model(TINY)(tokens)                                   # float32: cuDNN has no fp32 path
    assert calls[-1]["implementation"] is None
    bf16 = init_model(TINY, dtype=jnp.bfloat16)
    bf16(tokens, segment_ids=jnp.asarray([[0] * 4 + [1] * 4]))  # packed with segment ids
    assert calls[-1] == {"implementation": "cudnn", "mask": True, "is_causal": False,
                         "dtype": jnp.bfloat16}
