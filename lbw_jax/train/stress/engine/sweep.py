"""Runs many cells (learning rate x seed x fault) of one arm as one vmapped program.

Each cell has its own parameters, optimizer state, learning rate, batches and
fault parameters; the program is compiled once per arm and per chunk size, and the
frozen part of the model (a LoRA base) is shared by every cell instead of copied.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.step import make_loss, train_step
from lbw_jax.train.stress.engine.arms import Arm


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run: an arm at a learning rate with a data-order seed and a scenario.
    ``run_lr`` is the peak LR actually used (it differs from ``lr`` only for the
    effective-LR control)."""

    arm: str
    lr: float
    seed: int
    scenario: str = "none"
    run_lr: float | None = None

    @property
    def peak_lr(self) -> float:
        return self.lr if self.run_lr is None else self.run_lr


@dataclasses.dataclass
class CellRuns:
    """What a set of cells recorded; arrays are [steps, cells] or [evals, cells]."""

    cells: list[Cell]
    loss: np.ndarray
    grad_norm: np.ndarray
    multiplier: np.ndarray
    skipped: np.ndarray
    room_probes: np.ndarray    # the guard's room-probe forward passes so far (0 without one)
    estimate: np.ndarray       # the arm's own step-size estimate (NaN where it has none)
    lr: np.ndarray             # the learning rate the arm's optimizer was built with, per step
    eval_steps: list[int]
    val_ppl: np.ndarray
    compile_s: float
    run_s: float
    final_params: object = None
    signals: dict = dataclasses.field(default_factory=dict)   # name -> [steps, cells]


class ArmProgram:
    """The jitted, vmapped init, train step and evaluation of one arm.

    The train step is ``lbw_jax.train.step.train_step`` (the step ``lbw_jax.train.run`` runs) with the
    cell's learning rate: its peak x the schedule's shape at this step x any LR fault x
    the replayed multiplier of this step (1 unless the arm is a replay). An arm that
    warms up by itself (``lr_mode`` "constant": Schedule-Free) gets no schedule; an
    LR-free arm's peak is 1, so it gets the schedule's shape as its multiplier.
    Evaluation is at ``arm.eval_params`` where the arm has them."""

    def __init__(self, arm: Arm, graphdef, schedule_shape, chunk_tokens: int = 0,  # 0: auto (lbw_jax/train/loss.py)
                 held_batch=None):
        loss = make_loss(graphdef, chunk_tokens=chunk_tokens)
        if arm.lr_mode == "constant":
            schedule_shape = lambda step: 1.0

        def cell_step(params, opt_state, frozen, tokens, lr, step, faults: faults_lib.Faults, multiplier):
            in_spike = (step >= faults.lr_start) & (step < faults.lr_stop)
            lr_now = (lr * schedule_shape(step) * jnp.where(in_spike, faults.lr_factor, 1.0)
                      * multiplier[step])
            grad_factor = jnp.where(step == faults.grad_step, faults.grad_factor, 1.0)
            skipped_before = arm.probe(opt_state)["skipped"]
            # The signal study's held batch: a fixed batch its room probe reads (held_value_fn).
            extra = None if held_batch is None else {
                "held_value_fn": lambda p: loss(p, frozen, jnp.asarray(held_batch))}
            params, opt_state, metrics = train_step(loss, arm.make(lr_now), params, opt_state, frozen,
                                                    tokens[None], grad_factor=grad_factor, extra_args=extra)
            probe = arm.probe(opt_state)
            # The multiplier actually applied to this step's update: 0 when it was skipped.
            applied = jnp.where(probe["skipped"] > skipped_before, 0.0, probe["multiplier"])
            signals = {} if arm.signals is None else {
                f"signal_{k}": v for k, v in arm.signals(opt_state).items()}
            return params, opt_state, {**metrics, "multiplier": applied, "skipped": probe["skipped"],
                                       "room_probes": probe["room_probes"], "estimate": probe["estimate"], "lr": lr_now, **signals}

        def cell_eval(params, opt_state, frozen, val):
            if arm.eval_params is not None:
                params = arm.eval_params(opt_state, params)
            _, losses = lax.scan(lambda c, tokens: (c, loss(params, frozen, tokens)), None, val)
            return jnp.mean(losses)

        cells = (0, 0, None, 0, 0, None, 0, 0)
        self.init = jax.jit(jax.vmap(lambda params, lr: arm.make(lr).init(params)))
        self.step = jax.jit(jax.vmap(cell_step, in_axes=cells), donate_argnums=(0, 1))
        self.eval = jax.jit(jax.vmap(cell_eval, in_axes=(0, 0, None, None)))
        self._executables = {}

    def compiled(self, n, params, opt_state, frozen, batch_shape, lrs, fault_params, multipliers, val):
        """The step and eval executables for ``n`` cells, compiled once per size."""
        if n not in self._executables:
            tokens = jax.ShapeDtypeStruct((n, *batch_shape), jnp.int32)
            step = self.step.lower(params, opt_state, frozen, tokens, lrs, jnp.int32(0),
                                   fault_params, multipliers).compile()
            self._executables[n] = (step, self.eval.lower(params, opt_state, frozen, val).compile())
        return self._executables[n]


