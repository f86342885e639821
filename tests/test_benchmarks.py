"""The GPU benchmarks run end to end on the CPU at toy size (no timing is asserted),
and the PyTorch side-by-side runs the reference reflex law exactly."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from reference_laws import ReflexModel

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY = ["--arch", "num_layers=2,hidden_size=32,intermediate_size=64,num_heads=2,num_kv_heads=1,"
       "head_dim=16,vocab_size=256", "--batch", "2", "--seq-len", "16", "--steps", "1", "--rounds", "1"]


def _run(script, *args):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _rows(table_text):
    return [line.split("|")[1:-1] for line in table_text.splitlines()
            if line.startswith("| ") and not line.startswith("| guard") and not line.startswith("| arm")]


def test_gpu_step_reports_every_policy_against_plain_adamw():
    out = _run("gpu_step.py", *TOY, "--dtype", "float32", "--loss-chunk-tokens", "8")
    rows = {r[0].strip(): r for r in _rows(out)}
    assert list(rows) == ["none", "reflex", "reflex_pro", "governor"]
    assert rows["none"][5].strip() == "1.000x"
    for row in rows.values():
        assert float(row[2].replace(",", "")) > 0          # tokens/s
        assert row[4].strip() == "-"                       # no MFU without a known peak
        assert float(row[6]) > 0 and float(row[7]) > 0     # compile seconds, XLA's plan
    assert "GFLOP/token" in out and "peak unknown" in out


def test_torch_reference_runs_both_arms():
    pytest.importorskip("transformers")
    out = _run("torch_reference.py", *TOY)
    rows = {r[0].strip(): r for r in _rows(out)}
    assert list(rows) == ["adamw", "adamw + reflex"]
    assert all(float(r[2].replace(",", "")) > 0 for r in rows.values())


def test_torch_reflex_law_is_the_reference_law():
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    from torch_reference import ReflexLaw

    rng = np.random.default_rng(0)
    ours, reference = ReflexLaw(), ReflexModel()
    params = [torch.nn.Parameter(torch.zeros(5, 3)), torch.nn.Parameter(torch.zeros(7))]
    for t in range(60):
        size = 1.0 if t % 17 else 8.0                       # spikes now and then
        grads = [rng.normal(0.01 * (-1) ** t, size, p.shape).astype(np.float32) for p in params]
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g)
        want, _ = reference.step(grads)
        assert ours.step(params) == pytest.approx(want, rel=1e-6), t
