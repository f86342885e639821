"""The kill -9 soak (issue 45): a small run of ``python -m lbw_jax.train.run`` killed
with SIGKILL at seeded points (during startup, between steps, and inside checkpoint
writes) and resumed each time with the same command, ends exactly where an
uninterrupted run of the same config ends.

The kill points come from ``random.Random(seed)``; the seed is 45 unless
``LBW_SOAK_SEED`` names another (``LBW_SOAK_SEED=random`` draws one). Every assertion
message holds the seed and each attempt's kill, so a failure can be replayed."""

import json
import os
import pathlib
import random
import signal
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from harness_helpers import SMALL_FLAGS, run_cli
from lbw_jax.train.data.dataset import austen_documents
from lbw_jax.train.records.metrics import read_metrics

STEPS = 40
TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Kills of each kind; the plan shuffles them. "write": inside the 1st-3rd checkpoint write
# of the attempt (as soon as its temporary folder appears); "records": after 1-4 new
# training records; "delay": 0.3-6 s after the start (startup, compile, restore), or after
# 2 new records if that comes first. STEPS is above the most steps they can advance the run.
PLAN = {"write": 3, "records": 4, "delay": 3}
MAX_EXTRA_WRITE_KILLS = 6   # a write kill that came after the commit is tried again
ATTEMPT_TIMEOUT_S = 240


def _seed() -> int:
    text = os.environ.get("LBW_SOAK_SEED", "45")
    return random.SystemRandom().randrange(2**31) if text == "random" else int(text)


def _flags(out: pathlib.Path, corpus: pathlib.Path) -> list[str]:
    small = [f for f in SMALL_FLAGS if not f.startswith(("--config.train.log_every=",
                                                         "--config.train.eval_every=",
                                                         "--config.train.checkpoint_every="))]
    return ["--config.output_dir=" + str(out), *small, f"--config.train.steps={STEPS}",
            "--config.train.log_every=1", "--config.train.eval_every=8",
            "--config.train.checkpoint_every=2",
            # A small corpus: each restart tokenizes it again (the embedded one costs ~6 s).
            "--config.data.source=files", f"--config.data.path={corpus}"]


def _env(cache: pathlib.Path) -> dict:
    """A compilation cache shared by every process of the test (restarts skip the compile)."""
    return {"JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


class _Output:
    """Reads a process's output in a thread, so a full pipe never blocks it."""

    def __init__(self, proc):
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc):
        self.text = proc.stdout.read()

    def join(self) -> str:
        self._thread.join(timeout=60)
        return self.text


def _committed(ck: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in ck.glob("*") if p.name.isdigit()) if ck.is_dir() else []


def _tmp_folders(ck: pathlib.Path) -> dict[str, int]:
    """The temporary folders of checkpoint writes in ``ck``: name -> inode."""
    try:
        names = os.listdir(ck)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        if name.endswith(TMP_SUFFIX):
            try:
                found[name] = os.stat(ck / name).st_ino
            except FileNotFoundError:
                pass   # committed (renamed) meanwhile
    return found


