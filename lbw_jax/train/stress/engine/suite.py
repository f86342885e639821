"""The whole stress suite: a shared starting model, every arm's cells, the
effective-LR control, and the batched-versus-one-by-one timing."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from flax import nnx

from lbw_jax.train.data import dataset as data_lib
from lbw_jax.train.models import make_mesh
from lbw_jax.train.optim import schedule_shape
from lbw_jax.train.stress.engine import shift_base
from lbw_jax.train.stress.engine import faults as faults_lib
from lbw_jax.train.stress.engine.arms import build_arm, parse_arm
from lbw_jax.train.stress.engine.start import pretrain_start, val_batches
from lbw_jax.train.stress.engine.sweep import ArmProgram, Cell, CellRuns, run_chunked, run_cells
from lbw_jax.train.stress.metrics.headline import stressed_from_means
from lbw_jax.train.data.build import build_data
from lbw_jax.train.trainer import build_model


def check_stress_config(cfg) -> None:
    """Checks the ``stress`` block of a stress config (its arms, LRs, seeds, controls and
    faults); fails fast, naming the setting, before anything is built or compiled."""
    s = cfg.stress
    if not s.arms:
        raise ValueError("stress.arms is empty")
    if len(set(s.arms)) != len(s.arms):
        raise ValueError(f"stress.arms lists an arm twice: {list(s.arms)}")
    arms = {name: build_arm(name, cfg) for name in s.arms}  # unknown names and bad knobs fail here
    for arm in arms.values():
        if arm.source is not None and (arm.source not in arms or not arms[arm.source].is_guard):
            raise ValueError(f"stress.arms has {arm.name}, which needs the guard arm "
                             f"{arm.source!r} in stress.arms too")
    if not s.lrs or any(lr <= 0 for lr in s.lrs):
        raise ValueError(f"stress.lrs={list(s.lrs)} must be a non-empty list of positive numbers")
    if s.seeds < 1:
        raise ValueError(f"stress.seeds={s.seeds} must be at least 1")
    if not 0 <= s.fault_seeds <= s.seeds:
        raise ValueError(f"stress.fault_seeds={s.fault_seeds} must lie in [0, stress.seeds={s.seeds}] "
                         f"(0: all seeds); a faulted run needs its clean twin")
    if s.steps < 1 or s.eval_every < 1:
        raise ValueError(f"stress.steps={s.steps} and stress.eval_every={s.eval_every} must be >= 1")
    if s.eval_batches < 1:
        raise ValueError(f"stress.eval_batches={s.eval_batches} must be >= 1")
    if s.controls_at not in ("all", "stressed"):
        raise ValueError(f"stress.controls_at={s.controls_at!r}; choose all or stressed")
    if "adamw" not in arms:   # checked before any cell runs, not when the report is written
        raise ValueError(f"stress.arms={list(s.arms)} needs the arm adamw: the report measures "
                         "every arm against tuned AdamW (and, with stress.controls_at='stressed', "
                         "the stressed LRs are those where AdamW ends more than "
                         "stress.stressed_above worse than its best)")
    unknown = sorted(set(s.fault_arms) - set(arms))
    if unknown:
        raise ValueError(f"stress.fault_arms names {unknown}, which are not in stress.arms {list(s.arms)}")
    for name in s.fault_arms:
        if arms[name].kind == "control":
            raise ValueError(f"stress.fault_arms: {name} is an effective-LR control, which runs only "
                             f"the grid (its LR comes from a clean run)")
    faults_lib.check(s)


def ordered_arms(s) -> list[str]:
    """Baselines and guards first (AdamW leading: the stressed LRs come from it), then
    the arms that copy a guard: controls and replays need its multipliers."""
    copies = [a for a in s.arms if parse_arm(a, s).kind in ("control", "replay")]
    rest = [a for a in s.arms if a not in copies]
    rest.sort(key=lambda a: a != "adamw")
    return rest + copies


def clean_means(runs: CellRuns, lrs) -> dict:
    """LR -> the mean final perplexity of an arm's clean cells at that LR."""
    means = {}
    for lr in lrs:
        idx = [i for i, c in enumerate(runs.cells) if c.scenario == "none" and c.lr == lr]
        means[lr] = float(np.mean(runs.val_ppl[-1, idx]))
    return means


