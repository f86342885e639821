"""Which attention implementation each configuration gets (docs/gpu.md, Attention), and
the ``model.attention`` switch (auto | cudnn | xla).

On a GPU in bf16 the train step must reach cuDNN's fused (flash) attention with the
causal mask type and no mask tensor: training batches are packed windows of documents
separated by EOS, with no padding mask. The GPU is simulated: the backend check and
``jax.nn.dot_product_attention`` are replaced by recorders that run XLA's version."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lbw_jax.train.models import layers
from lbw_jax.train.models import NAMED_CONFIGS, init_model
from lbw_jax.train.step import make_loss

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


def test_model_attention_xla_is_xla_even_where_auto_would_pick_cudnn(calls):
    model = init_model(TINY, dtype=jnp.bfloat16, scan_layers=True, attention="xla")
    model(jnp.ones((1, 8), jnp.int32))
    assert calls and {c["implementation"] for c in calls} == {"xla"}
    cudnn = init_model(TINY, dtype=jnp.bfloat16, attention="cudnn")
    cudnn(jnp.ones((1, 8), jnp.int32))
    assert calls[-1]["implementation"] == "cudnn"


def test_model_attention_cudnn_fails_at_construction_where_it_cannot_run():
    # The real backend of the test run (a CPU): no silent fallback, one clear error each.
    with pytest.raises(ValueError, match="model.attention='cudnn' needs a GPU"):
        init_model(TINY, dtype=jnp.bfloat16, attention="cudnn")
    with pytest.raises(ValueError, match="needs bfloat16 or float16 compute"):
        init_model(TINY, attention="cudnn")
    with pytest.raises(ValueError, match="model.attention='flash'; choose from auto, cudnn, xla"):
        init_model(TINY, attention="flash")


def test_model_attention_is_checked_with_the_config():
    from lbw_jax.train.configs.base import base_config
    from lbw_jax.train.errors import ConfigError
    from lbw_jax.train.validate import check_config

    cfg = base_config()
    cfg.model.attention = "flash"
    with pytest.raises(ConfigError, match=r"model.attention='flash' is invalid; allowed: auto \| cudnn \| xla"):
        check_config(cfg)
    cfg.model.attention = "cudnn"                        # float32 compute: cuDNN has no kernel
    with pytest.raises(ConfigError, match=r"model.attention='cudnn' needs bfloat16 or float16 "
                                          r"compute \(model.dtype is float32\)"):
        check_config(cfg)
    cfg.model.attention = "xla"
    check_config(cfg)
