"""The one registry of what AdamW is compared with: the baselines that wrap it (clipping,
spike skipping, reduce_on_plateau, Mechanic) and the baselines that replace it with their
own step-size rule (Prodigy, D-Adaptation, Schedule-Free AdamW, MoMo-Adam). The baselines
and Mechanic can also run inside the guard (``guardable``): their builder then takes the
guard's scale as a multiplier of their learning rate (``lbw_jax.scaled_lr``).

A record says everything ``lbw_jax.train.run``, the stress suite and its report need: its
label, whether it wraps or replaces AdamW, its knobs (the keyword parameters of one
function, with their published defaults: declared once, there), how its learning
rate is given, how to read its applied multiplier and step-size estimate from its
state (by field name, ``optax.tree_utils.tree_get``, never by position) and, for
Schedule-Free, which parameters to evaluate. Adding a baseline is adding one record.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

import lbw_jax

ROLES = ("wraps", "replaces")
# How a record takes its learning rate:
#   schedule: the config's schedule (optimizer.lr, warmup, decay), like AdamW.
#   shape:    LR-free: the schedule's shape (peak 1) times its own learning_rate knob,
#             a multiplier of the step size it estimates; optimizer.lr is not read.
#   constant: optimizer.lr with no decay; the optimizer warms up by itself (Schedule-Free).
LR_MODES = ("schedule", "shape", "constant")
PROBES = ("multiplier", "skipped", "estimate", "room_probes")


class Baseline(NamedTuple):
    """One baseline of AdamW.

    Attributes:
      label: a readable name for reports.
      what: how it wraps or replaces AdamW, in words.
      role: ``"wraps"``: ``build(opt, inner, **knobs)`` with the config's AdamW as
        ``inner``; ``"replaces"``: ``build(opt, learning_rate, **knobs)``. ``opt`` is the
        config's ``optimizer``: its b1, b2, weight decay and warmup are shared with AdamW.
      build: the builder, as ``role`` says.
      knobs_of: the function whose keyword parameters with defaults are its knobs.
      fixed: parameters of ``knobs_of`` that are not knobs: the build sets them from the
        config (AdamW's betas and weight decay), so a comparison changes one thing.
      probe: optimizer state -> a dict with any of ``PROBES``: ``multiplier``, the multiplier
        it applied to AdamW's step (1 when absent); ``skipped``, steps skipped so far;
        ``estimate``, its own step-size estimate (Prodigy's and D-Adaptation's
        ``estim_lr``, Mechanic's summed ``s``); ``room_probes``, the forward passes a guard's
        room probe spent so far (0 for a baseline).
      lr: one of ``LR_MODES``.
      eval_params: ``(state, params) -> params`` to evaluate (Schedule-Free's averaged
        point), or None: evaluate the parameters as trained.
      guardable: whether ``lbw_guard`` may wrap it: its builder takes ``scaled=True`` and
        then builds it around ``lbw_jax.scaled_lr``, so the guard's scale enters as its
        learning-rate multiplier (``scale_inside``). The others act on the step
        themselves (clipping, skipping, a plateau scale): a guard over them would be two
        controls of one step.
      guard_knobs: policy -> knobs it takes over this baseline unless the config sets them
        away from their defaults (``lbw_jax.train.optim.baseline_guard_knobs``), with ``guard_why``
        saying why: MoMo's Polyak step varies by design, which the governor's one-step
        trust region would clamp as spikes; D-Adaptation's and Prodigy's step-size
        estimate grows with the distance their steps travel, which the room level's cap on
        every step would shrink.
    """

    label: str
    what: str
    role: str
    build: Callable
    knobs_of: Callable
    fixed: tuple = ()
    probe: Callable | None = None
    lr: str = "schedule"
    eval_params: Callable | None = None
    guardable: bool = False
    guard_knobs: dict | None = None
    guard_why: str = ""

    @property
    def lr_free(self) -> bool:
        return self.lr == "shape"


def read(**fields) -> Callable:
    """A probe that reads state fields by name: ``read(multiplier="last_factor")``, or
    ``read(multiplier=("s", jnp.sum))`` to reduce the field first. A field that is missing,
    or found twice in the state, is a ``KeyError`` at trace time, never a wrong number."""
    def probe(state):
        out = {}
        for key, spec in fields.items():
            name, reduce = spec if isinstance(spec, tuple) else (spec, None)
            value = optax.tree_utils.tree_get(state, name)
            if value is None:
                raise KeyError(f"the optimizer state has no field {name!r} to read as {key!r}")
            out[key] = reduce(value) if reduce is not None else value
        return out
    return probe


def _clip(opt, inner, *, max_norm: float = 1.0):
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or not (
            math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"optimizer.clip.max_norm={max_norm!r} must be a finite positive number")
    return optax.with_extra_args_support(optax.chain(optax.clip_by_global_norm(max_norm), inner))


def _zclip(opt, inner, **kw):
    return optax.with_extra_args_support(optax.chain(lbw_jax.zclip(**kw), inner))


def _plateau(opt, inner, **kw):
    return optax.chain(inner, optax.contrib.reduce_on_plateau(**kw))


def _mechanize(opt, inner, **kw):
    # Guarded, ``inner`` is AdamW built by lbw_jax.scaled_lr: Mechanic forwards the
    # guard's lr_scale to it, so its anchor and accumulated updates follow the steps taken.
    return optax.contrib.mechanize(inner, **kw)


def _made(factory, learning_rate, scaled, **kw):
    """``factory(learning_rate, **kw)``, or around ``lbw_jax.scaled_lr`` (``scaled``) so
    that a guard hands it its scale as a learning-rate multiplier."""
    if scaled:
        return lbw_jax.scaled_lr(factory, learning_rate, **kw)
    return factory(learning_rate, **kw)


# Prodigy and D-Adaptation divide by a sum weighted by the learning rate: a schedule that
# starts at 0 (any linear warmup from 0, e.g. optax.linear_schedule(0.0, peak, warmup)) makes
# their first estimate 0/0 and every parameter NaN, as a quadratic toy reproduces (the trap in
# docs/guard_over_baselines.md). Their multiplier is floored at this fraction.
LR_FREE_FLOOR = 1e-6


def _floored(learning_rate, multiplier):
    if callable(learning_rate):
        return lambda count: multiplier * jnp.maximum(learning_rate(count), LR_FREE_FLOOR)
    return multiplier * jnp.maximum(learning_rate, LR_FREE_FLOOR)


def _check_multiplier(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"optimizer.{name}.learning_rate={value!r} must be a finite positive number "
                         f"(a multiplier of the step size {name} estimates)")


def _lr_free(name, transform):
    """The builder of an LR-free baseline: the schedule's shape comes in as ``shape``, its
    own ``learning_rate`` knob multiplies it, and AdamW's betas and weight decay are its."""
    def build(opt, shape, *, scaled=False, **kw):
        multiplier = kw.pop("learning_rate")
        _check_multiplier(name, multiplier)
        return _made(transform, _floored(shape, multiplier), scaled, betas=(opt.b1, opt.b2),
                     weight_decay=opt.weight_decay, **kw)
    return build


def _schedule_free_adamw(opt, learning_rate, *, scaled=False, warmup_steps=None, **kw):
    # Its own warmup, and no decay: that is its point. None: the config's warmup_steps.
    warmup = opt.warmup_steps if warmup_steps is None else warmup_steps
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0:
        raise ValueError(f"optimizer.schedule_free_adamw.warmup_steps={warmup!r} must be an integer >= 0")
    return _made(optax.contrib.schedule_free_adamw, learning_rate, scaled, warmup_steps=int(warmup) or None,
                 b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay, **kw)


def _momo_adam(opt, learning_rate, *, scaled=False, **kw):
    # The user's LR is its ceiling: it steps by min(learning_rate, a Polyak step).
    return _made(optax.contrib.momo_adam, learning_rate, scaled, b1=opt.b1, b2=opt.b2,
                 weight_decay=opt.weight_decay, **kw)


def _schedule_free_eval(state, params):
    """``optax.contrib.schedule_free_eval_params`` of the Schedule-Free state in ``state``
    (found by its fields, wherever the state nests it)."""
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.contrib.ScheduleFreeState))
             if isinstance(s, optax.contrib.ScheduleFreeState)]
    if len(found) != 1:
        raise ValueError(f"schedule_free_adamw: expected one ScheduleFreeState in the optimizer state, "
                         f"found {len(found)}")
    return optax.contrib.schedule_free_eval_params(found[0], params)


