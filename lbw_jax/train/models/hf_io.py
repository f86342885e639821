"""Hugging Face checkpoints in and out: ``config.json`` + safetensors, streamed
tensor by tensor so that a large model never needs two full copies in host memory."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open

from lbw_jax.train.models.config import DecoderConfig
from lbw_jax.train.models.decoder import CausalLM
from lbw_jax.train.models.layout import is_stacked
from lbw_jax.train.models.sharding import LOGICAL_AXIS_RULES, model_shardings

# Buffers some checkpoints carry that are recomputed here, never loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class PretrainedLoadError(ValueError):
    """A Hugging Face model folder or hub id that cannot be loaded (missing files, or
    tensors that do not match the model): names what is wrong. A ``ValueError``, so
    ``lbw_jax.train.run`` reports it as a config error (exit 2); unrelated to
    ``lbw_jax.train.errors.PretrainedLoadError``, a run's own checkpoints failing (exit 4)."""


def hf_name(path: tuple) -> tuple[str, bool]:
    """The Hugging Face tensor name of one of our per-layer parameters, and whether it
    is stored transposed (torch Linear weights are [out, in]; our kernels [in, out])."""
    parts = [str(p) for p in path]
    if parts == ["embed_tokens"]:
        return "model.embed_tokens.weight", False
    if parts == ["lm_head"]:
        return "lm_head.weight", True
    *module, leaf = parts
    suffix = {"kernel": "weight", "scale": "weight", "bias": "bias"}.get(leaf)
    if suffix is None:
        raise KeyError(f"no Hugging Face name for parameter {'/'.join(parts)}")
    return "model." + ".".join(module + [suffix]), leaf == "kernel"


def hf_names(path: tuple, num_layers: int) -> tuple[list[str], bool]:
    """The Hugging Face names that hold our parameter ``path`` (one per layer for a
    stacked weight, in layer order), and whether each is stored transposed."""
    if is_stacked(path):
        names = [hf_name(("layers", i) + tuple(path[1:])) for i in range(num_layers)]
        return [n for n, _ in names], names[0][1]
    name, transposed = hf_name(path)
    return [name], transposed


def _resolve_folder(path) -> pathlib.Path:
    folder = pathlib.Path(os.path.expanduser(str(path)))
    if folder.is_dir():
        return folder
    if folder.exists():
        raise PretrainedLoadError(f"{folder} is a file; expected a model folder with config.json")
    try:  # a hub id, when the hub is reachable
        from huggingface_hub import snapshot_download
        return pathlib.Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # noqa: BLE001 - any failure means: not a usable local path or hub id
        from lbw_jax.train.data.hub import offline_hint

        raise PretrainedLoadError(f"{path!r} is not a local model folder, and fetching it from the "
                              f"Hugging Face hub failed: {offline_hint(e, 'model', str(path))}") from e


def _tensor_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Maps every tensor name to the safetensors file holding it."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.exists():
        raise PretrainedLoadError(f"{folder} has neither model.safetensors nor "
                              f"model.safetensors.index.json")
    with safe_open(single, framework="numpy") as f:
        return {name: single for name in f.keys()}


def read_config(folder) -> DecoderConfig:
    config_file = pathlib.Path(folder) / "config.json"
    if not config_file.exists():
        raise PretrainedLoadError(f"{folder} has no config.json")
    return DecoderConfig.from_hf_config(json.loads(config_file.read_text()))


def _hf_layout(state, num_layers: int) -> tuple[dict, list]:
    """The checkpoint tensors the model's abstract ``state`` needs."""
    expected = {}  # HF name -> (our path, one layer's shape, stored transposed)
    sources = []   # (our path, abstract variable, its HF names, stored transposed)
    for p, var in nnx.to_flat_state(state):
        names, transposed = hf_names(p, num_layers)
        shape = tuple(var.shape[1:] if is_stacked(p) else var.shape)
        sources.append((p, var, names, transposed))
        for name in names:
            expected[name] = (p, shape, transposed)
    return expected, sources


