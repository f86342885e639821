"""What defines a run's data, so that a resume cannot silently train or validate on
other data than the run began with.

The fingerprint holds the corpus files' names, sizes and SHA-256 (read in blocks, so a
large file is never held twice), or a Hugging Face dataset's name, splits and
``datasets`` fingerprints, and the split the run made of them: the documents, windows
and tokens on each side and a SHA-256 of the validation windows. It is written to
``<run>/data.json`` when the run starts (its digest goes into every checkpoint); a
resume computes it again and refuses any difference, listing it, unless
``data.accept_changes=True``.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np

from lbw_jax.train.errors import InputError
from lbw_jax.train.records.repair import read_json, set_aside

FINGERPRINT_FILE = "data.json"


def file_sha256(path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def files_entry(files, root=None) -> list[dict]:
    """Name (relative to ``root``), size and SHA-256 of each file."""
    out = []
    for path in files:
        path = pathlib.Path(path)
        name = str(path.relative_to(root)) if root is not None and path != root else path.name
        out.append({"name": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return out


def split_entry(train_docs: int, val_docs: int, train_windows: np.ndarray,
                val_windows: np.ndarray) -> dict:
    return {"train_documents": train_docs, "val_documents": val_docs,
            "train_windows": int(len(train_windows)), "val_windows": int(len(val_windows)),
            "val_tokens": int(val_windows[:, 1:].size),
            "val_sha256": hashlib.sha256(np.ascontiguousarray(val_windows).tobytes()).hexdigest()}


def digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list) and tree and all(isinstance(v, dict) and "name" in v for v in tree):
        out = {}
        for entry in tree:  # files by name, so a new or removed file is named
            out.update(_flat({k: v for k, v in entry.items() if k != "name"},
                             f"{prefix}{entry['name']}."))
        return out
    return {prefix[:-1]: tree}


def changes(saved: dict, current: dict) -> list[str]:
    """What differs between two fingerprints, one item per field or file."""
    a, b = _flat(saved), _flat(current)
    out = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            old, new = a.get(name, "(absent)"), b.get(name, "(absent)")
            if isinstance(old, str) and len(old) == 64:  # a hash: its prefix says enough
                old, new = old[:12] + "…", (new[:12] + "…") if isinstance(new, str) else new
            out.append(f"{name}: {old} -> {new}")
    return out


def check_data(out: pathlib.Path, fingerprint: dict, saved_digest: str | None,
               accept: bool, say=print) -> bool:
    """Compares ``fingerprint`` with the run's record; returns whether to (re)write it.

    Raises ``InputError`` on a change unless ``accept`` (``data.accept_changes``)."""
    record = out / FINGERPRINT_FILE
    if record.exists():
        try:
            saved = read_json(record)
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if saved_digest is None:
                raise InputError(f"{record} is not valid JSON ({e}), and the checkpoint holds no "
                                 f"digest of the data to compare with instead; restore it, or "
                                 f"delete it to record the current data") from e
            # Damaged: the checkpoint's digest still says what the data were.
            set_aside(record, "comparing the data with the digest the checkpoint holds", say)
    if record.exists():
        diff = changes(saved, fingerprint)
    elif saved_digest is not None:
        diff = [] if saved_digest == digest(fingerprint) else [
            f"the data's digest: {saved_digest[:12]}… -> {digest(fingerprint)[:12]}… "
            f"({record} is missing, so the fields cannot be listed)"]
        if not diff:
            say(f"{record} is missing; the data match the digest the checkpoint holds, so "
                f"it is written again")
    else:  # a run from before data fingerprints: nothing to compare with
        say(f"{out} has no record of its data (it predates data fingerprints); "
            f"recording the current data in {record}")
        return True
    if not diff:
        return not record.exists()
    if not accept:
        raise InputError(
            f"the data of the run in {out} changed since it began; resuming would train or "
            f"validate on other data. Changed: {'; '.join(diff)}. Restore the data, choose a "
            f"new output_dir, or accept the change with --config.data.accept_changes=True")
    say(f"data.accept_changes=True: resuming on changed data ({'; '.join(diff)}); "
        f"{record} now records the new data")
    return True
