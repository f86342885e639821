"""The optimizer from config: AdamW with its schedule, plain, governed by
``lbw_guard`` or wrapped by one baseline. ``train.run`` and the stress suite both
build their optimizer here, so an arm of the suite is the optimizer a user gets
from the same settings."""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import optax

import lbw_jax
from train.models.layout import stacked_layer_axes

GUARDS = lbw_jax.POLICIES
def schedule(cfg, steps: int, peak: float | None = None) -> optax.Schedule:
    """The config's schedule over ``steps`` peaking at ``peak`` (``optimizer.lr`` when
    omitted): linear warmup over ``optimizer.warmup_steps``, then constant or a cosine
    decay to 10% of the peak at ``steps``."""
    opt = cfg.optimizer
    peak = opt.lr if peak is None else peak
    if opt.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif opt.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(1, steps - opt.warmup_steps), alpha=0.1)
    else:
        raise ValueError(f"optimizer.schedule={opt.schedule!r}; choose constant or cosine")
    if opt.warmup_steps <= 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, opt.warmup_steps)
    return optax.join_schedules([warmup, main], [opt.warmup_steps])


def horizon(cfg) -> int:
    """The step at which the config's schedule ends its decay: ``optimizer.decay_steps``,
    or ``train.steps`` when that is 0."""
    return cfg.optimizer.get("decay_steps", 0) or cfg.train.steps


def schedule_values(cfg, steps) -> "np.ndarray":
    """The LR the config's schedule (over ``horizon(cfg)``) gives at each of ``steps``,
    as float64 on the host (for the run's records and the resume check)."""
    import numpy as np

    steps = np.asarray(steps)
    values = np.asarray(schedule(cfg, horizon(cfg))(steps), np.float64)
    return np.broadcast_to(values, steps.shape).copy()  # a constant schedule gives a scalar


def adamw(cfg, learning_rate) -> optax.GradientTransformation:
    opt = cfg.optimizer
    return optax.adamw(learning_rate, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)


def _knob_dict(kwargs) -> dict:
    return kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs or {})


def build_policy(name: str, kwargs=None):
    """The policy ``name`` of ``lbw_jax.POLICIES`` with its knobs (checked now)."""
    if name not in GUARDS:
        raise ValueError(f"optimizer.guard={name!r}; choose none or one of {sorted(GUARDS)}")
    return GUARDS[name](**_knob_dict(kwargs))


def _clip(inner, *, max_norm: float = 1.0):
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not (
            math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"optimizer.baseline_kwargs.max_norm={max_norm!r} must be a finite "
                         f"positive number")
    return optax.with_extra_args_support(optax.chain(optax.clip_by_global_norm(max_norm), inner))


def _zclip(inner, **kw):
    return optax.with_extra_args_support(optax.chain(lbw_jax.zclip(**kw), inner))


def _plateau(inner, **kw):
    return optax.chain(inner, optax.contrib.reduce_on_plateau(**kw))


class Baseline(NamedTuple):
    """A baseline of the stress suite around AdamW.

    Attributes:
      what: what it wraps around AdamW.
      build: ``build(inner, **knobs)``, the optimizer with AdamW as ``inner``.
      knobs_of: the function whose keyword parameters (and their published defaults) are
        its knobs.
    """

    what: str
    build: Callable
    knobs_of: Callable


# update_clip's b2 is not a knob: it is AdamW's own (optimizer.b2).
BASELINES = {
    "clip": Baseline("optax.clip_by_global_norm(max_norm) ahead of AdamW", _clip, _clip),
    "zclip": Baseline("lbw_jax.zclip(alpha, z_threshold, warmup_steps) ahead of AdamW",
                      _zclip, lbw_jax.zclip),
    "spike_skip": Baseline("lbw_jax.skip_spikes(AdamW, window, threshold, warmup)",
                           lbw_jax.skip_spikes, lbw_jax.skip_spikes),
    "update_clip": Baseline("lbw_jax.update_clip(AdamW): StableAdamW's per-tensor update clipping",
                            lbw_jax.update_clip, lbw_jax.update_clip),
    "plateau": Baseline("optax.contrib.reduce_on_plateau(...) after AdamW", _plateau,
                        optax.contrib.reduce_on_plateau),
}


def baseline_knobs(name: str) -> tuple[str, ...]:
    """The knob names ``optimizer.baseline_kwargs`` may set for baseline ``name``."""
    import inspect

    params = inspect.signature(BASELINES[name].knobs_of).parameters.values()
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and p.default is not p.empty and not (name == "update_clip" and p.name == "b2"))


def wrap_baseline(cfg, name: str, inner, kwargs=None) -> optax.GradientTransformationExtraArgs:
    """``inner`` (AdamW) with the baseline ``name`` around it; knobs are checked now (a
    name the baseline does not have is an error, never ignored)."""
    if name not in BASELINES:
        raise ValueError(f"optimizer.baseline={name!r}; choose none or one of {sorted(BASELINES)}")
    kw = _knob_dict(kwargs)
    unknown = sorted(set(kw) - set(baseline_knobs(name)))
    if unknown:
        raise ValueError(f"optimizer.baseline_kwargs.{unknown[0]}: the {name} baseline has no such "
                         f"knob; its knobs: {', '.join(baseline_knobs(name))}")
    if name == "update_clip":
        kw["b2"] = cfg.optimizer.b2
    return BASELINES[name].build(inner, **kw)


def build_optimizer(cfg, learning_rate=None, *, guard: str | None = None, policy=None,
                    baseline: str | None = None, baseline_kwargs=None
                    ) -> optax.GradientTransformationExtraArgs:
    """AdamW (``cfg.optimizer``'s b1, b2, weight decay) with at most one wrapper.

    Args:
      learning_rate: a number, a traced scalar (the stress suite's per-cell LR) or a
        schedule; default: the config's schedule over ``horizon(cfg)``.
      guard: a policy name for ``lbw_guard`` ("none": no guard); default
        ``optimizer.guard``, with knobs ``optimizer.policy_kwargs``.
      policy: an already built policy, used instead of building ``guard``'s.
      baseline: a name of ``BASELINES`` ("none": none); default ``optimizer.baseline``,
        with knobs ``optimizer.baseline_kwargs`` (or ``baseline_kwargs``).
    """
    opt = cfg.optimizer
    if learning_rate is None:
        check_lr(opt.lr)
        learning_rate = schedule(cfg, horizon(cfg))
    elif isinstance(learning_rate, numbers.Real):
        check_lr(learning_rate)
    guard = opt.guard if guard is None else guard
    if baseline is None:
        baseline = opt.get("baseline", "none")
        baseline_kwargs = opt.get("baseline_kwargs") if baseline_kwargs is None else baseline_kwargs
    inner = adamw(cfg, learning_rate)
    if policy is None and guard == "none":
        if baseline == "none":
            return optax.with_extra_args_support(inner)
        return wrap_baseline(cfg, baseline, inner, baseline_kwargs)
    if baseline != "none":
        raise ValueError(f"optimizer.guard={guard!r} and optimizer.baseline={baseline!r}: choose one "
                         f"(a guard, or a baseline with optimizer.guard='none')")
    policy = build_policy(guard, opt.policy_kwargs) if policy is None else policy
    # Scanned layers stack one tensor per layer: the laws read them one by one, exactly
    # as with the per-layer model (a per-layer model has nothing stacked: a no-op).
    return lbw_jax.lbw_guard(inner, policy=policy, skip_non_finite=opt.skip_non_finite,
                             stacked_axes=stacked_layer_axes)


def check_lr(lr) -> None:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"optimizer.lr={lr!r} must be a finite positive number")
