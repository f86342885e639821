"""``python -m lbw_jax.train.study.ladder --base_lr=3e-3 [--config stress_cpu] [--config.a.b=value ...]``

The ground truth of the largest stable learning rate as training goes on, and what each
stability signal reads at it (part (c) of the signal study, docs/signals.md).

A base run of plain AdamW at ``--base_lr`` on the suite's schedule, one per seed, from the
suite's shared start, stops at every ``--every`` steps. From each stop, with the parameters
*and* Adam's state of that point, a window of ``--window`` steps runs at each LR of a ladder
(``--base_lr`` x 2^(j/2) for j in ``--rungs``), constant, on the batches the base run would see
next. A rung is *stable* when its window does not raise the validation loss above the stop's;
the largest stable rung is that stop's ceiling. The windows run the traced AdamW of the signal
study (``lbw_jax.train.study.signals``), so every signal is recorded at every rung: whether a signal's
level at the ceiling stays put as the ceiling moves is whether it can tell the ceiling.

Writes ``ladder.json`` (every window) and, with ``lbw_jax.train.study.ladder_report``, ``report.md``
and ``ladder.png`` into ``output_dir``.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from lbw_jax.train.configs import preset_path, run_main
from lbw_jax.train.records import machine
from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.stress.engine.arms import build_arm
from lbw_jax.train.stress.engine.suite import prepare
from lbw_jax.train.stress.engine.sweep import ArmProgram, stack
from lbw_jax.train.study.signals import traced_arm
from lbw_jax.train.values import plain_json

_DEFAULT = preset_path("stress_cpu")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "A stress config file.", lock_config=True)
_BASE_LR = flags.DEFINE_float("base_lr", None, "Peak LR of the base run (tuned AdamW's).", required=True)
_EVERY = flags.DEFINE_integer("every", 20, "Steps between the stops the windows branch from (the "
                              "first stop is at this step).")
_WINDOW = flags.DEFINE_integer("window", 10, "Steps of each window.")
_RUNGS = flags.DEFINE_list("rungs", [str(j) for j in range(-4, 11)],
                           "Exponents j of the ladder's LRs, base_lr * 2^(j/2).")
_FROM = flags.DEFINE_string("from_json", None, "Write the report of a saved ladder.json into "
                            "output_dir instead of measuring.")


class _Runner:
    """The traced AdamW's compiled step and eval for a number of cells, and their batches."""

    def __init__(self, setup, total_steps: int):
        self.setup, self.total = setup, total_steps
        cfg = setup.cfg
        # The room probe's held batch is the first validation batch, fixed for the whole study.
        self.program = ArmProgram(traced_arm(build_arm("adamw", cfg)), setup.graphdef, setup.shape,
                                  cfg.model.loss_chunk_tokens, held_batch=np.asarray(setup.common["val"][0]))

    def init(self, lrs):
        params = stack(self.setup.params, len(lrs))
        return params, self.program.init(params, jnp.asarray(lrs, jnp.float32))

    def _compiled(self, params, opt_state, seeds, lrs, multipliers):
        c = self.setup.common
        faults = jax.tree.map(jnp.asarray, faults_lib.faults_for(["none"] * len(seeds), c["stress"]))
        shape = self.setup.orders[seeds[0]].batch(0).shape
        step_exe, eval_exe = self.program.compiled(len(seeds), params, opt_state, c["frozen"], shape,
                                                   lrs, faults, multipliers, jnp.asarray(c["val"]))
        return step_exe, eval_exe, faults

    def run(self, params, opt_state, seeds, lrs, steps, multipliers):
        """Trains the cells over ``steps`` (absolute step numbers); returns the new state, the
        per-step metrics and the validation loss after."""
        frozen, val = self.setup.common["frozen"], jnp.asarray(self.setup.common["val"])
        lrs, mult = jnp.asarray(lrs, jnp.float32), jnp.asarray(multipliers, jnp.float32)
        step_exe, eval_exe, faults = self._compiled(params, opt_state, seeds, lrs, mult)
        records = []
        for step in steps:
            tokens = np.stack([self.setup.orders[seed].batch(step) for seed in seeds])
            params, opt_state, metrics = step_exe(params, opt_state, frozen, tokens, lrs,
                                                  jnp.int32(step), faults, mult)
            records.append(metrics)
        records = jax.device_get(records)
        stacked = {k: np.stack([r[k] for r in records]) for k in records[0]} if records else {}
        return params, opt_state, stacked, np.asarray(eval_exe(params, opt_state, frozen, val))


