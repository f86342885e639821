"""The ladder of part (c) of the signal study: windows branch from the base run's exact state,
run at their rung's constant LR, and the ceiling is the largest rung that did not raise the loss."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from harness_helpers import ROOT
from test_signal_study import TINY
from lbw_jax.train.study.ladder_report import ceilings, window_level

RUNGS = (-2, 0, 2, 6)


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder")
    tiny = [a for a in TINY if not a.startswith("--config.stress.seeds")] + ["--config.stress.seeds=2"]
    proc = subprocess.run([sys.executable, "-m", "lbw_jax.train.study.ladder", "--base_lr=3e-3", "--every=4",
                           "--window=3", f"--rungs={','.join(map(str, RUNGS))}",
                           f"--config.output_dir={out}", *tiny],
                          cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "ladder.json").read_text())


@pytest.mark.slow
def test_every_window_runs_at_its_rungs_constant_lr_from_the_base_runs_state(ladder):
    _, study = ladder
    assert study["stops"] == [4, 8]
    assert len(study["windows"]) == 2 * len(RUNGS) * 2          # stops x rungs x seeds
    np.testing.assert_allclose(study["ladder"], [3e-3 * 2 ** (j / 2) for j in RUNGS])
    for w in study["windows"]:
        np.testing.assert_allclose(w["lr_applied"], [w["lr"]] * 3, rtol=1e-5)
        if w["stop"] == 4:
            # The window's first loss is computed before its first update, at the base run's
            # parameters and on its next batch: exactly the base run's loss at that step.
            assert w["loss"][0] == study["base_loss"][w["seed"]][4]
    # The same stop, seed and batch: every rung starts from the same validation loss.
    before = {(w["stop"], w["seed"]): w["val_before"] for w in study["windows"]}
    assert all(w["val_before"] == before[(w["stop"], w["seed"])] for w in study["windows"])
    assert all(w["stable"] == (w["val_after"] <= w["val_before"]) for w in study["windows"])


@pytest.mark.slow
def test_the_report_is_written(ladder):
    out, _ = ladder
    text = (out / "report.md").read_text()
    assert "largest stable LR" in text and (out / "ladder.png").stat().st_size > 0


def test_the_ceiling_is_the_largest_stable_rung_and_a_windows_level_skips_its_first_step():
    row = lambda seed, lr, stable: {"stop": 20, "seed": seed, "lr": lr, "stable": stable}
    study = {"windows": [row(0, 1.0, True), row(0, 2.0, False), row(0, 4.0, True),
                         row(1, 1.0, False), row(1, 2.0, False)]}
    assert ceilings(study) == {20: {0: 4.0, 1: None}}
    assert window_level({"overshoot": [9.0, 1.0, None, 3.0]}, "overshoot") == 2.0


@pytest.mark.slow
def test_the_room_probes_are_traced_and_scored(ladder, tmp_path):
    """Part (d): the base run records each room probe at every step, on to the schedule's end;
    a window's critical LR (room x its rung) is read at every rung; the report scores them."""
    from lbw_jax.train.study import room_report
    out, study = ladder
    trace = study["base_trace"]
    assert len(trace["room"][0]) == len(trace["lr"][0]) == len(study["base_loss"][0]) > max(study["stops"])
    room = np.asarray(trace["room"], np.float64)[:, 1:]
    assert np.isfinite(room).mean() > 0.9 and np.nanmin(room) > 0
    # The probe reads the step in use: its critical LR (room x lr) does not scale with the rung.
    etas = {w["lr"]: window_level(w, "room") * w["lr"] for w in study["windows"]
            if w["stop"] == 8 and w["seed"] == 0}
    assert max(etas.values()) / min(etas.values()) < 0.25 * max(etas) / min(etas)
    scores = room_report.score(study)
    assert set(scores["probes"]) == set(room_report.PROBES) and len(scores["rows"]) == len(study["stops"])
    room_report.main(["room_report", str(tmp_path / "r.md"), f"tiny={out}"])
    assert "eta_c `own`" in (tmp_path / "r.md").read_text()
