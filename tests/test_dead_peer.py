"""A dead peer in a multi-process run (issue 45): every survivor exits with code 5 in one
line, within the configured time, and a restart of all processes resumes to the result
of a clean run. Two processes of ``lbw_jax.train.run`` on localhost (gloo), as in
tests/test_harness.py."""

import json
import signal
import socket
import time

import pytest

from harness_helpers import SMALL_FLAGS, run_cli
from lbw_jax.train.data.dataset import austen_documents
from lbw_jax.train.errors import EXIT_PEER
from lbw_jax.train.records.metrics import read_metrics

PEER_TIMEOUT_S = 10   # distributed.peer_timeout_s here (the default is 60)
INIT_TIMEOUT_S = 10   # distributed.init_timeout_s of the test of a process that never joins
# A survivor's exit is measured from the kill; the margin covers a loaded machine.
EXIT_MARGIN_S = 15
STEPS = 40
KILL_AT = 10   # steps logged: the save of step 8 has begun, so that of step 4 is complete
# Each step logged (the kill lands mid-run) and one evaluation. Each launch costs its
# start-up: a small corpus (the embedded one takes seconds to tokenize) and, for the clean
# run and the restart, a compilation cache (the restart skips the compile).
FLAGS = [*SMALL_FLAGS, f"--config.train.steps={STEPS}", "--config.train.log_every=1",
         f"--config.train.eval_every={STEPS}", "--config.train.checkpoint_every=4",
         f"--config.distributed.peer_timeout_s={PEER_TIMEOUT_S}"]


def _corpus_flags(root):
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(austen_documents()[:12]):
        (corpus / f"chapter{i:02d}.txt").write_text(text)
    return [*FLAGS, "--config.data.source=files", f"--config.data.path={corpus}"]


def _cache(root) -> dict:
    return {"JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, port, process_id, flags, env=None):
    return run_cli(["--config.output_dir=" + str(out), *flags,
                    f"--config.distributed.coordinator=127.0.0.1:{port}",
                    "--config.distributed.num_processes=2",
                    f"--config.distributed.process_id={process_id}"],
                   devices=1, env_extra=env, wait=False)


def _start_two(out, flags, env=None):
    port = _free_port()
    return [_start(out, port, i, flags, env) for i in range(2)]


def _finish_two(procs):
    """Waits for both processes; their outputs (each must exit 0)."""
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    return outs


def _steps_logged(out) -> int:
    try:
        text = (out / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return 0
    return text.count('"kind": "train"')


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """Three runs of two processes, started together (each launch is mostly start-up and
    compiling, so they share it): a clean one to the end, one whose process 1 is SIGKILLed
    mid-run and one whose process 0 is. For each victim, the survivor's exit code, output
    and seconds from the kill to its exit, and the run folder."""
    root = tmp_path_factory.mktemp("dead_peer")
    flags = _corpus_flags(root)
    clean = _start_two(root / "clean", flags, _cache(root))
    runs = {victim: _start_two(root / f"kill{victim}", flags) for victim in (1, 0)}
    killed, exited, deadline = {}, {}, time.time() + 400
    while len(exited) < len(runs):
        for victim, procs in runs.items():
            if victim not in killed:
                stopped = [p for p in procs if p.poll() is not None]
                assert time.time() < deadline and not stopped, [p.communicate()[0] for p in stopped]
                if _steps_logged(root / f"kill{victim}") >= KILL_AT:
                    procs[victim].send_signal(signal.SIGKILL)
                    killed[victim] = time.time()
            elif victim not in exited and procs[1 - victim].poll() is not None:
                exited[victim] = time.time()
        assert time.time() < deadline + PEER_TIMEOUT_S + 120, (killed, exited)
        time.sleep(0.05)
    out = {}
    for victim, procs in runs.items():
        output = procs[1 - victim].communicate()[0]
        out[victim] = (procs[1 - victim].returncode, output, exited[victim] - killed[victim],
                       root / f"kill{victim}")
        procs[victim].communicate()
    _finish_two(clean)
    return root, flags, out


def _assert_one_line(output, *, names):
    errors = [line for line in output.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert names in errors[0] and "same command" in errors[0] and "resumes" in errors[0], errors
    assert "Traceback" not in output and "Fatal Python error" not in output, output


def _results(out):
    losses = {r["step"]: r["loss"] for r in read_metrics(out) if r["kind"] == "train"}
    return losses, json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_a_dead_worker_ends_process_0_with_code_5_and_a_restart_resumes(killed_runs):
    root, flags, killed = killed_runs
    code, output, elapsed, run_dir = killed[1]
    assert code == EXIT_PEER, output
    assert elapsed <= PEER_TIMEOUT_S + EXIT_MARGIN_S, elapsed
    _assert_one_line(output, names="process 1 (of 2)")
    assert _steps_logged(run_dir) < STEPS   # (the kill landed mid-run)

    _finish_two(_start_two(run_dir, flags, _cache(root)))   # the same command: resumes, finishes
    (clean, clean_summary), (resumed, summary) = _results(root / "clean"), _results(run_dir)
    assert summary["resumed_from"] >= 4   # (a checkpoint from before the kill)
    assert resumed == clean and sorted(clean) == list(range(1, STEPS + 1))
    assert summary["val_loss"] == clean_summary["val_loss"]


@pytest.mark.slow
def test_a_dead_coordinator_ends_the_worker_with_code_5_not_sigabrt(killed_runs):
    code, output, elapsed, _ = killed_runs[2][0]
    assert code == EXIT_PEER, output   # (JAX's own end would be SIGABRT: -6)
    assert elapsed <= PEER_TIMEOUT_S + EXIT_MARGIN_S, elapsed
    _assert_one_line(output, names="the coordinator (process 0 of 2)")


@pytest.mark.slow
def test_a_process_that_never_joins_ends_the_others_with_code_5(tmp_path):
    """Only process 0 of 2 is started: it waits ``init_timeout_s``, then one line, exit 5."""
    started = time.time()
    proc = _start(tmp_path / "run", _free_port(), 0,
                  [*FLAGS, f"--config.distributed.init_timeout_s={INIT_TIMEOUT_S}"])
    output = proc.communicate(timeout=300)[0]
    elapsed = time.time() - started   # (with the start-up: imports, config)
    assert proc.returncode == EXIT_PEER, output
    assert INIT_TIMEOUT_S <= elapsed <= INIT_TIMEOUT_S + 60, elapsed
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"distributed.init_timeout_s={INIT_TIMEOUT_S}" in errors[0], output
    assert "Traceback" not in output and "Fatal Python error" not in output, output
