"""The causal language model: embedding, pre-norm blocks, final norm, LM head.

The blocks are either a list of modules (``scan_layers=False``: layer ``i``'s weights at
``layers/i/...``, as Hugging Face names them) or one module whose weights carry a
leading ``layers`` axis (``scan_layers=True``, created with ``nnx.vmap``) run under a
scan: XLA then compiles one block however deep the model is, so compile time no
longer grows with depth. The scan is what ``nnx.scan`` does (split the stacked state,
``lax.scan`` over it, merge one layer's slice per iteration), written out in pure JAX
so the model also runs inside outer transforms (``nnx.scan`` refuses graph nodes
merged at another trace level, as in the stress suite's vmapped runs). Both layouts
compute the same function; ``hf_io`` and ``lora`` read and write either.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lbw_jax.train.models.config import DecoderConfig
from lbw_jax.train.models.layers import MLP, Attention, RMSNorm, _init, partitioned
from lbw_jax.train.models.sharding import constrain

# What the backward pass keeps of each block's forward activations.
REMAT_POLICIES = {
    "none": None,                                              # keeps everything
    "full": jax.checkpoint_policies.nothing_saveable,          # recomputes the whole block
    "dots_saveable": jax.checkpoint_policies.dots_saveable,    # keeps matmul outputs only
}


def remat_policy_name(remat) -> str:
    """``remat`` as a policy name; the booleans of earlier configs mean none/full."""
    if remat is True or remat is False:
        return "full" if remat else "none"
    if remat not in REMAT_POLICIES:
        raise ValueError(f"model.remat={remat!r}; choose from {sorted(REMAT_POLICIES)}")
    return remat


class Block(nnx.Module):
    def __init__(self, cfg: DecoderConfig, *, dtype, param_dtype, attention: str = "auto",
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.self_attn = Attention(cfg, attention=attention, **kw)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.mlp = MLP(cfg, **kw)

    def __call__(self, x, positions, mask, dropout_key=None):
        attn_key, mlp_key = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        x = x + self.self_attn(self.input_layernorm(x), positions, mask, attn_key)
        x = x + self.mlp(self.post_attention_layernorm(x), mlp_key)
        return constrain(x, ("batch", "length", "act_embed"))


def _block_fn(graphdef, positions, mask, policy: str, *, scanned: bool):
    """``f(block_state, x, key)``: one block as a pure function of its weights, under
    ``jax.checkpoint`` with the remat policy. Pure JAX (not nnx.scan / nnx.remat), so the
    model also runs inside outer jax transforms (the stress suite vmaps whole runs)."""

    def apply(state, x, key):
        return nnx.merge(graphdef, state)(x, positions, mask, key)

    if policy == "none":
        return apply
    # prevent_cse=False inside a scan: the loop already keeps XLA from merging the
    # recomputation into the forward pass (jax.checkpoint's advice); unrolled, keep it.
    return jax.checkpoint(apply, policy=REMAT_POLICIES[policy], prevent_cse=not scanned)


def _stacked_blocks(cfg, kw, rngs):
    """One ``Block`` whose every weight has a leading axis of ``num_layers``, each slice
    initialised from its own key; the axis is named ``layers`` for sharding rules."""

    @nnx.split_rngs(splits=cfg.num_layers)
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def create(rngs):
        return Block(cfg, rngs=rngs, **kw)

    return create(rngs)


class CausalLM(nnx.Module):
    """Qwen2 / Llama decoder. ``dtype`` is the compute dtype, ``param_dtype`` the
    parameters'. ``remat`` picks what the backward pass recomputes of each block
    (``REMAT_POLICIES``; ``True``/``False`` mean ``full``/``none``); ``scan_layers``
    stacks the blocks and runs them under a scan (see the module docstring);
    ``attention`` picks the attention kernel (``layers.ATTENTION_CHOICES``)."""

    def __init__(self, cfg: DecoderConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
                 remat="none", scan_layers: bool = False, attention: str = "auto",
                 rngs: nnx.Rngs):
        self.config, self.dtype = cfg, dtype
        self.remat, self.scan_layers = remat_policy_name(remat), bool(scan_layers)
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        block_kw = dict(kw, attention=attention)
        self.embed_tokens = nnx.Param(partitioned(_init, ("vocab", "embed"))(
            rngs.params(), (cfg.vocab_size, cfg.hidden_size), param_dtype))
        if self.scan_layers:
            self.layers = _stacked_blocks(cfg, block_kw, rngs)
        else:
            self.layers = nnx.List([Block(cfg, rngs=rngs, **block_kw) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, rngs=rngs, **kw)
        self.lm_head = (None if cfg.tie_word_embeddings else nnx.Param(
            partitioned(_init, ("embed", "vocab"))(
                rngs.params(), (cfg.hidden_size, cfg.vocab_size), param_dtype)))

    def hidden_states(self, tokens: jax.Array, *, attention_mask: jax.Array | None = None,
                      positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
                      dropout_key: jax.Array | None = None) -> jax.Array:
        """The final-norm output [B, T, D] in the compute dtype (arguments as ``__call__``)."""
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
        n = self.config.num_layers
        # Layer i's dropout key is fold_in(key, i) in both layouts: the same model
        # draws the same masks scanned or not.
        keys = (None if dropout_key is None
                else jax.vmap(lambda i: jax.random.fold_in(dropout_key, i))(jnp.arange(n)))
        if self.scan_layers:
            graphdef, state = nnx.split(self.layers)
            block = _block_fn(graphdef, positions, mask, self.remat, scanned=True)
            x, _ = jax.lax.scan(lambda x, xs: (block(xs[0], x, xs[1]), None), x, (state, keys))
        else:
            for i, layer in enumerate(self.layers):
                graphdef, state = nnx.split(layer)
                block = _block_fn(graphdef, positions, mask, self.remat, scanned=False)
                x = block(state, x, None if keys is None else keys[i])
        return self.norm(x)

    def head(self) -> jax.Array:
        """The LM head [D, V] in the compute dtype (the embedding's transpose when tied)."""
        head = self.embed_tokens[...].T if self.lm_head is None else self.lm_head[...]
        return head.astype(self.dtype)

    def __call__(self, tokens: jax.Array, *, attention_mask: jax.Array | None = None,
                 positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
                 dropout_key: jax.Array | None = None):
        """Logits [B, T, V] (float32) for token ids [B, T].

        attention_mask: [B, T], 1 for real tokens, 0 for padding (keys that are masked out).
        segment_ids: [B, T], tokens attend only within their segment (packed sequences).
        positions: [B, T] rotary positions; defaults to 0..T-1.
        dropout_key: enables LoRA dropout (training); without it the model is deterministic.

        Training does not call this: ``lbw_jax.train.loss`` computes the cross-entropy from
        ``hidden_states`` and ``head`` in chunks, never holding all the logits.
        """
        x = self.hidden_states(tokens, attention_mask=attention_mask, positions=positions,
                               segment_ids=segment_ids, dropout_key=dropout_key)
        logits = x @ self.head()
        return constrain(logits.astype(jnp.float32), ("batch", "length", "act_vocab"))


def init_model(cfg: DecoderConfig, *, seed: int = 0, **kwargs) -> CausalLM:
    return CausalLM(cfg, rngs=nnx.Rngs(seed), **kwargs)


def count_params(cfg: DecoderConfig) -> int:
    """Parameter count without allocating anything (``nnx.eval_shape``)."""
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