def plan_cells(arm, s, lrs, copied=None) -> tuple[list[Cell], np.ndarray | None]:
    """The cells of one arm and, for a replay, their LR multipliers [cells, steps].

    Every (LR of ``lrs``, seed), then every (scenario, seed) at ``stress.scenario_lr`` when
    the arm is in ``stress.fault_arms``. ``copied`` is the guard arm's ``CellRuns`` for a
    control (its mean multiplier in the same cell) or a replay (its multiplier trajectory
    averaged over the seeds at the same LR, clean cells only: open loop).

    An LR-free arm has no LR to choose: it runs one column, filed under
    ``stress.scenario_lr`` (where its faulted cells run too) at peak 1, so its step size
    is its own estimate times the schedule's shape; the report draws it flat over the grid."""
    seeds = range(s.seeds)
    if arm.lr_free:
        cells = [Cell(arm.name, s.scenario_lr, seed, run_lr=1.0) for seed in seeds]
        if arm.name in s.fault_arms:
            cells += [Cell(arm.name, s.scenario_lr, seed, scenario, run_lr=1.0) for scenario in s.scenarios
                      for seed in range(s.fault_seeds or s.seeds)]
        return cells, None
    if arm.kind == "control":
        scales = {(c.lr, c.seed): float(np.mean(copied.multiplier[:, i]))
                  for i, c in enumerate(copied.cells) if c.scenario == "none"}
        return [Cell(arm.name, lr, seed, run_lr=lr * scales[(lr, seed)]) for lr in lrs for seed in seeds], None
    faulted = arm.name in s.fault_arms
    if arm.kind == "replay" and faulted and s.scenario_lr not in lrs:
        # A replay faulted at the scenarios' LR needs its clean twin there too, and the
        # guard's trajectory at that LR to replay.
        ran = {c.lr for c in copied.cells if c.scenario == "none"}
        lrs, faulted = (sorted([*lrs, s.scenario_lr]), True) if s.scenario_lr in ran else (lrs, False)
    cells = [Cell(arm.name, lr, seed) for lr in lrs for seed in seeds]
    if faulted:
        cells += [Cell(arm.name, s.scenario_lr, seed, scenario) for scenario in s.scenarios
                  for seed in range(s.fault_seeds or s.seeds)]
    if arm.kind != "replay":
        return cells, None
    return cells, np.stack([mean_trajectory(copied, c.lr) for c in cells])


def mean_trajectory(runs: CellRuns, lr: float) -> np.ndarray:
    """The applied multiplier per step, averaged over the clean cells at ``lr``."""
    idx = [i for i, c in enumerate(runs.cells) if c.scenario == "none" and c.lr == lr]
    return runs.multiplier[:, idx].astype(np.float64).mean(axis=1)


@dataclasses.dataclass
class SuiteResult:
    cfg: object
    runs: dict                 # arm name -> CellRuns
    labels: dict               # arm name -> label
    kinds: dict                # arm name -> kind (arms.KINDS)
    specs: dict                # arm name -> arms.ArmSpec
    lr_free: list              # the LR-free arms: one column each, drawn flat over the grid
    control_lrs: list          # the LRs the controls and replays ran at
    start_ppl: float
    pretrain: dict
    sequential: dict
    n_params: int
    tokens_per_step: int


@dataclasses.dataclass
class Setup:
    """What every arm of a suite run starts from: the config (a domain shift's, fine-tuning
    its base), the model split into its trained and frozen parts at the shared start, each
    seed's batch order, what ``run_cells`` takes in common, and the schedule's shape."""

    cfg: object
    graphdef: object
    params: object
    frozen: object
    orders: dict
    common: dict
    shape: object
    pretrain: dict
    n_params: int
    tokens_per_step: int


def prepare(cfg, log=print) -> Setup:
    """Builds the data and the model and trains the shared start (``stress.pretrain_steps``)."""
    base_info = None
    if cfg.stress.base.source:
        # A base pretrained full-parameter on another corpus (cached), then every cell
        # fine-tunes it on this config's corpus, as lbw_jax.train.run does from the same folder.
        base_info = shift_base.prepare(cfg, log)
        cfg = shift_base.finetune_config(cfg, base_info["folder"])
    s = cfg.stress
    data = build_data(cfg)
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])  # cells are the batch axis: one device
    model = build_model(cfg, data.tokenizer.vocab_size, mesh)
    trainable = nnx.LoRAParam if cfg.lora.enabled else nnx.Param
    graphdef, params, frozen = nnx.split(model, trainable, ...)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    windows = data.train.windows
    batch = cfg.train.batch_size
    val = val_batches(data.val_windows, s.eval_batches, batch)
    orders = {seed: data_lib.BatchOrder(windows, batch, cfg.seed + 1 + seed) for seed in range(s.seeds)}
    common = dict(frozen=frozen, val=val, stress=s, vocab_size=data.tokenizer.vocab_size)
    log(f"stress: {n_params:,} trainable parameters, {len(windows)} training windows, "
        f"{val.shape[0] * val.shape[1]} validation windows of {val.shape[2] - 1} tokens")

    pretrain = dict(base_info) if base_info is not None else {"steps": s.pretrain_steps}
    if s.pretrain_steps:
        params, more = pretrain_start(cfg, graphdef, params, windows, common, log)
        pretrain.update(more)
    shape = schedule_shape(cfg.optimizer.schedule, s.steps, cfg.optimizer.warmup_steps)
    return Setup(cfg, graphdef, params, frozen, orders, common, shape, pretrain, n_params,
                 batch * (windows.shape[1] - 1))


