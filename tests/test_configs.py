"""Every shipped config loads, is locked against unknown keys as the harness loads it, and
names a real model."""

import importlib
import sys

import pytest
from absl import flags
from ml_collections import ConfigDict, config_flags

from lbw_jax.train.configs import preset_names, preset_path

CONFIGS = preset_names()


def test_the_presets_are_shipped():
    assert {"tiny", "qwen05b", "qwen3b", "qwen7b", "qwen14b", "tinyllama", "stress_cpu",
            "stress_cpu_full", "stress_gpu", "stress_qwen05b", "stress_ablation", "stress_lora",
            "stress_llama"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
    cfg = importlib.import_module(f"lbw_jax.train.configs.{name}").get_config()
    assert cfg.train.batch_size % cfg.train.grad_accum == 0
    assert cfg.optimizer.policy in ("none", "reflex", "reflex_pro", "governor")
    if name.startswith("stress"):   # the stress configs pass the suite's own checks
        from lbw_jax.train.stress.engine.suite import check_stress_config
        check_stress_config(cfg)
    else:                           # the lbw_jax.train.run configs pass lbw_jax.train.run's up-front checks
        from lbw_jax.train.validate import check_config
        check_config(cfg)
    if name.startswith("qwen"):
        assert cfg.model.pretrained.startswith("Qwen/Qwen2.5-") and cfg.lora.enabled
        assert cfg.data.hf_config == "wikitext-103-raw-v1"


def _load_as_the_harness_does(monkeypatch, name, *overrides):
    """The preset as ``lbw_jax.train.run.cli`` loads it: ml_collections' config flag with
    ``lock_config=True``, defined with the command line in ``sys.argv`` (it reads the
    ``--config.SECTION.KEY=VALUE`` overrides from there as it is defined)."""
    argv = ["lbw-train", f"--config={preset_path(name)}", *overrides]
    monkeypatch.setattr(sys, "argv", argv)
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", lock_config=True, flag_values=flag_values)
    flag_values(argv)
    return flag_values.config


def _sections(cfg, path="config"):
    yield path, cfg
    for key, value in cfg.items():
        assert not isinstance(value, dict) or isinstance(value, ConfigDict), f"{path}.{key} is a plain dict"
        if isinstance(value, ConfigDict):
            yield from _sections(value, f"{path}.{key}")


@pytest.mark.parametrize("name", CONFIGS)
def test_as_loaded_every_section_rejects_an_unknown_key(name, monkeypatch):
    """A misspelt key fails at load time at any depth (a section that were a plain dict, or
    a preset that did not load through the flag, would take it silently)."""
    cfg = _load_as_the_harness_does(monkeypatch, name, "--config.train.steps=7")
    assert cfg.train.steps == 7                       # a known key overrides
    sections = dict(_sections(cfg))
    assert {"config.optimizer", "config.train", "config.model", "config.data"} <= sections.keys()
    for path, section in sections.items():
        with pytest.raises(AttributeError):
            section.no_such_key = 1.0
        assert "no_such_key" not in section, path
    with pytest.raises(AttributeError, match="lrr"):
        _load_as_the_harness_does(monkeypatch, name, "--config.optimizer.lrr=1.0")