# D-Adaptation's and Prodigy's estimate d is a lower bound on the distance to the solution,
# built from their steps weighted by the learning rate they ran at (a guard's scale inside
# them, ``scale_inside``): a level that caps every step shrinks d in proportion, and the
# smaller d shrinks every later step, so the cap compounds. Acting on evidence only, the
# governor's cuts stop at the level and calm steps are never capped.
_LR_FREE_GUARD_KNOBS = {"governor": {"room_cap": False}}
_LR_FREE_GUARD_WHY = ("the estimate of an LR-free optimizer grows with the distance its steps travel; "
                      "the room level's cap on every step shrinks it, and the smaller estimate every "
                      "later step (measured over D-Adaptation on the LoRA shift: +5.75% against the "
                      "bare run with the cap, equal to it without, docs/guard_over_baselines.md)")


BASELINES = {
    "clip": Baseline("AdamW + clip_by_global_norm", "optax.clip_by_global_norm(max_norm) ahead of AdamW",
                     "wraps", _clip, _clip),
    "zclip": Baseline("AdamW + ZClip", "lbw_jax.zclip(alpha, z_threshold, warmup_steps) ahead of AdamW",
                      "wraps", _zclip, lbw_jax.zclip, probe=read(multiplier="last_factor")),
    "spike_skip": Baseline("AdamW + spike skip", "lbw_jax.skip_spikes(AdamW, window, threshold, warmup)",
                           "wraps", lambda opt, inner, **kw: lbw_jax.skip_spikes(inner, **kw),
                           lbw_jax.skip_spikes, probe=read(skipped="skipped")),
    # update_clip's b2 is AdamW's own (optimizer.b2), not a knob.
    "update_clip": Baseline("AdamW + update clipping (StableAdamW)",
                            "lbw_jax.update_clip(AdamW): StableAdamW's per-tensor update clipping",
                            "wraps", lambda opt, inner, **kw: lbw_jax.update_clip(inner, b2=opt.b2, **kw),
                            lbw_jax.update_clip, fixed=("b2",), probe=read(multiplier="last_factor")),
    "plateau": Baseline("AdamW + reduce_on_plateau", "optax.contrib.reduce_on_plateau(...) after AdamW",
                        "wraps", _plateau, optax.contrib.reduce_on_plateau,
                        probe=read(multiplier=("scale", lambda v: jnp.asarray(v, jnp.float32)))),
    # Mechanic learns one scale s (summed over its betas) of AdamW's accumulated updates.
    "mechanize": Baseline("Mechanic (optax.contrib.mechanize over AdamW)",
                          "optax.contrib.mechanize(AdamW, weight_decay, eps, s_init, num_betas)",
                          "wraps", _mechanize, optax.contrib.mechanize,
                          probe=read(multiplier=("s", jnp.sum), estimate=("s", jnp.sum)), guardable=True),
    "prodigy": Baseline("Prodigy (optax.contrib.prodigy)",
                        "optax.contrib.prodigy in place of AdamW, with AdamW's betas and weight decay",
                        "replaces", _lr_free("prodigy", optax.contrib.prodigy), optax.contrib.prodigy, fixed=("betas", "weight_decay"),
                        probe=read(estimate="estim_lr"), lr="shape", guardable=True,
                        guard_knobs=_LR_FREE_GUARD_KNOBS, guard_why=_LR_FREE_GUARD_WHY),
    "dadapt_adamw": Baseline("D-Adaptation AdamW (optax.contrib.dadapt_adamw)",
                             "optax.contrib.dadapt_adamw in place of AdamW, with AdamW's betas and weight decay",
                             "replaces", _lr_free("dadapt_adamw", optax.contrib.dadapt_adamw),
                             optax.contrib.dadapt_adamw,
                             fixed=("betas", "weight_decay"), probe=read(estimate="estim_lr"), lr="shape",
                             guardable=True, guard_knobs=_LR_FREE_GUARD_KNOBS, guard_why=_LR_FREE_GUARD_WHY),
    "schedule_free_adamw": Baseline(
        "Schedule-Free AdamW (optax.contrib.schedule_free_adamw)",
        "optax.contrib.schedule_free_adamw in place of AdamW (its own warmup, no decay), with "
        "AdamW's betas and weight decay, evaluated at schedule_free_eval_params",
        "replaces", _schedule_free_adamw, optax.contrib.schedule_free_adamw,
        fixed=("learning_rate", "b1", "b2", "weight_decay", "state_dtype"), lr="constant",
        eval_params=_schedule_free_eval, guardable=True),
    # MoMo's Polyak step reads the loss (value=) and a lower bound of it: 0 by default,
    # or estimated online (adapt_lower_bound).
    "momo_adam": Baseline(
        "MoMo-Adam (optax.contrib.momo_adam)",
        "optax.contrib.momo_adam in place of AdamW: Adam with the step min(learning_rate, a "
        "Polyak step), with AdamW's betas and weight decay",
        "replaces", _momo_adam, optax.contrib.momo_adam,
        fixed=("learning_rate", "b1", "b2", "weight_decay"),
        guardable=True, guard_knobs={"governor": {"use_trust": False}},
        guard_why="MoMo's step is min(learning_rate, a Polyak step) and varies from step to step by "
                  "design; the governor's trust region, which bounds a step to twice the previous "
                  "one, clamps that variation as spikes (measured: a 0.03-0.4 multiplier at healthy "
                  "LRs, docs/guard_over_baselines.md)"),
}


def unprobed(_state=None) -> dict:
    """Every key of ``PROBES`` at its neutral value: multiplier 1, nothing skipped, no estimate
    (NaN), no probe. What an arm without a record of its own reports."""
    return {"multiplier": jnp.ones([], jnp.float32), "skipped": jnp.zeros([], jnp.int32),
            "estimate": jnp.full([], jnp.nan, jnp.float32), "room_probes": jnp.zeros([], jnp.int32)}


def probe_of(name: str) -> Callable:
    """Baseline ``name``'s probe, completed to every key of ``PROBES`` (``unprobed`` where
    the record does not read one)."""
    read_fields = BASELINES[name].probe

    def probe(state):
        out = unprobed()
        if read_fields is not None:
            out.update({k: jnp.asarray(v, out[k].dtype) for k, v in read_fields(state).items()})
        return out
    return probe
