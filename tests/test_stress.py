"""The stress suite: the ``--quick`` profile end to end (report, table, figures, a NaN
injection), the fault plumbing, and the configuration errors."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from lbw_jax.train.configs.stress_cpu import get_config
from harness_helpers import ROOT
from lbw_jax.train.records import machine
from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.stress.engine.suite import check_stress_config

TINY = ["--config.model.arch.hidden_size=32", "--config.model.arch.intermediate_size=64",
        "--config.model.arch.num_layers=2",
        "--config.model.arch.num_heads=2", "--config.model.arch.num_kv_heads=1",
        "--config.model.arch.head_dim=16", "--config.data.vocab_size=512",
        "--config.stress.pretrain_steps=8"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stress")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "lbw_jax.train.stress", "--quick",
                           f"--config.output_dir={out}", *TINY],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (out / "results.json").exists()   # --quick writes to a folder of its own
    out = out.parent / (out.name + "_quick")
    return out, json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


@pytest.mark.slow
def test_quick_profile_writes_the_report_table_and_figures(quick_run):
    out, results, report = quick_run
    for name in ("lr_stress.png", "loss_and_scale.png", "scenarios.png"):
        assert (out / name).stat().st_size > 5000, name
        assert f"![{name}]({name})" in report
    # One table row per arm, with a finite mean in the LR column and no "± 0.00" (one seed).
    table = report.split("## Final validation perplexity")[1].split("Mean step multiplier")[0]
    # The quick profile sets reflex's stats_every to 2, so its label names it.
    labels = ("| AdamW |", "| lbw_guard(reflex, stats_every=2) |",
              "| AdamW replaying reflex's multiplier |", "| AdamW at reflex's mean effective LR |")
    rows = [line for line in table.splitlines() if line.startswith(labels)]
    assert len(rows) == 4
    for row in rows:
        assert "±" not in row
        mean = float(re.search(r"\| ([\d.]+) \|", row).group(1))
        assert math.isfinite(mean) and mean > 1
    for arm in ("adamw", "reflex", "replay_reflex", "effective_lr_reflex"):
        cell = results["grid"][arm]["0.001"]
        assert cell["diverged"] == 0 and math.isfinite(cell["mean"])
        assert results["throughput"][arm]["tokens_per_s"] > 0
    assert results["kinds"] == {"adamw": "baseline", "reflex": "guard", "replay_reflex": "replay",
                                "effective_lr_reflex": "control"}
    assert results["command"].startswith("python -m lbw_jax.train.stress --quick")
    # The figures name the CPU they came from (stressed cells differ between CPU models).
    assert results["environment"]["cpu"] == machine.describe()["cpu"]
    assert f"{results['environment']['cpu']}, jax " in report
    # The headline metrics lead the report, and results.json holds the same ones.
    assert report.index("## Headline") < report.index("## Final validation perplexity")
    assert set(results["headline"]) >= {"adamw", "reflex", "replay_reflex", "_tuned"}
    assert results["headline"]["_tuned"]["lr"] == 0.001
    # Only the scenario that ran is described, with its own settings.
    assert "**nan_grad**: one NaN gradient" in report and "burst" not in report


@pytest.mark.slow
def test_quick_profile_nan_injection_is_survived_by_the_guard_only(quick_run):
    _, results, report = quick_run
    step = results["config"]["stress"]["inject_at"]
    cells = {(c["arm"], c["scenario"]): c for c in results["cells"]}
    guard, adamw = cells[("reflex", "nan_grad")], cells[("adamw", "nan_grad")]
    # The NaN arrives exactly at the injection step, in both arms.
    for cell in (guard, adamw):
        assert cell["grad_norm"][step] is None
        assert all(g is not None for g in cell["grad_norm"][:step])
    # The replay and the control take no faults: fault_arms is authoritative.
    assert {c["arm"] for c in results["cells"] if c["scenario"] != "none"} == {"adamw", "reflex"}
    # The guard skips it and trains on; AdamW's parameters are NaN from then on.
    assert guard["skipped"] == 1 and guard["final_ppl"] is not None
    assert all(x is not None for x in guard["loss"])
    assert adamw["final_ppl"] is None and all(x is None for x in adamw["loss"][step + 1:])
    assert results["scenarios"]["reflex"]["nan_grad"]["summary"]["survived"] == 1
    assert results["scenarios"]["adamw"]["nan_grad"]["summary"]["survived"] == 0
    assert "| lbw_guard(reflex, stats_every=2) | nan_grad | 1/1 |" in report
    assert "| AdamW | nan_grad | 0/1 |" in report
    # Its cost is the only finite one: it is the best, and AdamW's has no standing.
    rows = {line.split(" | ")[0]: line.split(" | ") for line in report.splitlines() if "| nan_grad |" in line}
    assert rows["| lbw_guard(reflex, stats_every=2)"][6] == "best" and rows["| AdamW"][6] == "—"


@pytest.mark.slow
def test_a_cell_alone_equals_the_same_cell_in_the_batch(quick_run):
    _, results, report = quick_run
    seq = results["sequential"]
    np.testing.assert_allclose(seq["ppl_alone"], seq["ppl_batched"], rtol=1e-4)
    assert "## Batched versus one by one" in report


def test_fault_parameters_land_on_the_configured_steps():
    s = get_config().stress
    f = faults_lib.faults_for(["none", "burst", "lr_spike", "grad_x100", "nan_grad"], s)
    np.testing.assert_array_equal(f.lr_start, [-1, -1, s.inject_at, -1, -1])
    np.testing.assert_array_equal(f.lr_stop, [-1, -1, s.inject_at + s.lr_spike_len, -1, -1])
    np.testing.assert_array_equal(f.lr_factor, [1, 1, s.lr_spike, 1, 1])
    np.testing.assert_array_equal(f.grad_step, [-1, -1, -1, s.inject_at, s.inject_at])
    assert f.grad_factor[3] == s.grad_factor and np.isnan(f.grad_factor[4])
    assert faults_lib.window("burst", s) == (s.inject_at, s.inject_at + s.burst_len)
    a = faults_lib.random_batch(512, (2, 5), seed=1, step=3)
    np.testing.assert_array_equal(a, faults_lib.random_batch(512, (2, 5), seed=1, step=3))
    assert a.max() < 512 and not np.array_equal(a, faults_lib.random_batch(512, (2, 5), seed=2, step=3))


@pytest.mark.parametrize("field, value, message", [
    ("arms", ("adamw", "lion"), "unknown arm 'lion'"),
    ("arms", ("adamw", "adamw"), "lists an arm twice"),
    ("arms", ("adamw", "effective_lr"), "effective_lr, which needs the guard arm"),
    ("arms", ("adamw", "effective_lr_adamw"), "needs the guard arm 'adamw'"),
    ("arms", ("adamw", "replay_governor"), "needs the guard arm 'governor'"),
    ("fault_arms", ("adamw", "lion"), "stress.fault_arms names ['lion']"),
    ("arms", ("governor", "clip"), "needs the arm adamw: the report measures every arm against tuned AdamW"),
    ("fault_arms", ("effective_lr_governor",), "is an effective-LR control"),
    ("controls_at", "some", "stress.controls_at='some'"),
    ("lrs", (1e-3, -1.0), "positive"),
    ("scenarios", ("burst", "meteor"), "unknown scenario"),
    ("scenario_lr", 5e-4, "must be one of stress.lrs"),
    ("inject_at", 300, "must lie inside the run"),
    ("seeds", 0, "stress.seeds=0"),
])
def test_bad_stress_settings_are_named(field, value, message):
    cfg = get_config()
    cfg.stress[field] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        check_stress_config(cfg)


def test_ablation_variants_are_arms_of_their_own():
    from lbw_jax.train.configs.stress_ablation import get_config as ablation_config
    from lbw_jax.train.stress.engine.arms import build_arm

    cfg = ablation_config()
    check_stress_config(cfg)
    arm = build_arm("governor_no_trust", cfg)
    assert arm.kind == "guard" and arm.label == "lbw_guard(governor, use_trust=False)"
    cfg.stress.variants.governor_no_trust.policy = "nonesuch"
    with pytest.raises(ValueError, match="is not a policy"):
        check_stress_config(cfg)


def test_a_guard_label_names_the_knobs_the_config_changed():
    """A knob set in optimizer.<policy> changes the law the arm runs, so its label says so,
    beside a variant's own knobs; a knob at its default stays out of the label."""
    from lbw_jax.train.configs.stress_ablation import get_config as ablation_config
    from lbw_jax.train.stress.engine.arms import build_arm

    cfg = ablation_config()
    assert build_arm("governor", cfg).label == "lbw_guard(governor)"
    cfg.optimizer.governor.trust_from = 2
    cfg.optimizer.governor.tolerance = 0.03          # the default
    assert build_arm("governor", cfg).label == "lbw_guard(governor, trust_from=2)"
    assert build_arm("governor_no_trust", cfg).label == "lbw_guard(governor, trust_from=2, use_trust=False)"


@pytest.mark.parametrize("arm, knob, value, message", [
    ("zclip", "z_threshold", -1.0, "zclip: knob z_threshold"),
    ("update_clip", "eps", 0.0, "update_clip: knob eps"),
    ("spike_skip", "warmup", 1, "skip_spikes: knob warmup"),
])
def test_bad_baseline_knobs_are_named(arm, knob, value, message):
    cfg = get_config()
    cfg.stress.arms = ("adamw", arm)
    cfg.stress.fault_arms = ()
    cfg.optimizer[arm][knob] = value   # the same knob fields as lbw_jax.train.run
    with pytest.raises(ValueError, match=message):
        check_stress_config(cfg)
