"""Small, fast versions of the default config for harness tests."""

import os
import subprocess
import sys

import lbw_jax
from lbw_jax.train.configs.tiny import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL_ARCH = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                  num_kv_heads=1, head_dim=16)


def unguarded(cfg):
    """``cfg`` with no guard: the reflex knob small_config sets goes back to its default
    (a knob of a policy not in use is refused)."""
    cfg.optimizer.policy = "none"
    cfg.optimizer.reflex.stats_every = lbw_jax.knobs.defaults(lbw_jax.Reflex)["stats_every"]
    return cfg


def small_config(out_dir, **train_overrides):
    cfg = get_config()
    cfg.output_dir = str(out_dir)
    cfg.model.arch.update(SMALL_ARCH)
    cfg.data.vocab_size = 512
    cfg.data.seq_len = 32
    cfg.train.batch_size = 8
    cfg.train.steps = 8
    cfg.train.log_every = 2
    cfg.train.eval_every = 4
    cfg.train.checkpoint_every = 4
    # The tests' model runs the reference law, whose statistics every 2 steps keep it
    # exercised in 8-step runs; the default (the governor) is tested on its own.
    cfg.optimizer.policy = "reflex"
    cfg.optimizer.reflex.stats_every = 2
    cfg.train.update(train_overrides)
    return cfg


SMALL_FLAGS = [
    "--config.optimizer.policy=reflex", "--config.optimizer.reflex.stats_every=2",  # as small_config
    "--config.model.arch.hidden_size=32", "--config.model.arch.intermediate_size=64",
    "--config.model.arch.num_layers=2", "--config.model.arch.num_heads=2",
    "--config.model.arch.num_kv_heads=1", "--config.model.arch.head_dim=16",
    "--config.data.vocab_size=512", "--config.data.seq_len=32", "--config.train.batch_size=8",
    "--config.train.log_every=2", "--config.train.eval_every=4", "--config.train.checkpoint_every=4",
]


def run_cli(args, *, devices=1, env_extra=None, timeout=600, wait=True):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "lbw_jax.train.run", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