def _base_run(runner: _Runner, base_lr: float, seeds: list[int], stops: list[int], end: int) -> dict:
    """The base run per seed, with copies of its parameters and Adam's state at each stop."""
    lrs = [base_lr] * len(seeds)
    params, opt_state = runner.init(lrs)
    saved, val, parts, at = {}, {}, [], 0
    ones = np.ones((len(seeds), runner.total))
    for stop in stops + [end]:   # on to the schedule's end, for the room's trace
        params, opt_state, metrics, v = runner.run(params, opt_state, seeds, lrs, range(at, stop), ones)
        parts += [metrics] if metrics else []
        at = stop
        if stop in stops:
            val[stop] = v
            saved[stop] = jax.tree.map(jnp.copy, (params, opt_state))  # the step donates its inputs
    # Per step [steps, seeds]: the loss, and the room probe's readings along the base run's steps.
    keep = {"loss": "loss", "lr": "lr", "room": "signal_room", "curv": "signal_curv",
            "pred": "signal_pred", "room_held": "signal_room_held", "overshoot": "signal_overshoot"}
    trace = {k: np.concatenate([m[v] for m in parts]) for k, v in keep.items()}
    return {"saved": saved, "val": val, "trace": trace}


def _windows(runner: _Runner, state, stop: int, window: int, seeds, ladder, max_cells: int) -> list[dict]:
    """Every (seed, rung) window from one stop, in chunks of at most ``max_cells`` cells."""
    pairs = [(i, lr) for i in range(len(seeds)) for lr in ladder]
    shape = runner.setup.shape
    # A constant LR: the multiplier undoes the schedule's shape over the window.
    undo = np.ones(runner.total)
    undo[stop:stop + window] = [1.0 / float(shape(t)) for t in range(stop, stop + window)]
    rows = []
    size = max_cells or len(pairs)
    for a in range(0, len(pairs), size):
        chunk = pairs[a:a + size]
        pick = np.asarray([i for i, _ in chunk])
        params, opt_state = jax.tree.map(lambda x: jnp.asarray(x)[pick], state)
        lrs = [lr for _, lr in chunk]
        _, _, metrics, val = runner.run(params, opt_state, [seeds[i] for i in pick], lrs,
                                        range(stop, stop + window), np.tile(undo, (len(chunk), 1)))
        for c, (i, lr) in enumerate(chunk):
            rows.append({"stop": stop, "seed": seeds[i], "lr": lr, "val_after": float(val[c]),
                         "lr_applied": metrics["lr"][:, c].tolist(), "loss": metrics["loss"][:, c].tolist(),
                         **{k[len("signal_"):]: metrics[k][:, c].tolist() for k in metrics
                            if k.startswith("signal_")}})
    return rows


def measure(cfg, base_lr: float, every: int, window: int, rungs: list[int], log=print) -> dict:
    setup = prepare(cfg, log)
    s = setup.cfg.stress
    seeds = list(range(s.seeds))
    # From the first stop on, the schedule's shape is positive, so a window's LR is its rung's.
    stops = list(range(every, s.steps - window + 1, every))
    ladder = [base_lr * 2.0 ** (j / 2) for j in rungs]
    if not stops or min(float(setup.shape(t)) for t in stops) <= 0:
        raise ValueError(f"--every={every}: the first stop must lie after the schedule's first step "
                         f"(its LR is 0 there) and a window of {window} must fit in {s.steps} steps")
    runner = _Runner(setup, s.steps + window)
    base = _base_run(runner, base_lr, seeds, stops, s.steps)
    rows = []
    for stop in stops:
        got = _windows(runner, base["saved"][stop], stop, window, seeds, ladder, s.max_cells)
        for r in got:
            r["val_before"] = float(base["val"][stop][seeds.index(r["seed"])])
            r["stable"] = r["val_after"] <= r["val_before"]
        rows += got
        log(f"ladder: stop {stop}: {sum(r['stable'] for r in got)}/{len(got)} windows stable")
    return {"base_lr": base_lr, "every": every, "window": window, "rungs": rungs, "ladder": ladder,
            "stops": stops, "seeds": seeds, "schedule_lr": {t: base_lr * float(setup.shape(t)) for t in stops},
            "base_loss": base["trace"]["loss"].T.tolist(),
            "base_trace": {k: v.T.tolist() for k, v in base["trace"].items()},
            "pretrain": setup.pretrain, "windows": rows}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; settings go in --config.<field>=value")
    out = pathlib.Path(_CONFIG.value.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from lbw_jax.train.study.ladder_report import write_report   # matplotlib only when writing
    if _FROM.value:
        study = json.loads(pathlib.Path(_FROM.value).read_text())
    else:
        study = measure(_CONFIG.value, _BASE_LR.value, _EVERY.value, _WINDOW.value,
                        [int(j) for j in _RUNGS.value])
        study["command"] = "python -m lbw_jax.train.study.ladder " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        study["machine"] = machine.describe()
        study = json.loads(json.dumps(plain_json(study)))
        (out / "ladder.json").write_text(json.dumps(study))
    write_report(study, out)
    print(f"ladder: wrote {out / 'report.md'}")


def cli():
    run_main(main)


if __name__ == "__main__":
    cli()
