"""Names renamed in this release keep working for one release, each with a one-line note:
the preset paths and commands of the repository checkout, ``optimizer.guard``, the
governor's former knob names, and the records of saved runs."""

import subprocess
import sys

import pytest

from lbw_jax.train.configs import PRESETS, preset_names, preset_path, resolve, resolve_argv
from lbw_jax.train.normalize import normalize_config, rename_flags, renamed_fields
from lbw_jax.train.session.position import Position
from lbw_jax.train.session.resume_rules import differences


def test_a_preset_is_named_or_given_as_a_path():
    assert resolve("tiny") == str(PRESETS / "tiny.py") == preset_path("tiny")
    assert resolve("stress_overshoot:lora,ablation") == f"{PRESETS / 'stress_overshoot.py'}:lora,ablation"
    assert resolve(__file__) == __file__                      # a file of one's own stays as it is
    assert resolve("no_such_preset") == "no_such_preset"      # ml_collections names the bad path
    with pytest.raises(FileNotFoundError, match="no preset 'nope'; the presets are qwen05b"):
        preset_path("nope")
    assert "tiny" in preset_names() and "base" not in preset_names()


def test_the_old_preset_path_is_read_with_a_note():
    said = []
    assert resolve("configs/stress_lora.py:x", said.append) == f"{PRESETS / 'stress_lora.py'}:x"
    assert said == ["note: configs/stress_lora.py moved to the package: write --config stress_lora:x "
                    "(the old path is read for one release)"]
    assert resolve_argv(["p", "--config", "tiny", "--config=qwen7b", "--config.seed=1"]) == [
        "p", "--config", str(PRESETS / "tiny.py"), f"--config={PRESETS / 'qwen7b.py'}", "--config.seed=1"]


def test_the_old_field_names_are_read_from_flags_configs_and_saved_runs():
    argv, notes = rename_flags(["p", "--config.optimizer.guard=reflex", "--config.seed=2",
                                "--config.optimizer.governor.over_cut=1.5"])
    assert argv == ["p", "--config.optimizer.policy=reflex", "--config.seed=2",
                    "--config.optimizer.governor.brake_above=1.5"]
    assert notes == ["note: --config.optimizer.guard is now --config.optimizer.policy (the old "
                     "name is read for one release)",
                     "note: --config.optimizer.governor.over_cut is now --config.optimizer.governor."
                     "brake_above (the old name is read for one release)"]
    from lbw_jax.train.configs.tiny import get_config
    cfg = get_config()
    cfg.optimizer.guard = "reflex"                            # a config copied before the rename
    assert normalize_config(cfg) == ["note: optimizer.guard is now optimizer.policy (the old name "
                                     "is read for one release)"]
    assert cfg.optimizer.policy == "reflex" and "guard" not in cfg.optimizer
    # A run saved under the old names resumes under the new ones, and a real change is still named.
    saved = {"optimizer.guard": "governor", "optimizer.baseline": "none",
             "optimizer.governor.over_cut": 1.3, "optimizer.governor.use_overshoot": True}
    now = {"optimizer.policy": "governor", "optimizer.baseline": "none",
           "optimizer.governor.brake_above": 1.3, "optimizer.governor.use_overshoot": True}
    assert differences(saved, now) == []
    assert differences(saved, {**now, "optimizer.governor.brake_above": 1.5}) == [
        "optimizer.governor.brake_above: 1.3 -> 1.5"]
    assert renamed_fields()["optimizer.governor.over_recover"] == "optimizer.governor.recover_below"


def test_a_checkpoint_record_from_before_the_rename_keeps_its_lr_factor():
    assert Position.from_meta({"step": 40, "lr_multiplier": 0.25}).lr_factor == 0.25
    assert Position.from_meta({"step": 40, "lr_factor": 0.5}).lr_factor == 0.5
    assert Position.from_meta({"step": 40}).lr_factor == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("old,new", [("train.run", "lbw-train"), ("train.stress", "lbw-stress")])
def test_the_old_commands_of_the_checkout_still_run_with_a_note(old, new):
    from test_readme import ROOT
    result = subprocess.run([sys.executable, "-m", old, "--helpfull"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    # (absl ends --helpfull with exit code 1, after the help.)
    assert f"note: python -m {old} is now {new}; the old name works for one release" in result.stderr
    assert "--config: A" in result.stdout and "Traceback" not in result.stderr
