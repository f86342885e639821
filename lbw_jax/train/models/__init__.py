"""Flax NNX ports of Qwen2.5 and TinyLlama (Llama), with Hugging Face checkpoints in
and out, LoRA and logical-axis sharding."""

from lbw_jax.train.models.config import NAMED_CONFIGS, DecoderConfig, named_config
from lbw_jax.train.models.decoder import CausalLM, count_params, init_model
from lbw_jax.train.models.hf_io import PretrainedLoadError, load_pretrained, save_pretrained
from lbw_jax.train.models.lora import LoRAConfig, apply_lora, merged_params, save_adapter
from lbw_jax.train.models.sharding import LOGICAL_AXIS_RULES, make_mesh, model_shardings

__all__ = ["DecoderConfig", "NAMED_CONFIGS", "named_config", "CausalLM", "init_model",
           "count_params", "load_pretrained", "save_pretrained", "PretrainedLoadError",
           "LoRAConfig", "apply_lora", "merged_params", "save_adapter",
           "LOGICAL_AXIS_RULES", "make_mesh", "model_shardings"]