def run_suite(cfg, *, log=print, progress_factory=None) -> SuiteResult:
    check_stress_config(cfg)
    setup = prepare(cfg, log)
    cfg, s = setup.cfg, setup.cfg.stress
    graphdef, params, orders, common, shape = (setup.graphdef, setup.params, setup.orders,
                                               setup.common, setup.shape)
    results, labels, kinds, specs, lr_free, control_lrs = {}, {}, {}, {}, [], list(s.lrs)
    for name in ordered_arms(s):
        arm = build_arm(name, cfg)
        copied = results.get(arm.source)
        cells, multipliers = plan_cells(arm, s, control_lrs if arm.source else s.lrs, copied)
        if not cells:   # a control where no LR is stressed
            log(f"stress: {name}: no cells (no stressed LR for it to run at)")
            continue
        labels[name], kinds[name], specs[name] = arm.label, arm.kind, arm.spec
        if arm.lr_free:
            lr_free.append(name)
        progress = (progress_factory(f"{name} ({len(cells)} cells)", s.steps * len(cells))
                    if progress_factory else None)
        runs = run_chunked(ArmProgram(arm, graphdef, shape, cfg.model.loss_chunk_tokens), cells, s.max_cells, multipliers=multipliers,
                           start_params=params, orders=orders, steps=s.steps, eval_every=s.eval_every,
                           progress=progress, **common)
        if progress is not None:
            progress.close()
        results[name] = runs
        clean = sorted({c.lr for c in cells if c.scenario == "none"})
        finals = {lr: np.mean([runs.val_ppl[-1, i] for i, c in enumerate(runs.cells)
                               if c.lr == lr and c.scenario == "none"]) for lr in clean}
        log(f"stress: {name}: {len(cells)} cells, compile {runs.compile_s:.1f} s, run {runs.run_s:.1f} s; "
            f"final perplexity " + ", ".join(f"{lr:g}: {v:.2f}" for lr, v in finals.items()))
        if name == "adamw" and s.controls_at == "stressed":
            control_lrs = stressed_from_means(clean_means(runs, s.lrs), s.stressed_above)
            log(f"stress: stressed LRs (above AdamW's best, AdamW > {s.stressed_above:.0%} worse): "
                f"{control_lrs}; controls and replays run there")

    sequential = {}
    if s.sequential_cells:
        sequential = _time_one_by_one(cfg, graphdef, params, orders, shape, results, common, log)
    return SuiteResult(cfg=cfg, runs=results, labels=labels, kinds=kinds, specs=specs, lr_free=lr_free,
                       control_lrs=control_lrs,
                       start_ppl=float(results[ordered_arms(s)[0]].val_ppl[0, 0]),
                       pretrain=setup.pretrain, sequential=sequential, n_params=setup.n_params,
                       tokens_per_step=setup.tokens_per_step)


def _time_one_by_one(cfg, graphdef, params, orders, shape, results, common, log) -> dict:
    """Runs the first ``sequential_cells`` cells of the first arm one at a time (a
    one-cell program), for the batched-versus-one-by-one comparison."""
    s = cfg.stress
    name = ordered_arms(s)[0]
    batched = results[name]
    cells = batched.cells[:s.sequential_cells]
    program = ArmProgram(build_arm(name, cfg), graphdef, shape, cfg.model.loss_chunk_tokens)
    t0 = time.perf_counter()
    one = [run_cells(program, [cell], params, orders=orders, steps=s.steps,
                     eval_every=s.eval_every, **common) for cell in cells]
    wall = time.perf_counter() - t0
    # The same cells give the same numbers alone as in the batch (up to float order).
    ppl_alone = [float(r.val_ppl[-1, 0]) for r in one]
    ppl_batched = [float(batched.val_ppl[-1, i]) for i in range(len(cells))]
    total_cells = sum(len(r.cells) for r in results.values())
    per_cell_run = sum(r.run_s for r in one) / len(one)
    compile_one = one[0].compile_s
    out = {
        "arm": name, "cells": len(cells), "wall_s": wall, "run_s_per_cell": per_cell_run,
        "compile_s": compile_one,
        "batched_run_s_per_cell": batched.run_s / len(batched.cells),
        "ppl_alone": ppl_alone, "ppl_batched": ppl_batched,
        "grid_cells": total_cells,
        "grid_one_by_one_s": total_cells * per_cell_run + len(results) * compile_one,
        "grid_batched_s": sum(r.run_s + r.compile_s for r in results.values()),
    }
    log(f"stress: one by one {per_cell_run:.2f} s a cell vs batched {out['batched_run_s_per_cell']:.2f} s")
    return out
