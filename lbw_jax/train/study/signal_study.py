"""``python -m lbw_jax.train.study.signal_study [--config stress_cpu] [--config.a.b=value ...]``

The signal study: plain AdamW at every LR of ``stress.lrs`` for ``stress.seeds`` data
orders, from the suite's shared start, with the per-step stability signals of
``lbw_jax.train.study.signals`` recorded beside the loss; then each signal scored against the
loss EMA the governor reacts to (``lbw_jax.train.study.signal_scores``). Writes ``signals.json``
(every trace and score), ``report.md`` and ``signals.png`` into ``output_dir``.

Every run restarts from a decayed checkpoint and loses ground for its first steps even at
healthy LRs. The healthy runs' flags are counted twice: over every step, and from step
``--transient`` on (the report names both).
"""

from __future__ import annotations

import json
import pathlib
import shlex
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

import lbw_jax
from lbw_jax.train.configs import preset_path, run_main
from lbw_jax.train.records import machine
from lbw_jax.train.stress.engine.arms import build_arm
from lbw_jax.train.stress.metrics.headline import stressed_from_means
from lbw_jax.train.stress.engine.suite import prepare
from lbw_jax.train.stress.engine.sweep import ArmProgram, Cell, run_chunked
from lbw_jax.train.study.signal_scores import THRESHOLDS, derived, score
from lbw_jax.train.study.signals import traced_arm
from lbw_jax.train.values import plain_json

_DEFAULT = preset_path("stress_cpu")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "A stress config file.", lock_config=True)
_SMOOTH = flags.DEFINE_float("smooth", 0.9, "EMA decay applied to a signal before its threshold.")
_FROM = flags.DEFINE_string("from_json", None, "Write the report of a saved signals.json into "
                            "output_dir instead of running the study.")
_TRANSIENT = flags.DEFINE_integer("transient", 25, "Steps of the restart transient (healthy flags "
                                  "are also counted from here on).")


def run_study(cfg, *, smooth: float, transient: int, log=print) -> dict:
    setup = prepare(cfg, log)
    s = setup.cfg.stress
    cells = [Cell("adamw", lr, seed) for lr in s.lrs for seed in range(s.seeds)]
    program = ArmProgram(traced_arm(build_arm("adamw", setup.cfg)), setup.graphdef, setup.shape,
                         setup.cfg.model.loss_chunk_tokens)
    runs = run_chunked(program, cells, s.max_cells, start_params=setup.params, orders=setup.orders,
                       steps=s.steps, eval_every=s.eval_every, **setup.common)
    final = runs.val_ppl[-1]
    means = {lr: float(np.mean([final[i] for i, c in enumerate(cells) if c.lr == lr])) for lr in s.lrs}
    tuned = min(means, key=lambda lr: means[lr] if np.isfinite(means[lr]) else np.inf)
    stressed_lrs = stressed_from_means(means, s.stressed_above)
    stressed = np.array([c.lr in stressed_lrs for c in cells])
    healthy = np.array([c.lr <= tuned for c in cells])
    knobs = lbw_jax.knobs.defaults(lbw_jax.Governor)
    harm = dict(fast_decay=knobs["fast_decay"], forget=knobs["forget"],
                tolerance=knobs["tolerance"], warmup=knobs["warmup_steps"])
    signals = derived(runs.signals, runs.loss, runs.lr)
    scores = score(signals, runs.loss, stressed, healthy, harm_knobs=harm, smooth=smooth,
                   transient=transient)
    log(f"signal study: tuned LR {tuned:g}, stressed {stressed_lrs}; {len(cells)} cells in "
        f"{runs.compile_s + runs.run_s:.0f} s")
    return {"tuned_lr": tuned, "stressed_lrs": stressed_lrs, "means": means, "smooth": smooth,
            "transient": transient, "harm_knobs": harm, "thresholds": THRESHOLDS,
            "start_ppl": float(runs.val_ppl[0, 0]), "pretrain": setup.pretrain,
            "cells": [{"lr": c.lr, "seed": c.seed, "final_ppl": float(final[i]),
                       "loss": runs.loss[:, i].tolist(), "lr_applied": runs.lr[:, i].tolist(),
                       **{f"signal_{k}": v[:, i].tolist() for k, v in signals.items()}}
                      for i, c in enumerate(cells)],
            "scores": scores}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; settings go in --config.<field>=value")
    cfg = _CONFIG.value
    out = pathlib.Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from lbw_jax.train.study.signal_report import write_report   # matplotlib only when writing
    if _FROM.value:
        study = json.loads(pathlib.Path(_FROM.value).read_text())
        study["means"] = {float(lr): v for lr, v in study["means"].items()}
        write_report(study, out)
        print(f"signal study: wrote {out / 'report.md'} from {_FROM.value}")
        return
    study = run_study(cfg, smooth=_SMOOTH.value, transient=_TRANSIENT.value)
    study["command"] = "python -m lbw_jax.train.study.signal_study " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    study["machine"] = machine.describe()
    (out / "signals.json").write_text(json.dumps(plain_json(study)))
    write_report(study, out)
    print(f"signal study: wrote {out / 'report.md'}")


def cli():
    run_main(main)


if __name__ == "__main__":
    cli()
