"""bench/gpu_session.sh at toy size on the CPU (TOY=1): every part runs and keeps its
figures, a part that fails with cuDNN is rerun with XLA attention, a part that does not
fit the deadline is not started and is named for the next call, a timed-out part keeps
what it printed, and bench/gpu_step.py prints each result as soon as it has it."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PARTS = ["step_b8", "lora7b", "torch_eager", "stress_gpu", "step_b8_xla", "step_b16", "old_path",
         "torch_compile"]


def _session(out: pathlib.Path, **env) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PARTS", "ATTENTION")}
    environ.update(TOY="1", OUT=str(out), **env)
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh")], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return (out / "session.md").read_text()


def _results(summary: str) -> dict[str, str]:
    """part -> its result cell in session.md's table."""
    parts = summary.split("## Goals")[0]
    rows = [line.split("|")[1:-1] for line in parts.splitlines() if line.startswith("| ")]
    return {r[0].strip(): r[1].strip() for r in rows if r[0].strip() != "part"}


def _table(text: str) -> dict[str, list[str]]:
    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| guard", "| arm"))]
    return {r[0].strip(): [c.strip() for c in r] for r in rows}


@pytest.fixture(scope="module")
def full_session(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_session")
    return out, _session(out)


@pytest.mark.slow
def test_every_part_runs_in_priority_order_and_the_device_is_recorded(full_session):
    out, summary = full_session
    assert list(_results(summary).items()) == [(p, "ok") for p in PARTS]
    device = (out / "device.txt").read_text()
    for name in ("backend: cpu", "jax: ", "jaxlib: ", "flax: ", "cudnn (jax): "):
        assert name in device
    assert "not run for lack of time" not in summary


@pytest.mark.slow
def test_the_step_parts_report_every_policy_against_plain_adamw(full_session):
    out, _ = full_session
    text = (out / "step_b8.txt").read_text()
    rows = _table(text)
    assert list(rows) == ["none", "reflex", "reflex_pro", "governor"]
    assert rows["none"][5] == "1.000x"
    for row in rows.values():
        assert float(row[2].replace(",", "")) > 0           # tokens/s
        assert row[4] == "-"                                # no MFU without a known peak
        assert float(row[6]) > 0 and float(row[7]) > 0      # compile seconds, XLA's plan
    assert "GFLOP/token" in text and "peak unknown" in text and "attention auto" in text
    # The ablations and the batch-16 step: plain AdamW only, each with its own settings.
    assert "attention xla" in (out / "step_b8_xla.txt").read_text()
    old = (out / "old_path.txt").read_text()
    assert "scan_layers False, loss_chunk_tokens -1" in old and list(_table(old)) == ["none"]
    assert "batch 4 x 16" in (out / "step_b16.txt").read_text()


@pytest.mark.slow
def test_the_7b_part_is_the_qwen7b_configs_lora_step(full_session):
    out, _ = full_session
    text = (out / "lora7b.txt").read_text()
    assert "from qwen7b:" in text
    assert "LoRA r16 (adapters float32), base bfloat16" in text and "remat full" in text
    assert list(_table(text)) == ["reflex"]


@pytest.mark.slow
def test_the_torch_parts_run_both_arms(full_session):
    out, _ = full_session
    for name in ("torch_eager", "torch_compile"):
        rows = _table((out / f"{name}.txt").read_text())
        assert list(rows) == ["adamw", "adamw + reflex"], name
        assert all(float(r[2].replace(",", "")) > 0 for r in rows.values())


@pytest.mark.slow
def test_the_stress_part_writes_its_report_with_the_governor_and_its_controls(full_session):
    out, _ = full_session
    results = json.loads((out / "stress_gpu" / "results.json").read_text())
    assert set(results["grid"]) == {"adamw", "clip", "governor", "replay_governor",
                                    "effective_lr_governor"}
    assert {c["arm"] for c in results["cells"] if c["scenario"] != "none"} == {
        "adamw", "clip", "governor", "replay_governor"}
    assert (out / "stress_gpu" / "report.md").exists()


@pytest.mark.slow
def test_a_part_failing_with_cudnn_is_rerun_with_xla_attention_as_are_later_parts(tmp_path):
    # On a CPU, model.attention=cudnn fails at model construction: the fallback's path.
    summary = _session(tmp_path, ATTENTION="cudnn", PARTS="step_b16,old_path")
    results = _results(summary)
    assert results["step_b16"].startswith("exit 1 with cuDNN attention")
    assert results["step_b16 (xla)"] == "ok" and results["old_path"] == "ok"
    assert "needs a GPU" in (tmp_path / "step_b16.cudnn_failed.txt").read_text()
    for name in ("step_b16", "old_path"):
        text = (tmp_path / f"{name}.txt").read_text()
        assert "--attention=xla" in text.splitlines()[0] and list(_table(text)) == ["none"]


@pytest.mark.slow
def test_parts_past_the_deadline_are_not_started_and_a_timed_out_part_keeps_its_output(tmp_path):
    # step_b16 may run to twice its estimate: 2 s, too short to finish; it is stopped and
    # what it printed stays. torch_compile's estimate does not fit the time left.
    summary = _session(tmp_path, PARTS="step_b16,old_path,torch_compile", DEADLINE_S="60",
                       EST_step_b16="1", EST_old_path="20", EST_torch_compile="500")
    results = _results(summary)
    assert results["step_b16"] == "timed out at 2 s: what it printed is kept"
    assert results["old_path"] == "ok"
    assert results["torch_compile"].startswith("not started:")
    assert "next call: PARTS=torch_compile bash bench/gpu_session.sh" in summary
    assert (tmp_path / "step_b16.txt").read_text().splitlines()[-1] == "exit 124"
    assert not (tmp_path / "torch_compile.txt").exists()


@pytest.mark.slow
def test_gpu_step_prints_each_compile_and_round_before_it_finishes():
    # Read through a pipe (block-buffered unless every line is flushed) and stop it after
    # its first round: everything it had measured by then has already arrived.
    cmd = [sys.executable, str(ROOT / "bench" / "gpu_step.py"), "--arch",
           "num_layers=2,hidden_size=32,intermediate_size=64,num_heads=2,num_kv_heads=1,head_dim=16,"
           "vocab_size=256", "--batch", "2", "--seq-len", "16", "--steps", "1", "--rounds", "100000",
           "--policies", "none,governor", "--dtype", "float32"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "XLA_FLAGS")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("round 1/"):
                break
        assert proc.poll() is None, "it ended before its rounds were done"
    finally:
        proc.kill()
        proc.wait()
    assert seen[0].startswith("device: ")
    assert [line.split(":")[0] for line in seen if line.startswith("compiled")] == [
        "compiled none", "compiled governor"]
    assert "none " in seen[-1] and "governor " in seen[-1] and "x)" in seen[-1]


def _part(folder, name, header, rows, extra=""):
    lines = [f"$ python bench/{name}", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n" + extra + "exit 0\n")


STEP = ["guard", "step (s)", "tokens/s", "TFLOP/s", "MFU", "vs plain AdamW", "compile (s)",
        "XLA plan: args + temp (GiB)"]


def test_session_goals_are_computed_from_the_parts_tables(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from session_goals import goals

    (tmp_path / "device.txt").write_text("backend: gpu\n")
    _part(tmp_path, "step_b8", STEP, [
        ["none", "0.0700", "117,000", "378", "38.2%", "1.000x", "8.1", "20.1"],
        ["reflex", "0.0707", "115,900", "374", "37.8%", "1.010x", "8.9", "20.1"],
        ["governor", "0.0721", "113,600", "367", "37.1%", "1.030x", "12.4", "20.1"]])
    _part(tmp_path, "step_b16", STEP, [["none", "0.1300", "126,000", "407", "51.5%", "1.000x", "9.0", "38"]])
    _part(tmp_path, "step_b8_xla", STEP, [["none", "0.0900", "90,000", "290", "29.4%", "1.000x", "7.0", "22"]])
    _part(tmp_path, "torch_eager", ["arm", "step (s)", "tokens/s", "MFU"],
          [["adamw", "0.1300", "63,000", "20.5%"], ["adamw + reflex", "0.1406", "50,000", "19.0%"]])
    _part(tmp_path, "lora7b", STEP[:5] + ["vs reflex"] + STEP[6:],
          [["reflex", "1.2000", "13,653", "330", "33.4%", "1.000x", "41.0", "30.2"]],
          extra="device peak memory (all 1 trainers alive): 27.50 GiB\n")
    got = dict(goals(tmp_path))
    assert got == {
        "0.5B ≥ 50% MFU at some batch": "met: 51.5% (batch 16)",
        "≥ 2.2× the PyTorch eager loop with the reference law": "met: 2.32× (tokens/s, reflex)",
        "every policy ≤ 1.02× the plain step": "missed: reflex 1.010×, governor 1.030×",
        "the 0.5B step compiles in < 10 s": "missed: none 8.1 s, reflex 8.9 s, governor 12.4 s",
        "cuDNN attention's gain (plain AdamW, batch 8)": "1.30× the tokens/s of XLA attention",
        "the new step against the old path (no scan, full logits)": "not measured",
        "the full-depth 7B LoRA step fits one device and runs":
            "met: 1.2000 s/step, MFU 33.4%, compile 41.0 s, peak 27.50 GiB"}


@pytest.mark.slow
def test_the_session_appends_its_goals(full_session):
    out, summary = full_session
    goals = summary.split("## Goals (bench/session_goals.py)")[1]
    assert "Not a GPU" in goals
    # The verdict on this session's own step_b8 table (CPU figures: either verdict can come).
    ratios = {name: float(row[5].rstrip("x")) for name, row in _table((out / "step_b8.txt").read_text()).items()
              if name != "none"}
    verdict = "met" if max(ratios.values()) <= 1.02 else "missed"
    listed = ", ".join(f"{name} {ratio:.3f}×" for name, ratio in ratios.items())
    assert f"| every policy ≤ 1.02× the plain step | {verdict}: {listed} |" in goals.splitlines()
    assert "| the full-depth 7B LoRA step fits one device and runs | met: " in goals


def test_an_unknown_part_name_is_refused_before_anything_runs(tmp_path):
    env = dict(os.environ, TOY="1", OUT=str(tmp_path), PARTS="step_b8,step_b9")
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown part 'step_b9'" in result.stderr and "known: step_b8 lora7b" in result.stderr
    assert not (tmp_path / "session.md").exists()
