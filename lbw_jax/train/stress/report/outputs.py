"""Writes the suite's outputs: results.json, report.md (``markdown``) and the PNG figures
(``figures``)."""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform

import jax
import numpy as np

from lbw_jax.train.records import machine
from lbw_jax.train.stress.metrics import summary
from lbw_jax.train.stress.metrics import headline as headline_lib
from lbw_jax.train.stress.metrics import target as target_lib
from lbw_jax.train.stress.report import fault_table, figures, markdown
from lbw_jax.train.values import plain_json


def _num(x, digits=4):
    """JSON-safe: non-finite numbers become null."""
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None


def write(result, out_dir, command: str) -> dict:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"grid": summary.grid(result), "throughput": summary.throughput(result),
              "scenarios": summary.scenarios(result)}
    results = _results_json(result, tables, command)
    tables["headline"] = results["headline"]
    tables["time_to_target"] = results["time_to_target"]
    tables["cells"] = results["cells"]
    tables["fault_rows"] = fault_table.rows(results) if results["scenarios"] else []
    tables["environment"] = results["environment"]   # read once, for both files
    (out / "results.json").write_text(json.dumps(results, indent=1))
    names = figures.draw(result, out, tables["grid"])
    (out / "report.md").write_text(markdown.markdown(result, tables, command, names))
    return tables


def _environment():
    # The CPU model too (lbw_jax.train.records.machine): another model can give other stressed cells from
    # the same code, since a run that runs away amplifies the last bits XLA:CPU's code
    # generation for that CPU changes.
    device = jax.devices()[0]
    return {"jax": jax.__version__, "platform": device.platform,
            "device": getattr(device, "device_kind", str(device)), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "cpu": machine.describe()["cpu"]}


def _results_json(result, tables, command):
    cells = []
    for name, runs in result.runs.items():
        for i, c in enumerate(runs.cells):
            cells.append({
                "arm": name, "lr": c.lr, "run_lr": c.peak_lr, "seed": c.seed, "scenario": c.scenario,
                "final_ppl": _num(runs.val_ppl[-1, i]),
                "val_ppl": [_num(v) for v in runs.val_ppl[:, i]],
                "loss": [_num(v) for v in runs.loss[:, i]],
                "grad_norm": [_num(v, 3) for v in runs.grad_norm[:, i]],
                "multiplier": [_num(v) for v in runs.multiplier[:, i]],
                "mean_multiplier": _num(np.mean(runs.multiplier[:, i])),
                "skipped": int(runs.skipped[-1, i]),
                "room_probes": int(runs.room_probes[-1, i]),
                **({"estimate": [_num(v, 8) for v in runs.estimate[:, i]]}
                   if np.isfinite(runs.estimate[:, i]).any() else {}),
            })
    grid = {arm: {str(lr): {k: (_num(v) if isinstance(v, float) else v) for k, v in row.items()}
                  for lr, row in per.items()} for arm, per in tables["grid"].items()}
    scen = {arm: {name: {"per_seed": seeds, "summary": summary.aggregate_scenario(seeds)}
                  for name, seeds in per.items()} for arm, per in tables["scenarios"].items()}
    sources = {name: result.specs[name].source for name in result.runs}
    out = plain_json({
        "command": command, "environment": _environment(), "config": result.cfg.to_dict(),
        "n_params": result.n_params, "tokens_per_step": result.tokens_per_step,
        "start_ppl": result.start_ppl, "pretrain": result.pretrain, "labels": result.labels,
        "kinds": result.kinds, "sources": sources, "lr_free": result.lr_free,
        "control_lrs": result.control_lrs,
        "eval_steps": next(iter(result.runs.values())).eval_steps,
        "grid": grid, "throughput": tables["throughput"], "scenarios": scen,
        "sequential": result.sequential, "cells": cells,
    })
    # Computed from the JSON grid itself, so any results file gives the same numbers.
    out["headline"] = plain_json(headline_lib.headline(out, result.cfg.stress.stressed_above))
    out["time_to_target"] = plain_json(target_lib.time_to_target(out))
    return out
