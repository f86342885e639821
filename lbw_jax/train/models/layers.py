"""Building blocks of the decoder, each matching its Hugging Face counterpart."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lbw_jax.train.models.config import DecoderConfig
from lbw_jax.train.models.sharding import constrain

_init = nnx.initializers.normal(stddev=0.02)


def partitioned(init, logical_axes):
    """An initializer whose variables carry logical axis names. Placement on a mesh is
    applied afterwards from ``sharding.LOGICAL_AXIS_RULES`` (not eagerly at creation)."""
    return nnx.with_partitioning(init, logical_axes, eager_sharding=False)


class Dense(nnx.Module):
    """``y = x @ kernel (+ bias)`` with kernel [in, out], plus an optional LoRA branch
    ``(alpha / rank) * dropout(x) @ lora_a @ lora_b`` whose weights are ``nnx.LoRAParam``."""

    def __init__(self, in_features: int, out_features: int, *, axes: tuple[str, str],
                 use_bias: bool = False, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        self.dtype = dtype
        self.kernel = nnx.Param(partitioned(_init, axes)(
            rngs.params(), (in_features, out_features), param_dtype))
        self.bias = (nnx.Param(partitioned(nnx.initializers.zeros, (axes[1],))(
            rngs.params(), (out_features,), param_dtype)) if use_bias else None)
        # Placeholders marked as data, so that add_lora may fill them in later.
        self.lora_a = nnx.data(None)
        self.lora_b = nnx.data(None)
        self.lora_dropout = nnx.data(None)
        self.lora_scale = 0.0

    def add_lora(self, rank: int, alpha: float, dropout: float, rngs: nnx.Rngs,
                 param_dtype=jnp.float32):
        """Adds a LoRA branch: A ~ kaiming-uniform as in PEFT, B = 0, so outputs are unchanged.
        The adapters are kept in ``param_dtype`` whatever the kernel's (float32 by default, as
        PEFT keeps them: a bf16 base with bf16 adapters would also hold Adam's moments in
        bf16, whose 8-bit mantissa loses small updates); they compute in ``self.dtype``."""
        # A scanned model's kernel is [layers, in, out]: each layer gets its own branch.
        lead = tuple(self.kernel[...].shape[:-2])
        lead_axes = ("layers",) * len(lead)
        bound = 1.0 / (self.in_features ** 0.5)
        uniform = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)
        self.lora_a = nnx.LoRAParam(partitioned(uniform, lead_axes + (None, "lora_rank"))(
            rngs.params(), lead + (self.in_features, rank), param_dtype))
        self.lora_b = nnx.LoRAParam(partitioned(nnx.initializers.zeros, lead_axes + ("lora_rank", None))(
            rngs.params(), lead + (rank, self.out_features), param_dtype))
        self.lora_scale = alpha / rank
        # Stateless: active only when a call passes a dropout key (training steps).
        self.lora_dropout = nnx.Dropout(dropout) if dropout > 0 else None

    def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        x = x.astype(self.dtype)
        y = x @ self.kernel[...].astype(self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        if self.lora_a is not None:
            h = x
            if self.lora_dropout is not None and dropout_key is not None:
                h = self.lora_dropout(x, deterministic=False, rngs=dropout_key)
            y = y + self.lora_scale * ((h @ self.lora_a[...].astype(self.dtype))
                                       @ self.lora_b[...].astype(self.dtype))
        return y


class RMSNorm(nnx.Module):
    """As Hugging Face's: normalise in float32, cast back, then scale."""

    def __init__(self, dim: int, eps: float, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        self.eps, self.dtype = eps, dtype
        self.scale = nnx.Param(partitioned(nnx.initializers.ones, ("norm",))(
            rngs.params(), (dim,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * normed.astype(self.dtype)


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding in Hugging Face's rotate-half layout. x: [B, T, N, H]."""
    head_dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions[..., None].astype(jnp.float32) * inv_freq          # [B, T, H/2]
    angles = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]      # [B, T, 1, H]
    x1, x2 = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x * jnp.cos(angles).astype(x.dtype) + rotated * jnp.sin(angles).astype(x.dtype))


def _split(key, n):
    return [None] * n if key is None else list(jax.random.split(key, n))


# model.attention: which kernel computes attention. "auto" is cuDNN's fused (flash)
# attention on a GPU in half precision and XLA's elsewhere; "cudnn" insists on cuDNN
# (an error where it cannot run, rather than a silent fallback); "xla" is XLA's on
# every device (the fallback when cuDNN fails on a device, and the reference for
# measuring cuDNN's gain). It changes the kernel, not the function computed.
ATTENTION_CHOICES = ("auto", "cudnn", "xla")


def _half(dtype) -> bool:
    return jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)


def check_attention(choice: str, dtype) -> None:
    """Raises ``ValueError`` for a ``choice`` that no device could run with compute ``dtype``
    (cuDNN's fused attention has fp16/bf16 kernels only). Needs no backend, so configs are
    checked before jax starts (a multi-process run initialises it later)."""
    if choice not in ATTENTION_CHOICES:
        raise ValueError(f"model.attention={choice!r}; choose from {', '.join(ATTENTION_CHOICES)}")
    if choice == "cudnn" and not _half(dtype):
        raise ValueError(f"model.attention='cudnn' needs bfloat16 or float16 compute "
                         f"(model.dtype is {jnp.dtype(dtype).name}); use auto or xla")


def attention_implementation(dtype, choice: str = "auto") -> str | None:
    """The ``implementation`` argument of ``jax.nn.dot_product_attention`` for compute
    ``dtype`` under ``choice`` (``ATTENTION_CHOICES``); ``None`` lets jax pick XLA.
    Raises ``ValueError`` for a ``cudnn`` that cannot run here (``check_attention``, and
    cuDNN needs a GPU)."""
    check_attention(choice, dtype)
    if choice == "auto":
        return "cudnn" if jax.default_backend() == "gpu" and _half(dtype) else None
    if choice == "xla":
        return "xla"
    if choice == "cudnn":
        if jax.default_backend() != "gpu":
            raise ValueError(f"model.attention='cudnn' needs a GPU with cuDNN; this backend is "
                             f"{jax.default_backend()}: use auto or xla")
        return "cudnn"


class Attention(nnx.Module):
    def __init__(self, cfg: DecoderConfig, *, dtype, param_dtype, attention: str = "auto",
                 rngs: nnx.Rngs):
        self.cfg, self.dtype = cfg, dtype
        # Resolved once, at construction: a cuDNN that cannot run fails here, not mid-trace.
        self.implementation = attention_implementation(dtype, attention)
        d, n, k, h = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Dense(d, n * h, axes=("embed", "heads"), use_bias=cfg.attention_bias, **kw)
        self.k_proj = Dense(d, k * h, axes=("embed", "heads"), use_bias=cfg.attention_bias, **kw)
        self.v_proj = Dense(d, k * h, axes=("embed", "heads"), use_bias=cfg.attention_bias, **kw)
        self.o_proj = Dense(n * h, d, axes=("heads", "embed"), **kw)

    def __call__(self, x, positions, mask, dropout_key=None):
        """mask: a boolean [B, 1, T, T] mask, or None for plain causal attention."""
        cfg = self.cfg
        b, t, _ = x.shape
        keys = _split(dropout_key, 4)
        q = self.q_proj(x, keys[0]).reshape(b, t, cfg.num_heads, cfg.head_dim)
        k = self.k_proj(x, keys[1]).reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        v = self.v_proj(x, keys[2]).reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        q, k = rotary(q, positions, cfg.rope_theta), rotary(k, positions, cfg.rope_theta)
        q = constrain(q, ("batch", "length", "act_heads", None))
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=mask is None,
                                           implementation=self.implementation)
        return self.o_proj(out.reshape(b, t, cfg.num_heads * cfg.head_dim), keys[3])


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: DecoderConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Dense(d, f, axes=("embed", "mlp"), **kw)
        self.up_proj = Dense(d, f, axes=("embed", "mlp"), **kw)
        self.down_proj = Dense(f, d, axes=("mlp", "embed"), **kw)

    def __call__(self, x, dropout_key=None):
        keys = _split(dropout_key, 3)
        return self.down_proj(jax.nn.silu(self.gate_proj(x, keys[0])) * self.up_proj(x, keys[1]),
                              keys[2])
