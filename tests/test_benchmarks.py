"""The PyTorch side-by-side runs the reference reflex law exactly. (The GPU benchmarks
run end to end at toy size in tests/test_gpu_session.py, through bench/gpu_session.sh.)"""

import pathlib
import sys

import numpy as np
import pytest

from reference_laws import ReflexModel

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
