"""Damaged files in a run folder or its corpus: a documented exit code and one line, never
a traceback, nothing lost, and the newest intact checkpoint restored."""

import gzip
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from data_fixtures import austen_sample
from harness_helpers import ROOT, SMALL_FLAGS, run_cli, small_config
from lbw_jax.train.records.metrics import read_metrics
from lbw_jax.train.records.repair import repair_tail, set_aside, whole_prefix
from lbw_jax.train.run import train
from lbw_jax.train.session.checkpoint import remove_partial_writes

RECORD = b'{"step": 1, "kind": "train", "loss": 5.0}\n'


# -- the repairs, exactly ----------------------------------------------------------------

@pytest.mark.parametrize("tail, kept", [
    (b"", 2),                                   # whole: nothing cut
    (b'{"step": 3, "ki', 2),                     # a write cut short (no newline)
    (b"\x00" * 40, 2),                           # zeros where the last record was
    (b'{"step": 3}\n', 2),                       # JSON, but not a record
    (b"\xff\xfe garbage\n" + RECORD, 2),          # a damaged line: it and all after go aside
    (b"\n" + RECORD, 4),                         # a blank line is no damage
])
def test_whole_prefix_keeps_the_whole_records_before_the_first_torn_one(tail, kept):
    lines = [RECORD, RECORD.replace(b"1", b"2", 1), b"\n", RECORD]
    data = RECORD + RECORD.replace(b"1", b"2", 1) + tail
    assert whole_prefix(data, ("step", "kind")) == len(b"".join(lines[:kept]))


def test_repair_tail_keeps_the_cut_bytes_beside_the_file_and_says_so(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(RECORD + b'{"step": 2, "kind": "tr')
    said = []
    aside = repair_tail(path, ("step", "kind"), say=said.append)
    assert path.read_bytes() == RECORD
    assert aside.read_bytes() == b'{"step": 2, "kind": "tr'
    assert aside.name.startswith("metrics.jsonl.torn-")
    assert len(said) == 1 and str(aside) in said[0] and "23 of 65 bytes" in said[0]
    assert repair_tail(path, ("step", "kind"), say=said.append) is None  # now whole
    assert len(said) == 1


def test_set_aside_never_overwrites_an_earlier_copy(tmp_path):
    names = []
    for content in (b"first", b"second"):
        (tmp_path / "config.json").write_bytes(content)
        names.append(set_aside(tmp_path / "config.json", "using the checkpoint's", say=lambda _: None))
    assert names[0] != names[1]
    assert sorted(p.read_bytes() for p in names) == [b"first", b"second"]
    assert not (tmp_path / "config.json").exists()


def test_partial_checkpoint_writes_are_removed_and_committed_steps_kept(tmp_path, capsys):
    for name in ("2", "4", "6.orbax-checkpoint-tmp", "8.orbax-checkpoint-tmp-1765000000"):
        (tmp_path / name / "state").mkdir(parents=True)
    assert remove_partial_writes(tmp_path) == ["6.orbax-checkpoint-tmp",
                                               "8.orbax-checkpoint-tmp-1765000000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "4"]
    assert "removed 2 checkpoint write(s)" in capsys.readouterr().out


# -- the fuzz ------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_damaged_file_gives_a_documented_exit_one_line_and_the_newest_intact_step(tmp_path):
    """tests/run_folder_fuzz.py: every file a start or resume reads x truncated, zero-filled,
    random bytes, deleted."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    result = subprocess.run([sys.executable, "tests/run_folder_fuzz.py", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    lines = result.stdout.strip().splitlines()
    broken = [line for line in lines if line.startswith("{") and json.loads(line)["problems"]]
    count = re.fullmatch(r"(\d+)/(\d+) cases", lines[-1] if lines else "")
    assert count and result.returncode == 0, "\n".join(broken) or result.stdout[-3000:] + result.stderr[-3000:]
    assert count[1] == count[2] and int(count[2]) >= 100, lines[-1]


# -- through the CLI: what a user sees -----------------------------------------------------

@pytest.mark.slow
def test_a_corpus_gz_cut_short_is_one_line_and_exit_2_through_the_cli(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.txt").write_text("Emma Woodhouse, handsome, clever, and rich. " * 400)
    whole = gzip.compress(austen_sample(4).encode())
    (corpus / "more.txt.gz").write_bytes(whole[: len(whole) // 2])
    result = run_cli([f"--config.output_dir={tmp_path / 'run'}", *SMALL_FLAGS, "--config.train.steps=2",
                      "--config.data.source=files", f"--config.data.path={corpus}"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "more.txt.gz is not a whole gzip file" in last


@pytest.mark.slow
def test_a_torn_log_a_corrupt_checksum_record_and_a_partial_write_are_repaired_on_resume(tmp_path):
    """One resume through the CLI meets three kinds of damage at once: it says each in one
    line, keeps what it cut, restores the newest intact step and logs every step once."""
    out = tmp_path / "run"
    train(small_config(out, steps=4, checkpoint_every=2, eval_every=2, log_every=1))
    metrics = out / "metrics.jsonl"
    whole = metrics.read_bytes()
    metrics.write_bytes(whole[:-25])                                  # a torn last record
    (out / "checksums" / "4.json").write_text("{")                    # step 4 unverifiable
    (out / "checkpoints" / "6.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
    result = run_cli([f"--config.output_dir={out}", *SMALL_FLAGS, "--config.train.steps=6",
                      "--config.train.checkpoint_every=2", "--config.train.eval_every=2",
                      "--config.train.log_every=1"])
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "Traceback" not in text
    assert "removed 1 checkpoint write(s)" in text and "6.orbax-checkpoint-tmp" in text
    assert "its checksum record" in text and "4.json is damaged" in text
    assert f"resumed {out} at step 2" in text
    torn = list(out.glob("metrics.jsonl.torn-*"))
    cut = torn[0].read_bytes() if len(torn) == 1 else b""
    assert cut and whole[:-25].endswith(cut) and b"\n" not in cut   # the torn record, kept
    assert (out / "checkpoints_unusable" / "4").is_dir()              # kept, never deleted
    steps = [r["step"] for r in read_metrics(out) if r["kind"] == "train"]
    assert steps == list(range(1, 7))
    assert not list((out / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