def load_pretrained(path, *, dtype=jnp.float32, param_dtype=jnp.float32, remat="none",
                    scan_layers: bool = False, attention: str = "auto",
                    mesh: jax.sharding.Mesh | None = None, rules=LOGICAL_AXIS_RULES) -> CausalLM:
    """Loads a Hugging Face Qwen2 / Llama model folder (or hub id) into a ``CausalLM``.

    Tensors are read one at a time, cast to ``param_dtype`` and, with ``mesh``, placed
    straight onto their sharding. Missing, unexpected or mis-shaped tensors raise
    ``PretrainedLoadError`` listing them; nothing is ever left randomly initialised.
    """
    folder = _resolve_folder(path)
    cfg = read_config(folder)
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, dtype=dtype, param_dtype=param_dtype,
                                               remat=remat, scan_layers=scan_layers,
                                               attention=attention, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    shardings = {}
    if mesh is not None:
        for p, sharding in nnx.to_flat_state(model_shardings(state, mesh, rules)):
            shardings[p] = sharding.get_value() if isinstance(sharding, nnx.Variable) else sharding
    expected, sources = _hf_layout(state, cfg.num_layers)

    files = _tensor_files(folder)
    present = {n for n in files if not n.endswith(_IGNORED_SUFFIXES)}
    if cfg.tie_word_embeddings:
        present.discard("lm_head.weight")  # some tied checkpoints store the copy
    missing = sorted(set(expected) - present)
    unexpected = sorted(present - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors: {missing}")
    if unexpected:
        problems.append(f"unexpected tensors: {unexpected}")
    with contextlib.ExitStack() as stack:
        handles: dict[pathlib.Path, object] = {}

        def handle(file):
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(file, framework="flax"))
            return handles[file]

        mis_shaped = []
        for name, (p, shape_, transposed) in expected.items():
            if name in files:
                shape = tuple(handle(files[name]).get_slice(name).get_shape())
                want = tuple(shape_[::-1] if transposed else shape_)
                if shape != want:
                    mis_shaped.append(f"{name}: checkpoint {shape}, model {want}")
        if mis_shaped:
            problems.append(f"mis-shaped tensors: {mis_shaped}")
        if problems:
            raise PretrainedLoadError(f"checkpoint {folder} does not match {cfg.model_type} config: "
                                  + "; ".join(problems))

        loaded = []
        for p, var, names, transposed in sources:
            tensors = [handle(files[name]).get_tensor(name) for name in names]
            tensors = [(t.T if transposed else t).astype(param_dtype) for t in tensors]
            # Layers are stacked in host memory, then placed (and sharded) once.
            tensor = np.stack([np.asarray(t) for t in tensors]) if is_stacked(p) else tensors[0]
            del tensors
            tensor = (jax.device_put(tensor, shardings[p]) if p in shardings
                      else jnp.asarray(tensor))
            loaded.append((p, var.replace(tensor)))
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def save_pretrained(model: CausalLM, folder, *, dtype=None) -> pathlib.Path:
    """Writes ``config.json`` and ``model.safetensors`` that transformers'
    ``AutoModelForCausalLM.from_pretrained`` loads. LoRA branches are merged into
    the base weights first (see ``lora.merged_params``)."""
    from safetensors.flax import save_file

    from lbw_jax.train.models.lora import merged_params

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for p, value in merged_params(model).items():
        names, transpose = hf_names(p, model.config.num_layers)
        layers = list(value) if is_stacked(p) else [value]   # a stacked weight: per layer
        for name, layer in zip(names, layers):
            array = jnp.asarray(layer.T if transpose else layer)
            tensors[name] = array.astype(dtype) if dtype is not None else array
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(model.config.to_hf_config(), indent=2))
    return folder