def _open_dir(path: pathlib.Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


class _NewRecords:
    """The training records a process wrote since it started: its MetricsWriter replaces
    (resume: truncates) or deletes (fresh start) the file first, so only a file with
    another inode than the one at the start is this process's."""

    def __init__(self, path: pathlib.Path, base: int):
        self.path, self.base = path, base
        # Held open, so that its inode is not reused by the file that replaces it.
        self._old = open(path) if path.exists() else None
        self.inode = os.fstat(self._old.fileno()).st_ino if self._old else None
        self._size, self.last = -1, None

    def close(self):
        if self._old is not None:
            self._old.close()

    def reopened(self) -> bool:
        """Whether this process has opened its MetricsWriter (so it is past the start of
        its ``Checkpoints``, which removes the writes an earlier kill left half done)."""
        try:
            return self.path.stat().st_ino != self.inode
        except FileNotFoundError:
            return False

    def past_base(self) -> int:
        """How many steps past ``base`` the newest training record of this process is."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0
        if st.st_ino == self.inode:
            return 0
        if st.st_size != self._size:
            self._size = st.st_size
            lines = self.path.read_text().splitlines()
            steps = [json.loads(line)["step"] for line in lines
                     if line.endswith("}") and '"kind": "train"' in line]
            self.last = max(steps, default=None)
        return 0 if self.last is None else self.last - self.base


def _attempt(cmd, env, out: pathlib.Path, kill: dict) -> dict:
    """Starts the run and SIGKILLs it as ``kill`` says; returns what happened."""
    ck = out / "checkpoints"
    committed = _committed(ck)
    base = committed[-1] if committed else 0
    remaining = STEPS - base
    stale = _tmp_folders(ck)   # left by an earlier kill: not this process's writes
    # Held open, so that no folder this process creates gets one of their inodes.
    held = [_open_dir(ck / name) for name in stale]
    records = _NewRecords(out / "metrics.jsonl", base)
    # a write of a step above this one (the first save of a fresh start is step 0)
    above = (committed[-1] if committed else -1) + 2 * kill.get("skip", 0)
    above = min(above, STEPS - 1)
    n_records = min(kill.get("records", 2), max(1, remaining - 1))
    event = {"kind": kill["kind"], "from": base, **{k: v for k, v in kill.items() if k != "kind"}}
    t0 = time.monotonic()
    proc = run_cli(cmd, env_extra=env, wait=False)
    output = _Output(proc)
    fired, seen = None, None
    while proc.poll() is None and fired is None:
        elapsed = time.monotonic() - t0
        if elapsed > ATTEMPT_TIMEOUT_S:
            fired = "timeout"
        elif kill["kind"] == "write":
            for name, inode in _tmp_folders(ck).items():
                if stale.get(name) != inode and int(name.split(".")[0]) > above:
                    fired, seen = "write", (name, inode)
                    break
        elif kill["kind"] == "records":
            if records.past_base() >= n_records:
                fired = "records"
        elif elapsed >= kill["delay"] or records.past_base() >= min(2, n_records):
            fired = "delay"
        if fired is None:
            time.sleep(0.001 if kill["kind"] == "write" else 0.01)
    if fired is not None:
        proc.send_signal(signal.SIGKILL)
    at_s = round(time.monotonic() - t0, 2)
    rc = proc.wait(timeout=60)
    if records.reopened():   # the half-written checkpoints of earlier kills are gone
        now = _tmp_folders(ck)
        event["stale_left"] = sorted(name for name, inode in stale.items() if now.get(name) == inode)
    records.close()
    for fd in held:
        if fd is not None:
            os.close(fd)
    event.update(at_s=at_s, rc=rc,
                 last_train_record=records.last, output=output.join())
    if fired == "write":
        name, inode = seen
        try:
            still = os.stat(ck / name).st_ino == inode
        except FileNotFoundError:
            still = False
        event["in_write"] = name if still else None   # the evidence: it outlived the process
    return event


def _describe(seed: int, events: list[dict]) -> str:
    lines = [f"LBW_SOAK_SEED={seed}; attempts:"]
    for i, e in enumerate(events):
        shown = {k: v for k, v in e.items() if k != "output"}
        lines.append(f"  {i}: {shown}")
    return "\n".join(lines)


def _tail(event: dict, chars: int = 3000) -> str:
    return "\n--- output of the last attempt ---\n" + event["output"][-chars:]


def _newest_checkpoint(run_dir: pathlib.Path):
    step = _committed(run_dir / "checkpoints")[-1]
    state = ocp.StandardCheckpointer().restore(run_dir / "checkpoints" / str(step) / "state")
    meta = json.loads((run_dir / "checkpoints" / str(step) / "meta" / "metadata").read_text())
    meta.pop("config")   # holds the output_dir
    return step, jax.tree_util.tree_flatten_with_path(state)[0], meta


def _plan(rng: random.Random) -> list[dict]:
    kinds = [kind for kind, n in PLAN.items() for _ in range(n)]
    rng.shuffle(kinds)
    plan = []
    for kind in kinds:
        if kind == "write":
            plan.append({"kind": kind, "skip": rng.randint(0, 2)})
        elif kind == "records":
            plan.append({"kind": kind, "records": rng.randint(1, 4)})
        else:
            plan.append({"kind": kind, "delay": round(rng.uniform(0.3, 6.0), 2)})
    return plan


@pytest.mark.slow
def test_kill_9_at_random_points_resumes_bit_identically(tmp_path):
    seed = _seed()
    rng = random.Random(seed)
    print(f"LBW_SOAK_SEED={seed}")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(austen_documents()[:20]):
        (corpus / f"chapter{i:02d}.txt").write_text(text)
    env = _env(tmp_path / "jax_cache")
    start = time.monotonic()

    reference = run_cli(_flags(tmp_path / "reference", corpus), env_extra=env, timeout=600)
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]

    out = tmp_path / "soak"
    cmd = _flags(out, corpus)
    plan, events, extra = _plan(rng), [], 0
    while plan:
        kill = plan.pop(0)
        event = _attempt(cmd, env, out, kill)
        events.append(event)
        story = _describe(seed, events)
        assert event["rc"] == -signal.SIGKILL, (
            f"the run ended by itself (exit {event['rc']}) before its kill\n{story}{_tail(event)}")
        assert event["at_s"] < ATTEMPT_TIMEOUT_S, f"no kill condition came\n{story}{_tail(event)}"
        if kill["kind"] == "write" and event["in_write"] is None and extra < MAX_EXTRA_WRITE_KILLS:
            extra += 1   # the write was committed before the kill landed: try again
            plan.insert(0, {"kind": "write", "skip": 0})

    final = run_cli(cmd, env_extra=env, timeout=600)
    wall = time.monotonic() - start
    events.append({"kind": "none (the final attempt)", "rc": final.returncode,
                   "output": final.stdout + final.stderr})
    story = _describe(seed, events)
    print(story)
    kills = [e for e in events if e["rc"] == -signal.SIGKILL]
    in_write = [e for e in kills if e.get("in_write")]
    print(f"{len(kills)} kills, {len(in_write)} inside a checkpoint write; {wall:.0f} s in all")
    assert final.returncode == 0, f"the final attempt failed\n{story}{_tail(events[-1])}"
    assert len(kills) >= 8 and len(in_write) >= 2, story

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == STEPS, f"{summary}\n{story}"

    records, expected = read_metrics(out), read_metrics(tmp_path / "reference")
    keys = [(r["step"], r["kind"]) for r in records]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicated, f"records logged twice: {duplicated}\n{story}"
    train = {r["step"]: r for r in records if r["kind"] == "train"}
    assert sorted(train) == list(range(1, STEPS + 1)), f"train records: {sorted(train)}\n{story}"
    assert ([r["step"] for r in records if r["kind"] == "eval"]
            == [r["step"] for r in expected if r["kind"] == "eval"]), story
    losses = {r["step"]: r["loss"] for r in expected if r["kind"] == "train"}
    assert {s: r["loss"] for s, r in train.items()} == losses, f"losses differ\n{story}"

    step, leaves, meta = _newest_checkpoint(out)
    ref_step, ref_leaves, ref_meta = _newest_checkpoint(tmp_path / "reference")
    assert step == ref_step == STEPS, story
    assert [p for p, _ in leaves] == [p for p, _ in ref_leaves], story
    for (path, a), (_, b) in zip(leaves, ref_leaves):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                      err_msg=f"{jax.tree_util.keystr(path)}\n{story}")
    assert meta == ref_meta, story

    assert (out / "run.lock").read_text() == "", f"a lock owner is left\n{story}"
    leftover = sorted(p.name for p in (out / "checkpoints").glob("*" + TMP_SUFFIX))
    assert not leftover, f"half-written checkpoints left: {leftover}\n{story}"
    kept = [(i, e["stale_left"]) for i, e in enumerate(events) if e.get("stale_left")]
    assert not kept, (f"half-written checkpoints an earlier kill left were still there after "
                      f"the next start (attempt, folders): {kept}\n{story}")
