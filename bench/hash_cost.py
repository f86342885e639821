"""What the run folder's integrity costs: SHA-256 of a checkpoint at save time and the
data fingerprint at start and on every resume.

    python bench/hash_cost.py [--mib 512] [--run runs/tiny]

Prints, one line each:
  * the streaming SHA-256 rate on a file of ``--mib`` MiB (the rate both use);
  * the data fingerprint of the embedded Austen corpus and of a ``--mib`` MiB text
    file as ``data.source=files`` reads it (hashing only, not tokenizing);
  * the checksums of the newest checkpoint in ``--run`` (files, bytes, time), if any:
    the work orbax's post-finalization hook does after each save, on its background
    thread (the training step does not wait for it; the next save does, if it is not
    done yet).
Figures: docs/run_folder.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lbw_jax.train.data import dataset as data_lib  # noqa: E402
from lbw_jax.train.data import fingerprint as data_fingerprint  # noqa: E402
from lbw_jax.train.session.checkpoint import file_digests  # noqa: E402


def _timed(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--run", default="runs/tiny")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        big = pathlib.Path(tmp) / "corpus.txt"
        line = b"It is a truth universally acknowledged, that a single man in possession\n"
        with open(big, "wb") as f:
            for _ in range(args.mib * (1 << 20) // len(line)):
                f.write(line)
        size = big.stat().st_size
        t = _timed(lambda: data_fingerprint.file_sha256(big))
        print(f"sha256 streaming: {size / 2**20:.0f} MiB in {t:.3f} s = {size / 2**20 / t:.0f} MiB/s")
        t = _timed(lambda: data_fingerprint.files_entry(data_lib.corpus_files(big)))
        print(f"data fingerprint, a {size / 2**20:.0f} MiB text file: {t:.3f} s")
    austen = sorted(data_lib.AUSTEN_DIR.glob("*.txt.gz"))
    t = _timed(lambda: data_fingerprint.files_entry(austen))
    print(f"data fingerprint, the Austen corpus ({len(austen)} files, "
          f"{sum(p.stat().st_size for p in austen) / 2**20:.2f} MiB): {1000 * t:.1f} ms")
    checkpoints = pathlib.Path(args.run) / "checkpoints"
    steps = sorted((p for p in checkpoints.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) \
        if checkpoints.is_dir() else []
    if steps:
        newest = steps[-1]
        files = [p for p in newest.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        t = _timed(lambda: file_digests(newest))
        print(f"checkpoint checksums, {newest}: {len(files)} files, {size / 2**20:.1f} MiB in "
              f"{1000 * t:.1f} ms ({os.cpu_count()} cores)")
    else:
        print(f"checkpoint checksums: no checkpoint in {checkpoints} (run python -m lbw_jax.train.run first)")


if __name__ == "__main__":
    main()
