"""The run-folder fuzz: every file ``lbw_jax.train.run`` reads at start or resume, damaged
each way, and what the run does about it.

    python tests/run_folder_fuzz.py WORK_DIR [--only SUBSTRING]

A small run (the tests' model, 4 steps, checkpoints at 0, 2 and 4) is made once; then
each case copies its folder, applies one damage to one file and resumes it for one more
step (``summary.json``: reruns the finished run, the only time that file is read). The
contract, checked for every case:

* an exit code from the documented list (``lbw_jax/train/errors.py``), never 1, never a
  traceback: an error other than a ``RunError`` fails the case;
* a line naming the damaged file;
* where an intact checkpoint exists, the newest intact one restored: step 4, or step 2
  when a file of step 4 or its checksum record is damaged.

The cases run in this one process, as ``lbw_jax.train.run.train`` (the CLI maps a
``RunError`` to its exit code and one line: ``tests/test_run_folder_fuzz.py`` runs a few
cases through the CLI too), with a persistent compilation cache so that each case pays
tracing, not compilation. Damage to a file of a checkpoint step is checked where that
file is read: ``Checkpoints`` opened on the damaged folder, as a resume opens it, and
``restore``; one damaged file of each kind is resumed end to end besides.
Prints one line per case and ``N/M cases``; exits 1 if any case broke the contract.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import pathlib
import re
import shutil
import sys
import traceback

import numpy as np

DAMAGES = ("truncated", "zero-filled", "random bytes", "deleted")
# Exit codes a run may end with (lbw_jax/train/errors.py); 1 is a bug.
DOCUMENTED = (0, 2, 3, 4, 5)
# The run folder's files read at start or resume (a checkpoint step's files: below).
RUN_FILES = ("config.json", "data.json", "checksums/4.json", "metrics.jsonl", "summary.json",
             "tokenizer.json", "run.lock")
CORPUS_FILES = ("corpus/a.txt", "corpus/b.txt.gz")


def damage(path: pathlib.Path, kind: str, rng: np.random.Generator) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-filled":
        path.write_bytes(bytes(len(data)))
    elif kind == "random bytes":
        path.write_bytes(rng.bytes(len(data)))
    else:
        path.unlink()


def _cfg(work: pathlib.Path, out: pathlib.Path, steps: int):
    from harness_helpers import small_config

    cfg = small_config(out, steps=steps, checkpoint_every=2, eval_every=2, log_every=1)
    cfg.data.source, cfg.data.path = "files", str(work / "corpus")
    return cfg


def make_base(work: pathlib.Path) -> pathlib.Path:
    """The corpus (one plain and one gzip file) and a finished 4-step run beside it."""
    from data_fixtures import austen_sample
    from lbw_jax.train.run import train

    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    docs = austen_sample(12).split("\n\n")
    (corpus / "a.txt").write_text("\n\n".join(docs[: len(docs) // 2]))
    (corpus / "b.txt.gz").write_bytes(gzip.compress("\n\n".join(docs[len(docs) // 2:]).encode()))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(_cfg(work, work / "base", 4))
    shutil.copytree(corpus, work / "corpus.orig")
    # A run killed mid-way leaves its record in run.lock (a clean exit empties it).
    (work / "base" / "run.lock").write_text(json.dumps(
        {"host": "h", "pid": 1, "token": "t", "started": "2026-12-07 00:00:00"}))
    return work / "base"


def run_case(work: pathlib.Path, name: str, kind: str, rng) -> dict:
    """Copies the base folder (and corpus), damages ``name``, resumes; what happened."""
    from lbw_jax.train.errors import RunError
    from lbw_jax.train.run import train

    case = work / "case"
    shutil.rmtree(case, ignore_errors=True)
    shutil.copytree(work / "base", case)
    shutil.rmtree(work / "corpus")  # the run's data.path: the same folder in every case
    shutil.copytree(work / "corpus.orig", work / "corpus")
    damage(work / name if name.startswith("corpus/") else case / name, kind, rng)
    cfg = _cfg(work, case, 4 if name == "summary.json" else 5)
    buffer, code, line = io.StringIO(), 0, ""
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            train(cfg)
        except RunError as e:
            code, line = e.exit_code, f"error: {e}"
        except Exception:  # noqa: BLE001 - what the CLI would print as a traceback (exit 1)
            code, line = 1, traceback.format_exc()
    text = buffer.getvalue() + line
    restored = re.search(r"resumed \S+ at step (\d+)", text)
    return {"code": code, "text": text, "line": line,
            "restored": int(restored.group(1)) if restored else None}


def largest_state_file(base: pathlib.Path) -> str:
    """Step 4's largest array file: the one damage to a checkpoint resumed end to end."""
    files = [p for p in (base / "checkpoints" / "4" / "state").rglob("*") if p.is_file()]
    return str(max(files, key=lambda p: p.stat().st_size).relative_to(base))


