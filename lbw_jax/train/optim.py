"""The optimizer from config: AdamW with its schedule, plain, governed by
``lbw_guard`` or wrapped by one baseline. ``lbw_jax.train.run`` and the stress suite both
build their optimizer here, so an arm of the suite is the optimizer a user gets
from the same settings."""

from __future__ import annotations

import inspect
import math
import numbers

import ml_collections
import numpy as np
import optax

import lbw_jax
from lbw_jax.train.baseline_registry import BASELINES
from lbw_jax.train.models.layout import stacked_layer_axes

SCHEDULES = ("constant", "cosine")


def schedule_shape(kind: str, steps: int, warmup: int, peak: float = 1.0) -> optax.Schedule:
    """Linear warmup over ``warmup`` steps to ``peak``, then constant or a cosine decay to
    10% of it at ``steps``. With peak 1 it is the shape the stress suite multiplies by
    each cell's LR; ``schedule`` gives a config's."""
    if kind == "constant":
        main = optax.constant_schedule(peak)
    elif kind == "cosine":
        main = optax.cosine_decay_schedule(peak, max(1, steps - warmup), alpha=0.1)
    else:
        raise ValueError(f"optimizer.schedule={kind!r}; choose {' or '.join(SCHEDULES)}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def schedule(cfg, steps: int, peak: float | None = None) -> optax.Schedule:
    """The config's schedule over ``steps`` peaking at ``peak`` (``optimizer.lr`` when
    omitted): ``schedule_shape`` of ``optimizer.schedule`` and ``optimizer.warmup_steps``."""
    opt = cfg.optimizer
    return schedule_shape(opt.schedule, steps, opt.warmup_steps, opt.lr if peak is None else peak)


def horizon(cfg) -> int:
    """The step at which the config's schedule ends its decay: ``optimizer.decay_steps``,
    or ``train.steps`` when that is 0."""
    return cfg.optimizer.get("decay_steps", 0) or cfg.train.steps


def schedule_values(cfg, steps) -> "np.ndarray":
    """The LR the config's schedule (over ``horizon(cfg)``) gives at each of ``steps``,
    as float64 on the host (for the run's records and the resume check)."""
    steps = np.asarray(steps)
    values = np.asarray(schedule(cfg, horizon(cfg))(steps), np.float64)
    return np.broadcast_to(values, steps.shape).copy()  # a constant schedule gives a scalar


def adamw(cfg, learning_rate) -> optax.GradientTransformation:
    opt = cfg.optimizer
    return optax.adamw(learning_rate, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)


def knob_dict(values) -> dict:
    """Knobs given as a ``ConfigDict``, a mapping or None, as a plain dict."""
    if isinstance(values, ml_collections.ConfigDict):
        return values.to_dict()
    return dict(values or {})


def build_policy(name: str, kwargs=None):
    """The policy ``name`` of ``lbw_jax.POLICIES`` with its knobs (checked now)."""
    if name not in lbw_jax.POLICIES:
        raise ValueError(f"optimizer.policy={name!r}; choose none or one of {sorted(lbw_jax.POLICIES)}")
    return lbw_jax.POLICIES[name].create(**knob_dict(kwargs))


def knob_defaults(name: str) -> dict:
    """The knobs of the policy or baseline ``name`` with their defaults: a policy's
    dataclass fields (``lbw_jax.knobs.defaults``), a baseline's keyword parameters with
    defaults (``lbw_jax.train.baseline_registry``: those its record fixes from the config are not knobs).
    The one list of them: ``knob_config`` makes the config fields from it."""
    if name in lbw_jax.POLICIES:
        return lbw_jax.knobs.defaults(lbw_jax.POLICIES[name])
    record = BASELINES[name]
    params = inspect.signature(record.knobs_of).parameters.values()
    return {p.name: p.default for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty
            and p.name not in record.fixed}


def baseline_knobs(name: str) -> tuple[str, ...]:
    """The knob names baseline ``name`` has."""
    return tuple(knob_defaults(name))


def knob_config() -> ml_collections.ConfigDict:
    """One config subtree per policy and baseline, holding its knobs at their defaults:
    ``optimizer.governor.tolerance``, ``optimizer.clip.max_norm``... (typed by
    ml_collections from the defaults; the policy's own checks run when it is built)."""
    tree = ml_collections.ConfigDict()
    for name in (*lbw_jax.POLICIES, *BASELINES):
        tree[name] = ml_collections.ConfigDict(knob_defaults(name))
    return tree


def set_knobs(cfg, name: str) -> dict:
    """The knobs of ``name`` that ``cfg`` sets away from their defaults."""
    group = cfg.optimizer.get(name)
    if group is None:
        return {}
    defaults = knob_defaults(name)
    return {k: v for k, v in knob_dict(group).items() if k not in defaults or v != defaults[k]}


def policy_knobs(cfg, name: str | None = None) -> dict:
    """The knobs of policy ``name`` (default ``optimizer.policy``): ``optimizer.<name>``."""
    name = cfg.optimizer.policy if name is None else name
    return knob_dict(cfg.optimizer.get(name))


def inactive_knobs(cfg) -> list[str]:
    """Knobs set away from their defaults for a policy or baseline that is not in use:
    a mistake (they would do nothing), so ``lbw_jax.train.validate`` refuses them."""
    opt = cfg.optimizer
    active = {opt.policy, opt.get("baseline", "none")}
    return [f"optimizer.{name}.{k}={v!r}" for name in (*lbw_jax.POLICIES, *BASELINES)
            if name not in active for k, v in set_knobs(cfg, name).items()]


def record_guard_knobs(policy_name: str, baseline: str) -> dict:
    """The knobs ``baseline``'s record gives policy ``policy_name`` over it (``guard_knobs``)."""
    record = BASELINES.get(baseline)
    return dict((record.guard_knobs or {}).get(policy_name, {})) if record is not None else {}


def baseline_guard_knobs(cfg, policy_name: str, baseline: str, changed=()) -> dict:
    """The knobs policy ``policy_name`` takes over ``baseline`` (its record's
    ``guard_knobs``), except those the config sets away from their defaults or
    ``changed`` names (a suite variant's own knobs): what the user chose stands."""
    wanted = record_guard_knobs(policy_name, baseline)
    chosen = set(set_knobs(cfg, policy_name)) | set(changed)
    return {k: v for k, v in wanted.items() if k not in chosen}


def baseline_learning_rate(cfg, name: str):
    """What baseline ``name`` takes as its learning rate in ``lbw_jax.train.run``: the config's
    schedule, its shape (peak 1) for an LR-free baseline, or ``optimizer.lr`` constant for
    Schedule-Free (``lbw_jax.train.baseline_registry.LR_MODES``)."""
    mode, opt = BASELINES[name].lr, cfg.optimizer
    if mode == "shape":
        return schedule_shape(opt.schedule, horizon(cfg), opt.warmup_steps)
    check_lr(opt.lr)
    return opt.lr if mode == "constant" else schedule(cfg, horizon(cfg))


def build_baseline(cfg, name: str, learning_rate, kwargs=None, *, scaled: bool = False
                   ) -> optax.GradientTransformationExtraArgs:
    """Baseline ``name`` of ``lbw_jax.train.baseline_registry.BASELINES`` around AdamW at
    ``learning_rate`` (or in its place); knobs are checked now (a name the baseline does
    not have is an error, never ignored). ``kwargs``: its knobs, default
    ``optimizer.<name>``. ``scaled``: built to run inside the guard, taking its scale as
    a learning-rate multiplier (a ``guardable`` record only)."""
    if name not in BASELINES:
        raise ValueError(f"optimizer.baseline={name!r}; choose none or one of {sorted(BASELINES)}")
    kw = knob_dict(cfg.optimizer.get(name) if kwargs is None else kwargs)
    unknown = sorted(set(kw) - set(baseline_knobs(name)))
    if unknown:
        raise ValueError(f"optimizer.{name}.{unknown[0]}: the {name} baseline has no such "
                         f"knob; its knobs: {', '.join(baseline_knobs(name))}")
    kw = {**knob_defaults(name), **kw}
    record = BASELINES[name]
    if scaled and not record.guardable:
        raise ValueError(f"optimizer.baseline={name!r} cannot run inside the guard: {record.label} acts "
                         f"on the step itself, so the two would be two controls of one step; choose "
                         f"one (a guard with optimizer.baseline='none', or this baseline with "
                         f"optimizer.policy='none'). The guard runs over "
                         f"{', '.join(n for n, r in BASELINES.items() if r.guardable)}")
    if record.role == "replaces":
        # (Only a guardable record's builder takes ``scaled``.)
        scaling = {"scaled": True} if scaled else {}
        return optax.with_extra_args_support(record.build(cfg.optimizer, learning_rate, **scaling, **kw))
    opt = cfg.optimizer
    inner = (lbw_jax.scaled_lr(optax.adamw, learning_rate, b1=opt.b1, b2=opt.b2,
                               weight_decay=opt.weight_decay) if scaled else adamw(cfg, learning_rate))
    return optax.with_extra_args_support(record.build(opt, inner, **kw))


def build_optimizer(cfg, learning_rate=None, *, policy_name: str | None = None, policy=None,
                    baseline: str | None = None, baseline_kwargs=None
                    ) -> optax.GradientTransformationExtraArgs:
    """AdamW (``cfg.optimizer``'s b1, b2, weight decay) with at most one wrapper, or a
    guardable baseline (``lbw_jax.train.baseline_registry``) inside the guard.

    Args:
      learning_rate: a number, a traced scalar (the stress suite's per-cell LR) or a
        schedule; default: the config's schedule over ``horizon(cfg)``.
      policy_name: a policy of ``lbw_jax.POLICIES`` for ``lbw_guard`` ("none": no guard);
        default ``optimizer.policy``, with knobs ``optimizer.<policy_name>`` (``policy_knobs``).
      policy: an already built policy, used instead of building ``policy_name``'s.
      baseline: a name of ``BASELINES`` ("none": none); default ``optimizer.baseline``,
        with knobs ``optimizer.<baseline>`` (or ``baseline_kwargs``). Without
        ``learning_rate`` it takes ``baseline_learning_rate``; with one, a baseline that
        replaces AdamW takes it as it is (the stress suite passes each its own). With a
        guard too, the guard wraps it and hands it its scale as a multiplier of its
        learning rate (``lbw_guard(..., scale_inside=True)``); a baseline that acts on
        the step itself (clipping, skipping, a plateau scale) is refused.
    """
    opt = cfg.optimizer
    policy_name = opt.policy if policy_name is None else policy_name
    if baseline is None:
        baseline = opt.get("baseline", "none")
    if isinstance(learning_rate, numbers.Real):
        check_lr(learning_rate)
    if baseline != "none" and policy is None and policy_name == "none":
        if learning_rate is None and baseline in BASELINES:
            learning_rate = baseline_learning_rate(cfg, baseline)
        return build_baseline(cfg, baseline, learning_rate, baseline_kwargs)
    guarded_baseline = baseline != "none"
    if guarded_baseline:
        if baseline not in BASELINES:
            raise ValueError(f"optimizer.baseline={baseline!r}; choose none or one of {sorted(BASELINES)}")
        if learning_rate is None:
            learning_rate = baseline_learning_rate(cfg, baseline)
        inner = build_baseline(cfg, baseline, learning_rate, baseline_kwargs, scaled=True)
    else:
        if learning_rate is None:
            check_lr(opt.lr)
            learning_rate = schedule(cfg, horizon(cfg))
        inner = adamw(cfg, learning_rate)
        if policy is None and policy_name == "none":
            return optax.with_extra_args_support(inner)
    if policy is None:
        over = baseline_guard_knobs(cfg, policy_name, baseline) if guarded_baseline else {}
        policy = build_policy(policy_name, {**policy_knobs(cfg, policy_name), **over})
    # Scanned layers stack one tensor per layer: the laws read them one by one, exactly
    # as with the per-layer model (a per-layer model has nothing stacked: a no-op).
    return lbw_jax.lbw_guard(inner, policy=policy, skip_non_finite=opt.skip_non_finite,
                             stacked_axes=stacked_layer_axes, scale_inside=guarded_baseline)


def check_lr(lr) -> None:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"optimizer.lr={lr!r} must be a finite positive number")
