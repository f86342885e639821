"""The optimizer arms of the stress suite, each a function of a traced learning rate.

Every arm is the same AdamW (and schedule: the caller multiplies it into ``lr``)
with one thing around it. ``make(lr)`` is called inside the vmapped step with the
cell's learning rate as a tracer, so one compiled program serves every LR and seed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import optax

import lbw_jax

BASELINES = ("adamw", "clip", "zclip", "spike_skip", "plateau", "effective_lr")
# ``effective_lr_<guard arm>`` also names an effective-LR control of that arm.
LABELS = {"adamw": "AdamW", "clip": "AdamW + clip_by_global_norm", "zclip": "AdamW + ZClip",
          "spike_skip": "AdamW + spike skip", "plateau": "AdamW + reduce_on_plateau",
          "effective_lr": "AdamW at the guard's mean effective LR"}


@dataclasses.dataclass(frozen=True)
class Arm:
    """One optimizer arm.

    Attributes:
      name: the config name.
      label: a readable name for reports.
      make: learning rate (a traced scalar) -> the optimizer; its update takes ``value=``.
      probe: optimizer state -> {"scale", "skipped"}: the step multiplier the arm applied
        (1 for arms without one) and the steps it skipped so far.
      is_guard: an ``lbw_guard`` policy arm (injected faults run on these and AdamW).
    """

    name: str
    label: str
    make: Callable[[jnp.ndarray], optax.GradientTransformationExtraArgs]
    probe: Callable[[object], dict]
    is_guard: bool = False


def _one(_state):
    return {"scale": jnp.ones([], jnp.float32), "skipped": jnp.zeros([], jnp.int32)}


def build_arm(name: str, cfg) -> Arm:
    """The arm called ``name``: a baseline or any policy in ``lbw_jax.POLICIES``."""
    opt, s = cfg.optimizer, cfg.stress

    def adamw(lr):
        return optax.adamw(lr, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)

    plain = lambda lr: optax.with_extra_args_support(adamw(lr))
    if name == "adamw":
        return Arm(name, LABELS[name], plain, _one)
    if name.startswith("effective_lr"):
        return Arm(name, f"AdamW at {effective_source(name, s)}'s mean effective LR", plain, _one)
    if name == "clip":
        return Arm(name, f"{LABELS[name]}({s.clip_norm})",
                   lambda lr: optax.with_extra_args_support(
                       optax.chain(optax.clip_by_global_norm(s.clip_norm), adamw(lr))), _one)
    if name == "zclip":
        zclip_kwargs = s.zclip.to_dict()
        lbw_jax.zclip(**zclip_kwargs)  # checks the knobs now, not inside a trace

        def zclip_probe(state):
            return {"scale": state[0].last_factor, "skipped": jnp.zeros([], jnp.int32)}

        return Arm(name, LABELS[name],
                   lambda lr: optax.with_extra_args_support(
                       optax.chain(lbw_jax.zclip(**zclip_kwargs), adamw(lr))), zclip_probe)
    if name == "spike_skip":
        skip_kwargs = s.spike_skip.to_dict()
        lbw_jax.skip_spikes(adamw(1.0), **skip_kwargs)
        return Arm(name, LABELS[name], lambda lr: lbw_jax.skip_spikes(adamw(lr), **skip_kwargs),
                   lambda state: {"scale": jnp.ones([], jnp.float32), "skipped": state.skipped})
    if name == "plateau":
        plateau_kwargs = s.plateau.to_dict()
        optax.contrib.reduce_on_plateau(**plateau_kwargs)

        def plateau_probe(state):
            return {"scale": jnp.asarray(state[1].scale, jnp.float32),
                    "skipped": jnp.zeros([], jnp.int32)}

        return Arm(name, LABELS[name],
                   lambda lr: optax.chain(adamw(lr), optax.contrib.reduce_on_plateau(**plateau_kwargs)),
                   plateau_probe)
    if name in lbw_jax.POLICIES or name in s.variants:
        if name in s.variants:   # e.g. an ablation: a policy with some knobs changed
            policy_name, policy_kwargs = s.variants[name].policy, s.variants[name].kwargs
            label = f"{policy_name}, " + ", ".join(f"{k}={v}" for k, v in policy_kwargs.items())
        else:
            policy_name, policy_kwargs, label = name, s.policy_kwargs.get(name, {}), name
        policy_kwargs = policy_kwargs.to_dict() if hasattr(policy_kwargs, "to_dict") else dict(policy_kwargs)
        if policy_name not in lbw_jax.POLICIES:
            raise ValueError(f"stress.variants.{name}.policy={policy_name!r} is not a policy of "
                             f"lbw_jax.POLICIES {sorted(lbw_jax.POLICIES)}")
        policy = lbw_jax.POLICIES[policy_name](**policy_kwargs)  # knob errors surface here

        def guard_probe(state):
            info = lbw_jax.telemetry(state)
            return {"scale": info["scale"], "skipped": info["skipped"]}

        return Arm(name, f"lbw_guard({label})",
                   lambda lr: lbw_jax.lbw_guard(adamw(lr), policy=policy), guard_probe, is_guard=True)
    raise ValueError(f"stress.arms: unknown arm {name!r}; choose from {list(BASELINES)}, a "
                     f"policy of lbw_jax.POLICIES {sorted(lbw_jax.POLICIES)}, a stress.variants "
                     f"entry {sorted(s.variants)} or effective_lr_<guard arm>")


def effective_source(name: str, s) -> str:
    """The guard arm whose mean scale an effective-LR control copies: ``effective_lr``
    follows ``stress.effective_lr_of``; ``effective_lr_<arm>`` follows ``<arm>``."""
    return s.effective_lr_of if name == "effective_lr" else name[len("effective_lr_"):]
