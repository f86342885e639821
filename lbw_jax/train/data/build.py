"""The data a run trains on, from its config: the corpus split, the tokenizer (trained,
pretrained, or the one a resumed run saved) and the batch order, with the data's
fingerprint; or random tokens for benchmarks."""

from __future__ import annotations

import dataclasses
import pathlib
import types

import numpy as np

from lbw_jax.train.data import dataset as data_lib
from lbw_jax.train.data import fingerprint as data_fingerprint
from lbw_jax.train.data.tokenizer import BPETokenizer, PretrainedTokenizer
from lbw_jax.train.errors import InputError, first_line


@dataclasses.dataclass
class Data:
    tokenizer: object
    train: data_lib.BatchOrder
    val_windows: np.ndarray
    fingerprint: dict = dataclasses.field(default_factory=dict)  # lbw_jax.train.data.fingerprint


class SavedTokenizerError(InputError):
    """The tokenizer a run saved in its folder cannot be loaded (damaged or deleted in part)."""

    def __init__(self, path: pathlib.Path, cause: BaseException):
        super().__init__(f"{path} cannot be loaded ({first_line(cause)})")
        self.path = path


def _load_saved(path: pathlib.Path, kind: str):
    try:
        return BPETokenizer.from_file(path) if kind == "bpe" else PretrainedTokenizer(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
        raise SavedTokenizerError(path, e) from e


def build_data(cfg, saved_tokenizer: pathlib.Path | None = None) -> Data:
    """The corpus split, tokenizer and batch order of ``cfg``, with the data's
    fingerprint. ``saved_tokenizer``: the tokenizer a run saved in its folder, reused on
    resume (never retrained: a retrained BPE, e.g. under another ``tokenizers``
    version, would remap the token ids)."""
    d = cfg.data
    if d.tokenizer not in ("bpe", "pretrained"):
        raise ValueError(f"data.tokenizer={d.tokenizer!r}; choose bpe or pretrained")
    if d.tokenizer == "pretrained" and not cfg.model.pretrained:  # before reading any corpus
        raise ValueError("data.tokenizer='pretrained' needs model.pretrained")
    if d.source == "austen":
        files = sorted(data_lib.AUSTEN_DIR.glob("*.txt.gz"))
        corpus = {"source": "austen", "files": data_fingerprint.files_entry(files)}
        train_docs, val_docs = data_lib.split_documents(data_lib.austen_documents(), d.val_fraction, cfg.seed)
    elif d.source == "shakespeare":
        corpus = {"source": "shakespeare", "files": data_fingerprint.files_entry([data_lib.SHAKESPEARE_FILE])}
        train_docs, val_docs = data_lib.split_documents(data_lib.shakespeare_documents(), d.val_fraction, cfg.seed)
    elif d.source == "files":
        if not d.path:
            raise ValueError("data.source='files' needs data.path (a text file or a folder)")
        files = data_lib.corpus_files(d.path)
        root = pathlib.Path(d.path).expanduser()
        corpus = {"source": "files", "path": str(d.path),
                  "files": data_fingerprint.files_entry(files, root if root.is_dir() else None)}
        train_docs, val_docs = data_lib.split_documents(
            data_lib.file_documents(d.path), d.val_fraction, cfg.seed, source=f"data.path={d.path!r}")
    elif d.source == "hf":
        files = d.hf_data_files.to_dict() or None
        train_docs, train_id = data_lib.hf_documents(d.hf_name, d.hf_config or None, "train", files)
        val_docs, val_id = data_lib.hf_documents(d.hf_name, d.hf_config or None, "validation", files)
        corpus = {"source": "hf", "name": d.hf_name, "config": d.hf_config,
                  "train": train_id, "validation": val_id}
    else:
        raise ValueError(f"data.source={d.source!r}; choose austen, shakespeare, files or hf")

    if saved_tokenizer is not None:
        tokenizer = _load_saved(saved_tokenizer, d.tokenizer)
    elif d.tokenizer == "bpe":
        tokenizer = BPETokenizer.train_or_load(train_docs, d.vocab_size)
    else:
        tokenizer = PretrainedTokenizer(cfg.model.pretrained)
    train_windows = data_lib.pack(tokenizer.encode_batch(train_docs), tokenizer.eos_id, d.seq_len)
    val_windows = data_lib.pack(tokenizer.encode_batch(val_docs), tokenizer.eos_id, d.seq_len)
    if len(val_windows) == 0:
        raise ValueError(f"the validation split is shorter than one window of {d.seq_len + 1} "
                         f"tokens; raise data.val_fraction or shorten data.seq_len")
    fingerprint = {"corpus": corpus, "split": data_fingerprint.split_entry(
        len(train_docs), len(val_docs), train_windows, val_windows)}
    return Data(tokenizer, data_lib.BatchOrder(train_windows, cfg.train.batch_size, cfg.seed),
                val_windows, fingerprint)


def synthetic_data(cfg, vocab_size: int, batches: int = 4) -> Data:
    """Uniformly random token windows for ``cfg``'s batch shape, for benchmarks that
    time the step of a model with any vocabulary without a corpus or tokenizer."""
    rng = np.random.default_rng(cfg.seed)
    windows = rng.integers(0, vocab_size, (batches * cfg.train.batch_size, cfg.data.seq_len + 1),
                           dtype=np.int32)
    tokenizer = types.SimpleNamespace(vocab_size=vocab_size, eos_id=0)
    return Data(tokenizer, data_lib.BatchOrder(windows, cfg.train.batch_size, cfg.seed),
                windows[:cfg.train.batch_size])
