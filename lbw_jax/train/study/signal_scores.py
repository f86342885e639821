"""Scores of per-step stability signals against the loss EMA that the governor reacts to.

For each signal: (a) on the stressed runs, how many steps before the loss EMA's first harm
it first flags; (b) on the healthy runs (LRs at or below tuned AdamW's), how many runs it
flags at all, with and without the restart transient. A signal flags a step when its EMA
(``smooth``, as SALSA smooths a noisy per-batch test) crosses the level its mechanism names,
not a level fitted to these runs:

- ``overshoot`` above 2: the step is past the edge of stability along its own direction;
- ``acceptance`` below 0: the loss rose where the step predicted a fall;
- ``acceptance_salsa`` below 0: the same ratio with both sides smoothed first (EMAs of the
  loss change and of the prediction, ``derived``), as SALSA does against batch noise;
- ``update_growth`` above 2: the update norm doubled against its own history;
- ``update_growth_per_lr`` above 2: the same for the update norm per unit LR, so that an LR
  warmup, which grows the update by design, is not read as growth;
- ``polyak`` below 1: the LR in use is above the Polyak step (MoMo's ceiling, loss floor 0).

(``align`` is 1 - ``overshoot`` exactly, so it is not scored apart.) The harm test's own
flags on the healthy runs are counted the same way, as the baseline a signal must beat.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = {"overshoot": (">", 2.0), "acceptance": ("<", 0.0), "acceptance_salsa": ("<", 0.0),
              "update_growth": (">", 2.0), "update_growth_per_lr": (">", 2.0),
              "polyak": ("<", 1.0)}


def ema(x: np.ndarray, decay: float) -> np.ndarray:
    """EMA along axis 0 of [steps, cells], skipping NaN and infinities (no value: the last
    level is carried)."""
    out = np.full(x.shape, np.nan)
    level = np.full(x.shape[1:], np.nan)
    for t in range(x.shape[0]):
        v = np.where(np.isfinite(x[t]), x[t], np.nan)
        fresh = np.isnan(level) & ~np.isnan(v)
        level = np.where(fresh, v, np.where(np.isnan(v), level, decay * level + (1 - decay) * v))
        out[t] = level
    return out


def _earlier_ema(x: np.ndarray, decay: float) -> np.ndarray:
    """At each step, the EMA of the values before it (NaN at the first)."""
    level = ema(x, decay)
    return np.concatenate([np.full((1, *x.shape[1:]), np.nan), level[:-1]])


def derived(signals: dict, loss: np.ndarray, lr: np.ndarray, decay: float = 0.9) -> dict:
    """The signals computed after the run from the recorded ones: ``acceptance_salsa``
    (EMA of the loss change over the EMA of the previous prediction) and
    ``update_growth_per_lr`` (|u|/lr over the EMA of its earlier values)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.diff(loss.astype(np.float64), axis=0, prepend=np.nan)
        pred_before = np.concatenate([np.full((1, loss.shape[1]), np.nan), signals["pred"][:-1]])
        den = ema(pred_before, decay)   # 0 while the warmup's first LR (0) is in it: no ratio
        salsa = np.where(np.isfinite(den) & (den != 0), ema(change, decay) / np.where(den != 0, den, 1.0), np.nan)
        per_lr = np.where(lr > 0, signals["update_norm"] / lr, np.nan)
        growth = per_lr / _earlier_ema(per_lr, decay)
    return {**signals, "acceptance_salsa": salsa, "update_growth_per_lr": growth}


def harm_onset(loss: np.ndarray, *, fast_decay: float, forget: float, tolerance: float,
               warmup: int) -> np.ndarray:
    """The first step (per cell) at which the governor's harm test fires on ``loss``
    [steps, cells]: its fast EMA more than ``tolerance`` above its recent best (forgetting
    upward at ``forget``), after ``warmup`` steps; -1 where it never fires."""
    fast = best = loss[0].astype(np.float64)
    first = np.full(loss.shape[1], -1)
    for t in range(1, loss.shape[0]):
        fast = fast_decay * fast + (1 - fast_decay) * loss[t]
        best = np.minimum(fast, best + forget * (fast - best))
        harmful = (fast - best) / np.abs(best) > tolerance
        first = np.where((first < 0) & harmful & (t >= warmup), t, first)
    return first


def first_flag(signal: np.ndarray, name: str, *, smooth: float, start: int = 0) -> np.ndarray:
    """The first step at or after ``start`` (per cell) whose smoothed ``signal`` crosses
    ``THRESHOLDS[name]``; -1 where it never does."""
    op, level = THRESHOLDS[name]
    s = ema(signal.astype(np.float64), smooth)
    with np.errstate(invalid="ignore"):
        hit = s > level if op == ">" else s < level
    hit[:start] = False
    return np.where(hit.any(axis=0), hit.argmax(axis=0), -1)


def score(signals: dict, loss: np.ndarray, stressed: np.ndarray, healthy: np.ndarray, *,
          harm_knobs: dict, smooth: float, transient: int) -> dict:
    """Each scored signal's (a) lead over the harm onset on the stressed cells and (b)
    flags on the healthy cells. ``stressed``/``healthy``: boolean masks over cells."""
    onset = harm_onset(loss, **harm_knobs)
    after = harm_onset(loss, **{**harm_knobs, "warmup": max(harm_knobs["warmup"], transient)})
    out = {"harm_onset": onset.tolist(),
           "harm_healthy_flagged": int((onset[healthy] >= 0).sum()),
           "harm_healthy_flagged_after_transient": int((after[healthy] >= 0).sum())}
    for name in THRESHOLDS:
        flag = first_flag(signals[name], name, smooth=smooth)
        late = first_flag(signals[name], name, smooth=smooth, start=transient)
        lead = [int(o - f) for o, f in zip(onset[stressed], flag[stressed]) if o >= 0 and f >= 0]
        out[name] = {
            "first_flag": flag.tolist(),
            "stressed_flagged": int((flag[stressed] >= 0).sum()),
            "stressed_flagged_before_harm": int(((flag >= 0) & ((flag < onset) | (onset < 0)))[stressed].sum()),
            "lead_steps": lead,
            "healthy_flagged": int((flag[healthy] >= 0).sum()),
            "healthy_flagged_after_transient": int((late[healthy] >= 0).sum()),
        }
    return out
