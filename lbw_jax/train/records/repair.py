"""Repairs of a run folder's own files, none of which throws anything away.

* A JSON-lines record whose tail was torn (a crash mid-write, a full disk, damage) is cut
  back to its last whole record, as etcd repairs its write-ahead log on open; the cut
  bytes are kept beside it (``repair_tail``).
* A damaged file the run can do without or rebuild (``config.json``, ``data.json``,
  ``summary.json``, the tokenizer) is renamed ``<name>.damaged-<time>`` and the run says
  in one line what it does instead (``set_aside``).
"""

from __future__ import annotations

import json
import pathlib
import time


def _whole(line: bytes, required: tuple[str, ...]) -> bool:
    """Whether ``line`` (without its newline) is one JSON object holding ``required``."""
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:  # (UnicodeDecodeError is one)
        return False
    return isinstance(record, dict) and all(key in record for key in required)


def whole_prefix(data: bytes, required: tuple[str, ...] = ()) -> int:
    """The length of the longest prefix of ``data`` made of whole records: lines that end
    with a newline and are each a JSON object with the ``required`` keys (blank lines
    pass). The first line that is not, and everything after it, is the torn tail."""
    end = 0
    while end < len(data):
        newline = data.find(b"\n", end)
        if newline < 0:  # a last line with no newline was cut mid-write
            break
        line = data[end:newline]
        if line.strip() and not _whole(line, required):
            break
        end = newline + 1
    return end


def repair_tail(path: pathlib.Path, required: tuple[str, ...] = (), say=print) -> pathlib.Path | None:
    """Cuts ``path`` back to its whole records (``whole_prefix``); the bytes cut are kept
    in ``<path>.torn-<time>`` and said in one line. Returns that file, or ``None`` when
    the file was whole (or absent)."""
    if not path.exists():
        return None
    data = path.read_bytes()
    keep = whole_prefix(data, required)
    if keep == len(data):
        return None
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():  # two repairs within a second keep both tails
        aside, n = aside.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{n}"), n + 1
    aside.write_bytes(data[keep:])
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data[:keep])
    tmp.replace(path)
    say(f"{path}: its last {len(data) - keep} of {len(data)} bytes were not whole records "
        f"(a write cut short, or damage); cut back to the last whole record, the cut bytes "
        f"kept in {aside}")
    return aside


def set_aside(path: pathlib.Path, why: str, say=None) -> pathlib.Path:
    """Renames a damaged run file to ``<name>.damaged-<time>`` (kept, never deleted) and
    says so in one line ending with ``why`` (what the run does instead)."""
    say = say or (lambda line: print(line, flush=True))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    path.rename(aside)
    say(f"{path} is damaged; kept as {aside.name}; {why}")
    return aside


def read_json(path: pathlib.Path):
    """The JSON value in ``path``; ``ValueError`` if it is not whole JSON (truncated, zeros,
    random bytes: a ``UnicodeDecodeError`` is a ``ValueError`` too)."""
    return json.loads(path.read_bytes().decode("utf-8"))
