"""The run folder belongs to one run: the lock, a read-only folder, and resumes that
cannot be checked (nothing to resume, a deleted config.json)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from harness_helpers import SMALL_FLAGS, run_cli, small_config
from lbw_jax.train.errors import ConfigError, InputError
from lbw_jax.train.run import train


def _one_error_line(result):
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), out
    return lines[-1]


def _wait_for_steps(run_dir, steps, proc, timeout=300):
    metrics, deadline = run_dir / "metrics.jsonl", time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
            return
        time.sleep(0.2)
    raise AssertionError(f"the first run did not log {steps} steps: {proc.poll()}")


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(tmp_path):
    first = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=100000",
                     "--config.train.checkpoint_every=100000", "--config.train.eval_every=100000",
                     *SMALL_FLAGS[:-3], "--config.train.log_every=1"], wait=False)
    try:
        _wait_for_steps(tmp_path, 3, first)
        second = run_cli(["--config.output_dir=" + str(tmp_path), "--config.optimizer.lr=1e-3",
                          *SMALL_FLAGS], timeout=300)
        assert second.returncode == 2, second.stdout + second.stderr
        line = _one_error_line(second)
        assert "is in use by another run" in line
        assert f"host {socket.gethostname()}, pid {first.pid}" in line
        assert first.poll() is None  # the first run trains on, its records intact
        _wait_for_steps(tmp_path, 6, first)
        first_record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
        assert (first_record["step"], first_record["kind"]) == (1, "train")
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 143, out
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_taken_over_with_a_notice(tmp_path):
    first = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=100000",
                     "--config.train.checkpoint_every=100000", "--config.train.eval_every=100000",
                     *SMALL_FLAGS[:-3], "--config.train.log_every=1"], wait=False)
    _wait_for_steps(tmp_path, 2, first)
    first.kill()  # kill -9: the record stays, the kernel drops the flock
    first.communicate(timeout=60)
    assert str(first.pid) in (tmp_path / "run.lock").read_text()
    second = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=4", *SMALL_FLAGS])
    assert second.returncode == 0, second.stdout + second.stderr
    assert (f"taking over the lock of a run that is no longer alive: host "
            f"{socket.gethostname()}, pid {first.pid}") in second.stdout
    assert (tmp_path / "run.lock").read_text() == ""  # released on a clean exit


@contextlib.contextmanager
def _read_only_mount(path):
    """``path`` on its own tmpfs, remounted read-only by ``make_read_only()`` (root; the
    permission bits do not stop root, so a chmod would test nothing)."""
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs",
                                            str(path)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_a_read_only_run_folder_is_one_line_with_exit_code_2(tmp_path):
    with _read_only_mount(tmp_path / "ro") as make_read_only:
        run = tmp_path / "ro" / "run"
        done = run_cli(["--config.output_dir=" + str(run), "--config.train.steps=4", *SMALL_FLAGS])
        assert done.returncode == 0, done.stdout + done.stderr
        make_read_only()
        for extra in (["--config.train.steps=8"], ["--config.output_dir=" + str(tmp_path / "ro" / "new")]):
            result = run_cli(["--config.output_dir=" + str(run), *SMALL_FLAGS, *extra])
            assert result.returncode == 2, result.stdout + result.stderr
            assert "is not writable" in _one_error_line(result)
            assert "resumed" not in result.stdout


@pytest.mark.slow
def test_resume_true_with_nothing_to_resume_is_refused(tmp_path):
    cfg = small_config(tmp_path / "nothing")
    cfg.resume = True
    with pytest.raises(InputError, match="resume=True but .*nothing holds no run to resume"):
        train(cfg)
    assert not (tmp_path / "nothing").exists()  # not even created


@pytest.mark.slow
def test_a_deleted_config_json_does_not_let_a_resume_change_the_seed(tmp_path):
    train(small_config(tmp_path, steps=4))
    (tmp_path / "config.json").unlink()
    changed = small_config(tmp_path, steps=8)
    changed.seed = 1
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1"):
        train(changed)
    same = train(small_config(tmp_path, steps=8))
    assert same["resumed_from"] == 4
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