def stack(tree, n: int):
    """``n`` copies of every leaf of ``tree`` along a new leading axis (one per cell)."""
    return jax.tree.map(lambda x: jnp.repeat(x[None], n, axis=0), tree)


def _batches(cells, orders, step, stress, vocab_size, batch_shape):
    rows = []
    for cell in cells:
        start, stop = (faults_lib.window("burst", stress) if cell.scenario == "burst" else (-1, -1))
        if start <= step < stop:
            rows.append(faults_lib.random_batch(vocab_size, batch_shape, cell.seed, step))
        else:
            rows.append(orders[cell.seed].batch(step))
    return np.stack(rows)


def run_cells(program: ArmProgram, cells: list[Cell], start_params, frozen, *, orders, val,
              steps: int, eval_every: int, stress, vocab_size: int, keep_params: bool = False,
              multipliers=None, progress=None) -> CellRuns:
    """Trains ``cells`` together for ``steps`` steps from ``start_params``.

    ``orders`` maps a seed to its ``BatchOrder``; ``val`` is [batches, B, T+1];
    ``multipliers`` [cells, steps] multiplies each step's LR (a replay's trajectory;
    None: ones). Evaluations happen at step 0, every ``eval_every`` steps and at the end.
    """
    n = len(cells)
    lrs = jnp.asarray([c.peak_lr for c in cells], jnp.float32)
    multipliers = jnp.ones((n, steps), jnp.float32) if multipliers is None else jnp.asarray(
        multipliers, jnp.float32)
    if multipliers.shape != (n, steps):
        raise ValueError(f"multipliers have shape {multipliers.shape}; expected {(n, steps)}")
    fault_params = jax.tree.map(jnp.asarray, faults_lib.faults_for([c.scenario for c in cells], stress))
    batch_shape = orders[cells[0].seed].batch(0).shape
    val = jnp.asarray(val)

    t0 = time.perf_counter()
    params = stack(start_params, n)
    opt_state = program.init(params, lrs)
    step_exe, eval_exe = program.compiled(n, params, opt_state, frozen, batch_shape, lrs,
                                          fault_params, multipliers, val)
    compile_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    records, evals, eval_steps = [], [eval_exe(params, opt_state, frozen, val)], [0]
    for step in range(steps):
        tokens = _batches(cells, orders, step, stress, vocab_size, batch_shape)
        params, opt_state, metrics = step_exe(params, opt_state, frozen, tokens, lrs,
                                              jnp.int32(step), fault_params, multipliers)
        records.append(metrics)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            evals.append(eval_exe(params, opt_state, frozen, val))
            eval_steps.append(step + 1)
        if progress is not None:
            progress.update(n)   # cell-steps: the bar's total counts every cell's steps
    records, evals = jax.device_get((records, evals))
    run_s = time.perf_counter() - t0

    stacked = {k: np.stack([r[k] for r in records]) for k in records[0]}
    return CellRuns(cells=list(cells), loss=stacked["loss"], grad_norm=stacked["grad_norm"],
                    multiplier=stacked["multiplier"], skipped=stacked["skipped"],
                    room_probes=stacked["room_probes"], estimate=stacked["estimate"],
                    lr=stacked["lr"],
                    eval_steps=eval_steps,
                    val_ppl=np.exp(np.stack(evals).astype(np.float64)), compile_s=compile_s,
                    run_s=run_s, final_params=params if keep_params else None,
                    signals={k[len("signal_"):]: v for k, v in stacked.items() if k.startswith("signal_")})


def run_chunked(program: ArmProgram, cells: list[Cell], max_cells: int, multipliers=None,
                **kwargs) -> CellRuns:
    """``run_cells`` in chunks of at most ``max_cells`` (0: all at once), to bound memory."""
    size = max_cells or len(cells)
    chunk = lambda i: None if multipliers is None else multipliers[i:i + size]
    parts = [run_cells(program, cells[i:i + size], multipliers=chunk(i), **kwargs)
             for i in range(0, len(cells), size)]
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts], axis=1)
    return CellRuns(cells=[c for p in parts for c in p.cells], loss=cat("loss"),
                    grad_norm=cat("grad_norm"), multiplier=cat("multiplier"), skipped=cat("skipped"),
                    room_probes=cat("room_probes"),
                    estimate=cat("estimate"), lr=cat("lr"),
                    eval_steps=parts[0].eval_steps, val_ppl=cat("val_ppl"),
                    compile_s=sum(p.compile_s for p in parts), run_s=sum(p.run_s for p in parts),
                    signals={k: np.concatenate([p.signals[k] for p in parts], axis=1)
                             for k in parts[0].signals})
