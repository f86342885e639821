"""The stress suite's pretrained base for a domain shift (the paper's setting: a
pretrained model fine-tuned with LoRA on a new corpus).

``stress.base.source`` names the corpus the base is pretrained on, full-parameter, with
its own BPE tokenizer (``stress.pretrain_*``). The base is written as a Hugging Face
folder (``config.json``, ``model.safetensors`` and the tokenizer) under the cache, keyed
by everything that shapes it, so a second run of the suite reuses it. Every cell then
starts from that folder exactly as ``lbw_jax.train.run`` would: ``model.pretrained`` = the
folder, ``data.tokenizer=pretrained`` (the base's tokenizer on the new corpus, so the
shift is real), and LoRA as ``lora.*`` says. The same fine-tune runs in ``lbw_jax.train.run``
with ``--config.model.pretrained=<folder> --config.data.tokenizer=pretrained``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pathlib
import shutil

import jax
from flax import nnx

from lbw_jax.train.models import make_mesh
from lbw_jax.train.models.hf_io import save_pretrained
from lbw_jax.train.stress.engine.start import pretrain_start, val_batches   # the suite's own pretraining
from lbw_jax.train.data.tokenizer import cache_root

BASE_FILE = "stress_base.json"


def base_config(cfg):
    """The config the base is pretrained with: ``cfg``'s model and optimizer, on
    ``stress.base.source`` with a BPE trained there, full-parameter, from scratch."""
    b = copy.deepcopy(cfg)
    with b.unlocked():
        b.lora.enabled = False
        b.model.pretrained = ""
        b.data.source = cfg.stress.base.source
        b.data.path = ""
        b.data.tokenizer = "bpe"
        b.stress.base.source = ""
    return b


def base_key(cfg) -> str:
    """A digest of what shapes the base: its model, corpus, tokenizer and pretraining."""
    b = base_config(cfg)
    fields = {"arch": b.model.arch.to_dict(), "dtype": b.model.dtype, "param_dtype": b.model.param_dtype,
              "data": {k: b.data[k] for k in ("source", "vocab_size", "seq_len", "val_fraction")},
              "batch_size": b.train.batch_size, "seed": b.seed,
              "optimizer": {k: b.optimizer[k] for k in ("b1", "b2", "weight_decay")},
              "pretrain": {k: b.stress[k] for k in ("pretrain_steps", "pretrain_lr", "pretrain_warmup",
                                                    "eval_batches")}}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def base_folder(cfg) -> pathlib.Path:
    root = pathlib.Path(cfg.stress.base.cache).expanduser() if cfg.stress.base.cache else cache_root() / "stress_bases"
    return root / f"{cfg.stress.base.source}-{base_key(cfg)}"


def prepare(cfg, log=print) -> dict:
    """The base's folder, pretrained now or found in the cache; returns what the report
    says of it: {"folder", "source", "steps", "lr", "val_ppl", "seconds", "cached"}."""
    from lbw_jax.train.data.build import build_data
    from lbw_jax.train.trainer import build_model

    folder = base_folder(cfg)
    if (folder / BASE_FILE).exists():
        info = json.loads((folder / BASE_FILE).read_text())
        log(f"stress: the base pretrained on {info['source']} is cached at {folder} "
            f"(validation perplexity {info['val_ppl']:.2f} there)")
        return {**info, "folder": str(folder), "cached": True}
    b = base_config(cfg)
    if not b.stress.pretrain_steps:
        raise ValueError("stress.base.source is set but stress.pretrain_steps=0: the base would be "
                         "the untrained model; give it pretraining steps")
    data = build_data(b)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    model = build_model(b, data.tokenizer.vocab_size, mesh)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    val = val_batches(data.val_windows, b.stress.eval_batches, b.train.batch_size)
    common = dict(frozen=frozen, val=val, stress=b.stress, vocab_size=data.tokenizer.vocab_size)
    params, info = pretrain_start(b, graphdef, params, data.train.windows, common,
                                  lambda m: log(m.replace("stress: pretrained", f"stress: base: pretrained on "
                                                                                 f"{b.data.source},")))
    # Written aside, then renamed: a folder in the cache is always whole.
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(nnx.merge(graphdef, params, frozen), tmp)
    data.tokenizer.save_pretrained(tmp)
    info = {**info, "source": b.data.source}
    (tmp / BASE_FILE).write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log(f"stress: the base is saved at {folder}")
    return {**info, "folder": str(folder), "cached": False}


def finetune_config(cfg, folder):
    """``cfg`` for the cells: the base folder as ``model.pretrained`` with its tokenizer,
    no further pretraining (the base is the start)."""
    f = copy.deepcopy(cfg)
    with f.unlocked():
        f.model.pretrained = str(folder)
        f.data.tokenizer = "pretrained"
        f.stress.pretrain_steps = 0
    return f

