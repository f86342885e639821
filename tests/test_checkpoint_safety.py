"""Checkpoints that cannot be lost: the watchdog's pinned rollback target, checksums
recorded before orbax commits a step, and a full disk reported in one line."""

import json
import os
import subprocess
import time

import numpy as np
import pytest

from harness_helpers import SMALL_FLAGS, run_cli, small_config, unguarded
from lbw_jax.train.session.checkpoint import CheckpointRestoreError, Checkpoints
from lbw_jax.train.records.metrics import read_metrics
from lbw_jax.train.run import train
from lbw_jax.train.session.watchdog import Watchdog


def _steps_on_disk(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_keep_1_with_a_1000x_fault_rolls_back_to_the_pinned_checkpoint_and_finishes(tmp_path):
    """Checkpoint 20 is saved finite but already diverging (the fault is on batches
    15-19, the watchdog fires at step 21); with keep_checkpoints=1, keeping only the newest would
    replace step 10, leaving nothing to roll back to (exit 4, every retry too). Step 10 was
    saved calm and followed by 5 calm steps, so it is pinned and kept besides."""
    cfg = small_config(tmp_path, steps=40, checkpoint_every=10, eval_every=10,
                       keep_checkpoints=1, log_every=1)
    unguarded(cfg)
    cfg.fault.update(lr_factor=1000.0, first_batch=15, last_batch=20)
    summary = train(cfg)
    assert summary["status"] == "finished" and summary["rollbacks"] == 1
    event = summary["events"][0]
    assert (event["onset"], event["step"], event["to_step"]) == (17, 21, 10)
    assert (tmp_path / "checkpoints_discarded" / "20").is_dir()  # kept aside, not lost
    assert summary["val_ppl"] < 400
    records = {r["step"]: r for r in read_metrics(tmp_path) if r["kind"] == "train"}
    # The LR applied is recorded: x1000 in the fault, then the rollback's x0.5 back to
    # x1 over 50 steps (the skipped batches hold the fault, so none is applied again).
    assert records[5]["lr"] == pytest.approx(3e-3)
    assert records[11]["lr"] == pytest.approx(1.5e-3)
    assert records[12]["lr"] == pytest.approx(3e-3 * (0.5 + 0.5 / 50))
    assert _steps_on_disk(tmp_path) == [30, 40]  # the newest, and the pinned one


def test_the_pinned_target_is_the_newest_calm_checkpoint_with_a_calm_window():
    w = Watchdog(patience=3)
    calm = lambda step, loss=1.0: w.observe(step, {"loss": loss})
    for step in range(1, 5):
        calm(step)
    w.saved(4)
    assert (w.pinned, w.protected()) == (0, {0, 4})
    calm(5), calm(6)
    assert w.pinned == 0           # two calm steps: not yet a window of 3
    calm(7)
    assert w.pinned == 4 and w.protected() == {4}
    w.saved(8)
    calm(9), calm(10, loss=9.0)    # a step above the bar: 8 was not followed by a calm window
    assert (w.pinned, w.candidates) == (4, [])
    assert w.protected() == {4}


def test_the_no_usable_checkpoint_message_names_the_steps_after_the_onset(tmp_path):
    checkpoints = Checkpoints(tmp_path, keep=3)
    for step in (0, 5):
        checkpoints.save(step, {"a": np.full(3, step, np.float32)}, {"step": step})
    checkpoints.finish()
    state = {"a": np.zeros(3, np.float32)}
    with pytest.raises(CheckpointRestoreError, match=r"from before step 0 .*step 5: saved at or "
                       r"after step 0, when the divergence began; step 0: saved at or after"):
        checkpoints.restore(state, is_finite=lambda s: True, before=0)
    checkpoints.close()


@pytest.mark.slow
def test_checksums_are_recorded_before_a_step_is_committed(tmp_path):
    """kill -9 right after orbax commits a step: its checksums already exist, so a
    corrupted newest checkpoint is found and the run falls back to the one before."""
    proc = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=100000",
                    *SMALL_FLAGS[:-2], "--config.train.eval_every=100000",
                    "--config.train.checkpoint_every=2"], wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (tmp_path / "checkpoints").is_dir() and len(_steps_on_disk(tmp_path)) >= 3:
            proc.kill()
            break
        time.sleep(0.01)
    proc.communicate(timeout=60)
    assert proc.returncode == -9
    steps = _steps_on_disk(tmp_path)
    assert all((tmp_path / "checksums" / f"{s}.json").is_file() for s in steps), steps
    newest = tmp_path / "checkpoints" / str(steps[-1]) / "state"
    data = max((p for p in newest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[64:128] = bytes(b ^ 0xFF for b in raw[64:128])
    data.write_bytes(bytes(raw))
    cfg = small_config(tmp_path, steps=steps[-1] + 2, checkpoint_every=2, eval_every=100000)
    summary = train(cfg)
    assert summary["resumed_from"] == steps[-2]
    assert (tmp_path / "checkpoints_unusable" / str(steps[-1])).is_dir()


@pytest.mark.slow
def test_a_checkpoint_without_checksums_is_restored_only_with_a_notice(tmp_path, capsys):
    train(small_config(tmp_path, steps=4))
    (tmp_path / "checksums" / "4.json").unlink()  # as code from before save-time checksums left it
    summary = train(small_config(tmp_path, steps=8))
    assert summary["resumed_from"] == 4
    assert "checkpoint 4 has no recorded checksums" in capsys.readouterr().out


@pytest.mark.slow
def test_a_full_disk_is_one_line_with_exit_code_4(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            str(disk)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        result = run_cli(["--config.output_dir=" + str(disk / "run"), "--config.train.steps=40",
                          *SMALL_FLAGS])
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert result.returncode == 4, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "Event loop is closed" not in out, out
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("train:")]
    assert lines[-1].startswith("error: could not write") and "No space left" in lines[-1]
    assert len(lines) <= 3, lines  # the progress bar's last line and the error line


@pytest.mark.slow
def test_an_orbax_without_the_hook_still_records_every_checksum(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    def no_hook(**kwargs):  # as an orbax from before AsyncOptions.post_finalization_callback
        raise TypeError("__init__() got an unexpected keyword argument 'post_finalization_callback'")

    monkeypatch.setattr(ocp, "AsyncOptions", no_hook)
    train(small_config(tmp_path))
    sums = {int(p.stem): json.loads(p.read_text()) for p in (tmp_path / "checksums").iterdir()}
    assert sorted(sums) == _steps_on_disk(tmp_path) == [0, 4, 8]
    assert all(record["files"] for record in sums.values())


def test_a_one_line_error_keeps_its_cause_wherever_the_library_put_it():
    from lbw_jax.train.errors import first_line
    cause = os.strerror(28)                        # "No space left on device"
    middle = OSError(f"{'/a/long/path' * 20}: {cause}: {'while writing a shard ' * 12}")
    assert len(str(middle)) > 300 and cause in first_line(middle) and " ... " in first_line(middle)
    assert first_line(RuntimeError(f"write failed\n{cause}")) == f"RuntimeError: write failed [{cause}]"
    try:
        try:
            raise OSError(28, cause)
        except OSError as e:
            raise RuntimeError("tensorstore: write failed") from e
    except RuntimeError as e:
        assert first_line(e) == f"RuntimeError: tensorstore: write failed [{cause}]"
    assert first_line(ValueError("bad value\nmore")) == "ValueError: bad value"
