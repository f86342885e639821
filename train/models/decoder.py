"""The causal language model: embedding, pre-norm blocks, final norm, LM head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from train.models.config import DecoderConfig
from train.models.layers import MLP, Attention, RMSNorm, _init, partitioned
from train.models.sharding import constrain


class Block(nnx.Module):
    def __init__(self, cfg: DecoderConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.self_attn = Attention(cfg, **kw)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.mlp = MLP(cfg, **kw)

    def __call__(self, x, positions, mask, dropout_key=None):
        attn_key, mlp_key = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        x = x + self.self_attn(self.input_layernorm(x), positions, mask, attn_key)
        x = x + self.mlp(self.post_attention_layernorm(x), mlp_key)
        return constrain(x, ("batch", "length", "act_embed"))


def _run_block(block, x, positions, mask, dropout_key):
    return block(x, positions, mask, dropout_key)


_run_block_remat = nnx.remat(_run_block)


class CausalLM(nnx.Module):
    """Qwen2 / Llama decoder. ``dtype`` is the compute dtype, ``param_dtype`` the
    parameters'; ``remat`` recomputes each block's activations in the backward pass."""

    def __init__(self, cfg: DecoderConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 remat: bool = False, rngs: nnx.Rngs):
        self.config, self.dtype, self.remat = cfg, dtype, remat
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embed_tokens = nnx.Param(partitioned(_init, ("vocab", "embed"))(
            rngs.params(), (cfg.vocab_size, cfg.hidden_size), param_dtype))
        self.layers = nnx.List([Block(cfg, **kw) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.lm_head = (None if cfg.tie_word_embeddings else nnx.Param(
            partitioned(_init, ("embed", "vocab"))(
                rngs.params(), (cfg.hidden_size, cfg.vocab_size), param_dtype)))

    def __call__(self, tokens: jax.Array, *, attention_mask: jax.Array | None = None,
                 positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
                 dropout_key: jax.Array | None = None):
        """Logits [B, T, V] (float32) for token ids [B, T].

        attention_mask: [B, T], 1 for real tokens, 0 for padding (keys that are masked out).
        segment_ids: [B, T], tokens attend only within their segment (packed sequences).
        positions: [B, T] rotary positions; defaults to 0..T-1.
        dropout_key: enables LoRA dropout (training); without it the model is deterministic.
        """
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t), (b, t))
        mask = None  # plain causal attention: lets fused kernels skip materialising a mask
        if attention_mask is not None or segment_ids is not None:
            mask = jnp.tril(jnp.ones((t, t), jnp.bool_))[None, None]
            if attention_mask is not None:
                mask = mask & attention_mask.astype(jnp.bool_)[:, None, None, :]
            if segment_ids is not None:
                mask = mask & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
        x = jnp.take(self.embed_tokens[...], tokens, axis=0).astype(self.dtype)
        x = constrain(x, ("batch", "length", "act_embed"))
        run = _run_block_remat if self.remat else _run_block
        for i, block in enumerate(self.layers):
            key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
            x = run(block, x, positions, mask, key)
        x = self.norm(x)
        head = (self.embed_tokens[...].T if self.lm_head is None else self.lm_head[...])
        logits = x @ head.astype(self.dtype)
        return constrain(logits.astype(jnp.float32), ("batch", "length", "act_vocab"))


def init_model(cfg: DecoderConfig, *, seed: int = 0, **kwargs) -> CausalLM:
    return CausalLM(cfg, rngs=nnx.Rngs(seed), **kwargs)


def count_params(cfg: DecoderConfig) -> int:
    """Parameter count without allocating anything (``nnx.eval_shape``)."""
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
