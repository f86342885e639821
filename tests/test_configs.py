"""Every shipped config loads, is locked against unknown keys, and names a real model."""

import importlib
import pathlib

import pytest

from lbw_jax.train.configs import preset_names

CONFIGS = preset_names()


def test_the_presets_are_shipped():
    assert {"tiny", "qwen05b", "qwen3b", "qwen7b", "qwen14b", "tinyllama", "stress_cpu",
            "stress_cpu_full", "stress_gpu", "stress_qwen05b", "stress_ablation", "stress_lora",
            "stress_llama"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
    cfg = importlib.import_module(f"lbw_jax.train.configs.{name}").get_config()
    assert cfg.train.batch_size % cfg.train.grad_accum == 0
    assert cfg.optimizer.guard in ("none", "reflex", "reflex_pro", "governor")
    if name.startswith("stress"):   # the stress configs pass the suite's own checks
        from lbw_jax.train.stress.engine.suite import check_stress_config
        check_stress_config(cfg)
    else:                           # the lbw_jax.train.run configs pass lbw_jax.train.run's up-front checks
        from lbw_jax.train.validate import check_config
        check_config(cfg)
    if name.startswith("qwen"):
        assert cfg.model.pretrained.startswith("Qwen/Qwen2.5-") and cfg.lora.enabled
        assert cfg.data.hf_config == "wikitext-103-raw-v1"
    cfg.lock()
    with pytest.raises(AttributeError):
        cfg.optimizer.lrr = 1.0
