"""The run folder's own files besides checkpoints and metrics: ``config.json`` (written
once, when the run starts), the tokenizer, and the data's fingerprint."""

from __future__ import annotations

import json
import pathlib

from lbw_jax.train.data import fingerprint as data_fingerprint


def run_dir(cfg) -> pathlib.Path:
    return pathlib.Path(cfg.output_dir).expanduser()


def write_json(path: pathlib.Path, value) -> None:
    """Writes through a temporary file, so a crash never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def tokenizer_path(out: pathlib.Path, cfg) -> pathlib.Path:
    """Where a run keeps its tokenizer: a BPE's file, or a pretrained one's folder."""
    return out / ("tokenizer.json" if cfg.data.tokenizer == "bpe" else "tokenizer")


def saved_tokenizer(out: pathlib.Path, cfg) -> pathlib.Path | None:
    path = tokenizer_path(out, cfg)
    return path if path.exists() else None


def write_run_files(out: pathlib.Path, cfg, data, *, resuming: bool, new_fingerprint: bool) -> None:
    """The lead process's records of what the run is. A resume keeps the config the run
    began with (the resume check reads it) and the tokenizer it saved (never retrained)."""
    if new_fingerprint:
        write_json(out / data_fingerprint.FINGERPRINT_FILE, data.fingerprint)
    if not (resuming and (out / "config.json").exists()):
        (out / "config.json").write_text(cfg.to_json_best_effort(indent=2))
    if not resuming or saved_tokenizer(out, cfg) is None:
        data.tokenizer.save(out / "tokenizer.json")  # (a pretrained one: out/tokenizer/)
