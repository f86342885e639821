"""``python -m lbw_jax.train.stress [--config stress_cpu] [--quick] [--config.a.b=value ...]``

Runs every arm of ``stress.arms`` at every LR of ``stress.lrs`` for ``stress.seeds``
data orders, plus the failure scenarios, and writes ``results.json``, ``report.md``
and PNG figures into ``output_dir``. ``--quick`` shrinks the grid to a smoke test
(AdamW, reflex and its two controls, one LR, a handful of steps) that finishes in about a
minute on a CPU and writes to ``output_dir`` + ``_quick``.
"""

from __future__ import annotations

import pathlib
import shlex
import sys
import time

import tqdm
from absl import app, flags
from ml_collections import config_flags

from lbw_jax.train.configs import preset_path, run_main
from lbw_jax.train.stress.engine.suite import run_suite
from lbw_jax.train.stress.report import outputs

DEFAULT_CONFIG = preset_path("stress_cpu")
_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG,
                                          "A stress config file exposing get_config().", lock_config=True)
_QUICK = flags.DEFINE_bool("quick", False, "Smoke-test profile: two arms, one LR, a few steps.")


def quick_profile(cfg) -> None:
    """Shrinks a stress config in place to a fast end-to-end check. It replaces the
    fields it names, command-line overrides of those included; others still apply."""
    s = cfg.stress
    s.arms = ("adamw", "reflex", "replay_reflex", "effective_lr_reflex")
    s.fault_arms = ("adamw", "reflex")
    s.controls_at = "all"
    s.lrs = (s.scenario_lr,)
    s.seeds = 1
    s.steps = 12
    s.eval_every = 4
    s.eval_batches = 2
    s.pretrain_steps = min(s.pretrain_steps, 8)
    s.scenarios = ("nan_grad",)
    s.inject_at = 6
    s.sequential_cells = 1
    cfg.optimizer.reflex.stats_every = 2
    cfg.optimizer.warmup_steps = min(cfg.optimizer.warmup_steps, s.steps // 4)
    # Its own folder: a smoke test never overwrites the full suite's report.
    cfg.output_dir = cfg.output_dir.rstrip("/") + "_quick"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; settings go in --config.<field>=value")
    cfg = _CONFIG.value
    if _QUICK.value:
        with cfg.unlocked():
            quick_profile(cfg)
    t0 = time.perf_counter()
    result = run_suite(cfg, progress_factory=lambda desc, total: tqdm.tqdm(
        total=total, desc=desc, unit="step", leave=False, mininterval=2.0))
    command = "python -m lbw_jax.train.stress " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    outputs.write(result, cfg.output_dir, command.strip())
    print(f"stress: wrote {cfg.output_dir}/report.md, results.json and figures "
          f"in {(time.perf_counter() - t0) / 60:.1f} min")
    print((pathlib.Path(cfg.output_dir) / "report.md").read_text().split("## Figures")[0])


def cli():
    run_main(main)


if __name__ == "__main__":
    cli()
