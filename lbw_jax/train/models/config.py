"""Decoder configuration, shared by Qwen2.5 and TinyLlama (Llama), and its mapping
to and from Hugging Face ``config.json``."""

from __future__ import annotations

import dataclasses
from typing import Any

SUPPORTED_MODEL_TYPES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
# Compute and parameter dtypes the models take (by name, as configs give them).
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Architecture of a pre-norm decoder: RMSNorm, RoPE, grouped-query attention,
    SwiGLU MLP. ``attention_bias`` adds q/k/v biases (Qwen2)."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool
    attention_bias: bool
    max_position_embeddings: int
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; "
                             f"supported: {sorted(SUPPORTED_MODEL_TYPES)}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                     "num_heads", "num_kv_heads", "head_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"config {name}={getattr(self, name)!r} must be a positive integer")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any]) -> "DecoderConfig":
        """Builds the config from a Hugging Face ``config.json`` dict."""
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported architecture: model_type={model_type!r} "
                             f"(architectures={hf.get('architectures')}); supported: "
                             f"{sorted(SUPPORTED_MODEL_TYPES)}")
        if hf.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {hf.get('hidden_act')!r}; only 'silu'")
        rope_scaling = hf.get("rope_scaling") or (hf.get("rope_parameters") or {})
        rope_type = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
        if rope_type not in (None, "default"):
            raise ValueError(f"unsupported rope scaling {rope_scaling!r}; only plain RoPE")
        theta = hf.get("rope_theta", rope_scaling.get("rope_theta", 10000.0))
        heads = hf["num_attention_heads"]
        if model_type == "qwen2":
            bias = True
        else:
            bias = bool(hf.get("attention_bias", False))
            if hf.get("mlp_bias", False):
                raise ValueError("unsupported: mlp_bias=True")
        return cls(
            model_type=model_type, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"], num_layers=hf["num_hidden_layers"],
            num_heads=heads, num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            rope_theta=float(theta), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=bias,
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"))

    def to_hf_config(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` dict for this architecture."""
        hf = {
            "architectures": [SUPPORTED_MODEL_TYPES[self.model_type]],
            "model_type": self.model_type, "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads, "head_dim": self.head_dim,
            "hidden_act": "silu", "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps, "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }
        if self.model_type == "llama":
            hf.update(attention_bias=self.attention_bias, mlp_bias=False)
        return hf


def _qwen25(vocab, hidden, inter, layers, heads, kv, tie, max_pos, eps=1e-6):
    return DecoderConfig(model_type="qwen2", vocab_size=vocab, hidden_size=hidden,
                         intermediate_size=inter, num_layers=layers, num_heads=heads,
                         num_kv_heads=kv, head_dim=hidden // heads, rope_theta=1e6,
                         rms_norm_eps=eps, tie_word_embeddings=tie, attention_bias=True,
                         max_position_embeddings=max_pos, bos_token_id=151643,
                         eos_token_id=151643)


# Published hyperparameters (the models' config.json on the Hugging Face hub).
NAMED_CONFIGS: dict[str, DecoderConfig] = {
    "qwen2.5-0.5b": _qwen25(151936, 896, 4864, 24, 14, 2, True, 32768),
    "qwen2.5-1.5b": _qwen25(151936, 1536, 8960, 28, 12, 2, True, 131072),
    "qwen2.5-3b": _qwen25(151936, 2048, 11008, 36, 16, 2, True, 32768),
    "qwen2.5-7b": _qwen25(152064, 3584, 18944, 28, 28, 4, False, 131072),
    "qwen2.5-14b": _qwen25(152064, 5120, 13824, 48, 40, 8, False, 131072, eps=1e-5),
    "tinyllama-1.1b": DecoderConfig(
        model_type="llama", vocab_size=32000, hidden_size=2048, intermediate_size=5632,
        num_layers=22, num_heads=32, num_kv_heads=4, head_dim=64, rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=False,
        max_position_embeddings=2048, bos_token_id=1, eos_token_id=2),
}


def with_overrides(cfg: DecoderConfig, text: str) -> DecoderConfig:
    """``cfg`` with fields from ``"name=value,..."`` (integers parsed), e.g. a named
    architecture narrowed for a benchmark: ``"num_layers=2,hidden_size=64"``."""
    fields = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        value = value.strip()
        fields[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return dataclasses.replace(cfg, **fields)


def named_config(name: str) -> DecoderConfig:
    try:
        return NAMED_CONFIGS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(NAMED_CONFIGS)}") from None
