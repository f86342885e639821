"""LoRA: low-rank adapters on the decoder's projections, frozen base weights, merging
for export, and the adapter in PEFT's format."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
from flax import nnx

from lbw_jax.train.models.config import DTYPES
from lbw_jax.train.models.layers import Dense
from lbw_jax.train.models.layout import is_stacked

TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
           "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
    # The adapters' (and so their optimizer state's) dtype, independent of the base's.
    param_dtype: str = "float32"

    def __post_init__(self):
        if int(self.rank) < 1:
            raise ValueError(f"lora rank={self.rank!r} must be a positive integer")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"lora dropout={self.dropout!r} must be in [0, 1)")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"lora targets {list(self.targets)}: unknown {unknown}; "
                             f"choose from {sorted(TARGETS)}")
        if self.param_dtype not in DTYPES:
            raise ValueError(f"lora param_dtype={self.param_dtype!r}; choose {', '.join(DTYPES)}")


def _dense_modules(model):
    for path, module in nnx.iter_graph(model):
        if isinstance(module, Dense):
            yield path, module


def apply_lora(model, config: LoRAConfig, *, seed: int = 0):
    """Adds LoRA branches (``nnx.LoRAParam``) to the targeted projections, in place.
    Train them with ``nnx.Optimizer(model, tx, wrt=nnx.LoRAParam)``: the base
    weights then stay frozen and hold no optimizer state."""
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    wanted = {TARGETS[t] for t in config.targets}
    for path, module in _dense_modules(model):
        if path[-1] in wanted:
            module.add_lora(config.rank, config.alpha, config.dropout, rngs,
                            param_dtype=jnp.dtype(config.param_dtype))
    model.lora_config = config
    return model


def merged_params(model) -> dict[tuple, jax.Array]:
    """Base parameters by path, with each LoRA branch folded into its kernel."""
    flat = {p: v[...] for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
            if not isinstance(v, nnx.LoRAParam)}
    for path, module in _dense_modules(model):
        if module.lora_a is not None:
            # [in, r] @ [r, out], or per layer for a scanned model's [L, in, r] @ [L, r, out].
            delta = module.lora_scale * (module.lora_a[...].astype(jnp.float32)
                                         @ module.lora_b[...].astype(jnp.float32))
            key = tuple(path) + ("kernel",)
            flat[key] = (flat[key].astype(jnp.float32) + delta).astype(flat[key].dtype)
    return flat


def save_adapter(model, folder, *, base_model_name_or_path: str | None = None) -> pathlib.Path:
    """Writes ``adapter_model.safetensors`` + ``adapter_config.json`` that
    ``peft.PeftModel.from_pretrained`` loads onto the transformers model."""
    from safetensors.flax import save_file

    config: LoRAConfig | None = getattr(model, "lora_config", None)
    if config is None:
        raise ValueError("save_adapter: the model has no LoRA branches (call apply_lora first)")
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for path, module in _dense_modules(model):
        if module.lora_a is None:
            continue
        a, b = module.lora_a[...], module.lora_b[...]
        if is_stacked(tuple(path) + ("kernel",)):   # a scanned model: one branch per layer
            per_layer = [(("layers", i) + tuple(path[1:]), a[i], b[i]) for i in range(a.shape[0])]
        else:
            per_layer = [(tuple(path), a, b)]
        for layer_path, a, b in per_layer:
            prefix = "base_model.model.model." + ".".join(str(p) for p in layer_path)
            tensors[f"{prefix}.lora_A.weight"] = jnp.asarray(a.T)  # [r, in]
            tensors[f"{prefix}.lora_B.weight"] = jnp.asarray(b.T)  # [out, r]
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.rank,
        "lora_alpha": config.alpha, "lora_dropout": config.dropout,
        "target_modules": sorted(TARGETS[t] for t in config.targets), "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "use_rslora": False, "modules_to_save": None,
        "base_model_name_or_path": base_model_name_or_path}, indent=2))
    return folder
