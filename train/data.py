"""Corpora, deterministic train/validation splits, packing and a resumable batch order.

A corpus is a list of documents. Documents go to validation by a seeded permutation,
are tokenized, joined with EOS and packed into windows of ``seq_len + 1`` tokens. The
training order is a seeded shuffle of the windows, reshuffled each epoch; the only
state is the number of batches consumed, which the checkpoint records.
"""

from __future__ import annotations

import gzip
import pathlib
import re
import warnings

import numpy as np

from train.errors import InputError

AUSTEN_DIR = pathlib.Path(__file__).parent / "corpus" / "austen"
_CHAPTER = re.compile(r"^\s*chapter\b", re.IGNORECASE | re.MULTILINE)


class NotUTF8Warning(UserWarning):
    """A corpus file that is not UTF-8 and was decoded as Latin-1."""


def _read_text(path: pathlib.Path) -> str:
    """The file's text: UTF-8, or (with a warning naming the file) Latin-1, which
    decodes any byte; a file is never skipped or half-read silently."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        warnings.warn(f"{path} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                      f"decoding it as Latin-1. Convert it to UTF-8 to silence this.",
                      NotUTF8Warning, stacklevel=2)
        return raw.decode("latin-1")


def austen_documents() -> list[str]:
    """The six novels, one document per chapter (the embedded default corpus)."""
    files = sorted(AUSTEN_DIR.glob("*.txt.gz"))
    if not files:
        raise FileNotFoundError(f"the embedded Austen corpus is missing from {AUSTEN_DIR}")
    docs = []
    for path in files:
        text = _read_text(path)
        starts = [m.start() for m in _CHAPTER.finditer(text)] or [0]
        docs += [text[a:b].strip() for a, b in zip(starts, starts[1:] + [len(text)])]
    return [d for d in docs if d]


# A single file is cut into documents of about this many characters, at paragraph
# (or, failing that, line and word) boundaries, so that a validation split exists.
DOCUMENT_CHARS = 4000
_PARAGRAPH = re.compile(r"\n\s*\n")


def file_documents(path) -> list[str]:
    """A folder of ``.txt``/``.txt.gz`` files (one document each) or a single text
    file; a single file, or a folder holding one, is split into documents of about
    ``DOCUMENT_CHARS`` characters (``split_text``)."""
    path = pathlib.Path(path).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.name.endswith((".txt", ".txt.gz")) and p.is_file())
        if not files:
            raise InputError(f"data.path={str(path)!r}: no .txt or .txt.gz files in this folder")
    else:
        raise InputError(f"data.path={str(path)!r}: corpus path {path} does not exist")
    texts = [t for t in (_read_text(p) for p in files) if t.strip()]
    if len(texts) == 1:
        return split_text(texts[0])
    return texts


def split_text(text: str, chars: int = DOCUMENT_CHARS) -> list[str]:
    """Consecutive paragraph blocks of about ``chars`` characters; a paragraph longer
    than that is cut at line, then word, boundaries (a hard cut only for a word
    longer than ``chars``)."""
    pieces = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = paragraph.strip()
        while len(paragraph) > chars:
            cut = max(paragraph.rfind("\n", 0, chars), paragraph.rfind(" ", 0, chars))
            cut = cut if cut > 0 else chars
            pieces.append(paragraph[:cut].strip())
            paragraph = paragraph[cut:].strip()
        if paragraph:
            pieces.append(paragraph)
    docs, current = [], ""
    for piece in pieces:
        current = f"{current}\n\n{piece}" if current else piece
        if len(current) >= chars:
            docs.append(current)
            current = ""
    if current:
        docs.append(current)
    return docs


def hf_documents(name: str, config_name: str | None, split: str,
                 data_files: dict | None = None) -> list[str]:
    """A Hugging Face dataset split's ``text`` column (e.g. WikiText-103 raw, or local
    files through the ``text`` builder with ``data_files``)."""
    from datasets import load_dataset

    dataset = load_dataset(name, config_name, split=split, data_files=data_files or None)
    return [t for t in dataset["text"] if t.strip()]


def split_documents(docs: list[str], val_fraction: float, seed: int):
    """Deterministic split by a seeded permutation of the documents."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"data.val_fraction={val_fraction} must be in (0, 1)")
    if len(docs) < 2:
        raise InputError(f"the corpus has {len(docs)} document(s) (under {DOCUMENT_CHARS} "
                         f"characters of text); need at least 2 to hold one out for validation")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = max(1, int(round(val_fraction * len(docs))))
    val = set(order[:n_val].tolist())
    return ([d for i, d in enumerate(docs) if i not in val], [d for i, d in enumerate(docs) if i in val])


def pack(token_lists: list[list[int]], eos_id: int, seq_len: int) -> np.ndarray:
    """Joins documents with EOS and cuts windows of seq_len + 1 tokens (stride seq_len),
    so every position is a next-token target exactly once."""
    stream = np.fromiter((t for ids in token_lists for t in [*ids, eos_id]), dtype=np.int32)
    n = (len(stream) - 1) // seq_len
    if n < 1:
        return np.zeros((0, seq_len + 1), np.int32)
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return stream[idx]


class BatchOrder:
    """Global batches in a seeded, per-epoch shuffled order; position = batches consumed."""

    def __init__(self, windows: np.ndarray, batch_size: int, seed: int):
        if len(windows) < batch_size:
            raise InputError(f"the training split packs into {len(windows)} windows, fewer than "
                             f"one batch of {batch_size}: use a larger corpus, a smaller "
                             f"batch_size or a shorter seq_len")
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.per_epoch = len(windows) // batch_size
        self._epoch, self._order = None, None

    def batch(self, index: int) -> np.ndarray:
        epoch, k = divmod(index, self.per_epoch)
        if epoch != self._epoch:  # one permutation per epoch, a pure function of (seed, epoch)
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))
        return self.windows[self._order[k * self.batch_size:(k + 1) * self.batch_size]]
