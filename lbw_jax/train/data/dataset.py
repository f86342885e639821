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
import zlib

import numpy as np

from lbw_jax.train.errors import InputError

AUSTEN_DIR = pathlib.Path(__file__).parent / "corpus" / "austen"
# The second domain (LoRA fine-tuning onto a new corpus): Shakespeare, one file.
SHAKESPEARE_FILE = pathlib.Path(__file__).parent / "corpus" / "shakespeare" / "tinyshakespeare.txt.gz"
_CHAPTER = re.compile(r"^\s*chapter\b", re.IGNORECASE | re.MULTILINE)


class NotUTF8Warning(UserWarning):
    """A corpus file that is not UTF-8 and was decoded as Latin-1."""


# The printable rule: a text file has next to no unprintable characters: C0 controls
# other than tab, newline, vertical tab, form feed and carriage return; DEL; the C1
# controls U+0080-U+009F (what most bytes 0x80-0x9F of a binary file decode to as
# Latin-1; no text encodes them); and U+FFFD, the replacement character. Binary data
# decoded as Latin-1 has 12-27% of them (random bytes 0x80-0xFF: 25%); text, in any
# script, none (a Windows-1252 file read as Latin-1 keeps its curly quotes as C1 controls,
# a fraction of a percent).
MAX_UNPRINTABLE_FRACTION = 0.01
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")


def _read_bytes(path: pathlib.Path) -> bytes:
    """The file's bytes, decompressed if its name ends in ``.gz``; a file that cannot be
    read whole is an ``InputError`` naming it (exit 2)."""
    try:
        if not path.name.endswith(".gz"):
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputError(f"{path} is not a whole gzip file ({type(e).__name__}: {e}): it was "
                         f"cut short or is not gzip. Compress it again (gzip -k FILE), or remove "
                         f"it from the corpus") from e
    except OSError as e:
        raise InputError(f"{path} cannot be read ({e.strerror or e})") from e


def _read_text(path: pathlib.Path) -> str:
    """The file's text: UTF-8, or (with a warning naming the file) Latin-1, which
    decodes any byte; a file is never skipped or half-read silently, and a file that
    is mostly not text is refused by name."""
    raw = _read_bytes(path)
    try:
        text, bad = raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        text, bad = raw.decode("latin-1"), e.start
    _check_text(path, text)  # before warning about the encoding of a binary file
    if bad is not None:
        warnings.warn(f"{path} is not UTF-8 (byte 0x{raw[bad]:02x} at offset {bad}); "
                      f"decoding it as Latin-1. Convert it to UTF-8 to silence this.",
                      NotUTF8Warning, stacklevel=2)
    return text


def _check_text(path: pathlib.Path, text: str) -> None:
    unprintable = len(_UNPRINTABLE.findall(text))
    if text and unprintable > MAX_UNPRINTABLE_FRACTION * len(text):
        raise InputError(f"{path} is not a text file: {100 * unprintable / len(text):.1f}% of "
                         f"its characters are unprintable (control characters; at most "
                         f"{100 * MAX_UNPRINTABLE_FRACTION:g}% are allowed); remove it from the "
                         f"corpus")


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


def shakespeare_documents() -> list[str]:
    """The plays, cut into documents of about ``DOCUMENT_CHARS`` characters at speech
    boundaries (``split_text``), so that validation is held-out passages."""
    if not SHAKESPEARE_FILE.exists():
        raise FileNotFoundError(f"the embedded Shakespeare corpus is missing: {SHAKESPEARE_FILE}")
    return split_text(_read_text(SHAKESPEARE_FILE))


# A single file is cut into documents of about this many characters, at paragraph
# (or, failing that, line and word) boundaries, so that a validation split exists.
DOCUMENT_CHARS = 4000
_PARAGRAPH = re.compile(r"\n\s*\n")


def corpus_files(path) -> list[pathlib.Path]:
    """The files of ``data.path``: the file itself, or a folder's ``.txt``/``.txt.gz``
    files (recursively, sorted)."""
    path = pathlib.Path(path).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.name.endswith((".txt", ".txt.gz")) and p.is_file())
        if not files:
            raise InputError(f"data.path={str(path)!r}: no .txt or .txt.gz files in this folder")
        return files
    raise InputError(f"data.path={str(path)!r}: corpus path {path} does not exist")


def file_documents(path) -> list[str]:
    """A folder of ``.txt``/``.txt.gz`` files (one document each) or a single text
    file; a single file, or a folder holding one, is split into documents of about
    ``DOCUMENT_CHARS`` characters (``split_text``)."""
    files = corpus_files(path)
    texts = [t for t in (_read_text(p) for p in files) if t.strip()]
    if not texts:
        names = ", ".join(str(p) for p in files[:5]) + (" ..." if len(files) > 5 else "")
        raise InputError(f"data.path={str(path)!r}: the corpus is empty: {names} "
                         f"hold{'s' if len(files) == 1 else ''} no text")
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
                 data_files: dict | None = None) -> tuple[list[str], dict]:
    """A Hugging Face dataset split's ``text`` column (e.g. WikiText-103 raw, or local
    files through the ``text`` builder with ``data_files``), and what identifies it
    (``datasets``' fingerprint of the split and its row count)."""
    from datasets import load_dataset

    from lbw_jax.train.data.hub import offline_hint

    try:
        dataset = load_dataset(name, config_name, split=split, data_files=data_files or None)
    except (OSError, ConnectionError, ValueError) as e:  # datasets' hub errors derive from these
        raise InputError(f"data.hf_name={name!r} (config {config_name!r}, split {split!r}) could "
                         f"not be loaded: {offline_hint(e, 'dataset', name, config_name)}") from e
    ident = {"fingerprint": dataset._fingerprint, "rows": dataset.num_rows}
    return [t for t in dataset["text"] if t.strip()], ident


def split_documents(docs: list[str], val_fraction: float, seed: int, source: str = "the corpus"):
    """Deterministic split by a seeded permutation of the documents; ``source`` names
    the corpus in errors."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"data.val_fraction={val_fraction} must be in (0, 1)")
    if len(docs) < 2:
        raise InputError(f"{source} has {len(docs)} document(s) (under {DOCUMENT_CHARS} "
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