def expected_restore(name: str, kind: str) -> int | None:
    """The newest intact checkpoint, or None where the run must refuse before restoring."""
    if name.startswith("corpus/"):
        return None
    if name == "checksums/4.json" and kind != "deleted":  # step 4 cannot be verified
        return 2
    if name.startswith("checkpoints/4/state/"):
        return 2
    return 4  # (checkpoints/4/_CHECKPOINT_METADATA: a commit record, no state)


def check(name: str, kind: str, result: dict) -> list[str]:
    """What the case broke of the contract (empty: kept)."""
    problems = []
    if result["code"] not in DOCUMENTED or "Traceback" in result["text"]:
        problems.append(f"exit {result['code']}: {result['text'][-600:]}")
    short = pathlib.PurePath(name).name
    # (A deleted run.lock is nothing to repair or report: the lock is taken anew.)
    if (name, kind) != ("run.lock", "deleted") and not any(short in line for line in result["text"].splitlines()
               if not line.startswith(("train:", "summary:"))):
        problems.append(f"no line names {short}")
    want = expected_restore(name, kind)
    if want is None and result["code"] == 0:
        problems.append("a damaged corpus trained")
    if want is not None and result["code"] != 0:
        problems.append(f"exit {result['code']} where checkpoint {want} is intact: {result['line']}")
    if want is not None and result["code"] == 0 and result["restored"] != want:
        problems.append(f"restored step {result['restored']}, not {want}")
    return problems


def checkpoint_cases(work: pathlib.Path, rng) -> list[tuple[str, str, list[str]]]:
    """Every file of step 4, each damage, read as a resume reads it: the newest intact
    step (2) must be restored and the damage named; nothing else may be raised."""
    from lbw_jax.train.session.checkpoint import Checkpoints
    from lbw_jax.train.trainer import Trainer
    from lbw_jax.train.data.build import build_data

    cfg = _cfg(work, work / "base", 5)
    trainer = Trainer.build(cfg, build_data(cfg))
    step_dir = work / "base" / "checkpoints" / "4"
    names = sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file())
    out = []
    for name in names:
        for kind in DAMAGES:
            case = work / "case"
            shutil.rmtree(case, ignore_errors=True)
            shutil.copytree(work / "base", case)
            damage(case / "checkpoints" / "4" / name, kind, rng)
            said, problems = [], []
            try:
                ckpt = Checkpoints(case, 3)
                step, _, _ = ckpt.restore(trainer.checkpoint_state(),
                                          is_finite=trainer.state_is_finite, say=said.append)
                ckpt.close()
            except Exception:  # noqa: BLE001 - a traceback at resume
                problems.append(traceback.format_exc()[-600:])
                step = None
            # The commit records orbax writes after the checksums hold no state: step 4's
            # state is intact, so it is the newest intact checkpoint.
            want = 4 if name in ("_CHECKPOINT_METADATA", "commit_success.txt") else 2
            if step != want:
                problems.append(f"restored step {step}, not {want}")
            if not any(pathlib.PurePath(name).name in s for s in said):
                problems.append(f"no line names {name}: {said}")
            out.append((f"checkpoints/4/{name}", kind, problems))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=pathlib.Path)
    p.add_argument("--only", default="", help="run the cases whose file name contains this")
    p.add_argument("--no-checkpoint-files", action="store_true")
    args = p.parse_args(argv)
    import jax

    cache = args.work / "xla_cache"
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    rng = np.random.default_rng(0)
    shutil.rmtree(args.work / "base", ignore_errors=True)
    shutil.rmtree(args.work / "corpus", ignore_errors=True)
    shutil.rmtree(args.work / "corpus.orig", ignore_errors=True)
    make_base(args.work)
    results = []
    resumed = (*RUN_FILES, largest_state_file(args.work / "base"),
               "checkpoints/4/_CHECKPOINT_METADATA", *CORPUS_FILES)
    for name in resumed:
        if args.only in name:
            for kind in DAMAGES:
                r = run_case(args.work, name, kind, rng)
                results.append((name, kind, check(name, kind, r)))
                print(json.dumps({"file": name, "damage": kind, "exit": r["code"],
                                  "restored": r["restored"], "problems": results[-1][2]}), flush=True)
    if not args.no_checkpoint_files and args.only in "checkpoints/4/":
        for name, kind, problems in checkpoint_cases(args.work, rng):
            results.append((name, kind, problems))
            print(json.dumps({"file": name, "damage": kind, "problems": problems}), flush=True)
    kept = sum(not problems for _, _, problems in results)
    print(f"{kept}/{len(results)} cases", flush=True)
    return 0 if kept == len(results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    sys.exit(main())
