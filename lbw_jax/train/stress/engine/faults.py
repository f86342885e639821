"""Failure scenarios injected mid-run (the paper's Figure 5).

A scenario is data, not code: per-cell arrays that the one compiled step reads
(an LR multiplier window, one gradient multiplied by a factor), plus batches of
random tokens the host feeds in place of real ones. So the faulted cells of an arm
run in the same batched program as its clean cells.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SCENARIOS = {
    "burst": "a burst of random-token batches",
    "lr_spike": "the learning rate multiplied for a window of steps",
    "grad_x100": "a single gradient multiplied by grad_factor",
    "nan_grad": "a single NaN gradient",
}


class Faults(NamedTuple):
    """Per-cell fault parameters (arrays with a leading cell axis under vmap).

    Attributes:
      lr_start, lr_stop: steps [lr_start, lr_stop) run at ``lr_factor`` times the LR.
      lr_factor: the LR multiplier inside that window.
      grad_step: the step whose gradient is multiplied by ``grad_factor`` (-1: none).
      grad_factor: the multiplier (NaN for the NaN scenario).
    """

    lr_start: np.ndarray
    lr_stop: np.ndarray
    lr_factor: np.ndarray
    grad_step: np.ndarray
    grad_factor: np.ndarray


def check(stress) -> None:
    unknown = sorted(set(stress.scenarios) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"stress.scenarios: unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
    if stress.scenarios:
        if not 0 < stress.inject_at < stress.steps:
            raise ValueError(f"stress.inject_at={stress.inject_at} must lie inside the run "
                             f"(0, stress.steps={stress.steps})")
        if stress.scenario_lr not in stress.lrs:
            raise ValueError(f"stress.scenario_lr={stress.scenario_lr} must be one of stress.lrs "
                             f"{list(stress.lrs)}: each faulted run is compared with its clean twin")


def window(scenario: str, stress) -> tuple[int, int]:
    """The steps [start, stop) the fault occupies."""
    length = {"burst": stress.burst_len, "lr_spike": stress.lr_spike_len}.get(scenario, 1)
    return stress.inject_at, stress.inject_at + length


def faults_for(scenarios: list[str], stress) -> Faults:
    """Stacked fault parameters for cells with these scenarios ("none" = clean)."""
    rows = []
    for name in scenarios:
        start, stop = window(name, stress) if name != "none" else (-1, -1)
        lr = (start, stop, stress.lr_spike) if name == "lr_spike" else (-1, -1, 1.0)
        grad = {"grad_x100": (start, stress.grad_factor), "nan_grad": (start, float("nan"))}.get(
            name, (-1, 1.0))
        rows.append((*lr, *grad))
    cols = list(zip(*rows))
    return Faults(np.asarray(cols[0], np.int32), np.asarray(cols[1], np.int32),
                  np.asarray(cols[2], np.float32), np.asarray(cols[3], np.int32),
                  np.asarray(cols[4], np.float32))


def random_batch(vocab_size: int, shape, seed: int, step: int) -> np.ndarray:
    """The batch of random tokens that replaces real data during a burst."""
    return np.random.default_rng([seed, step, 0xB0257]).integers(0, vocab_size, shape, dtype=np.int32)
