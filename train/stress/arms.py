"""The optimizer arms of the stress suite, each a function of a traced learning rate.

Every arm is the optimizer ``train.optim.build_optimizer`` gives for the same
settings, so the suite measures the step users run. ``make(lr)`` is called inside
the vmapped step with the cell's learning rate (schedule, faults and any replayed
multiplier already folded in) as a tracer, so one compiled program serves every
LR and seed.

Kinds:
  baseline: AdamW, alone or with one baseline around it (``train.optim.BASELINES``).
  guard: ``lbw_guard`` with a policy of ``lbw_jax.POLICIES`` or a ``stress.variants`` entry.
  control: ``effective_lr_<guard>``, plain AdamW at LR x the guard's mean applied
    multiplier in the same cell (``effective_lr`` alone copies ``stress.effective_lr_of``).
  replay: ``replay_<guard>``, plain AdamW whose LR follows the guard's multiplier
    trajectory, averaged over the seeds at the same LR: the guard as an open-loop
    schedule, which tells feedback from schedule.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import optax

import lbw_jax
from train import optim

KINDS = ("baseline", "guard", "control", "replay")
LABELS = {"adamw": "AdamW", "clip": "AdamW + clip_by_global_norm", "zclip": "AdamW + ZClip",
          "spike_skip": "AdamW + spike skip", "update_clip": "AdamW + update clipping (StableAdamW)",
          "plateau": "AdamW + reduce_on_plateau"}


@dataclasses.dataclass(frozen=True)
class Arm:
    """One optimizer arm.

    Attributes:
      name: the config name.
      label: a readable name for reports.
      kind: one of ``KINDS``.
      make: learning rate (a traced scalar) -> the optimizer; its update takes ``value=``.
      probe: optimizer state -> {"scale", "skipped"}: the step multiplier the arm applied
        (1 for arms without one) and the steps it skipped so far.
      source: the guard arm a control or replay copies (None for the others).
    """

    name: str
    label: str
    kind: str
    make: Callable[[jnp.ndarray], optax.GradientTransformationExtraArgs]
    probe: Callable[[object], dict]
    source: str | None = None

    @property
    def is_guard(self) -> bool:
        return self.kind == "guard"


def _one(_state):
    return {"scale": jnp.ones([], jnp.float32), "skipped": jnp.zeros([], jnp.int32)}


def _baseline_probe(name):
    if name == "zclip":
        return lambda state: {"scale": state[0].last_factor, "skipped": jnp.zeros([], jnp.int32)}
    if name == "update_clip":
        return lambda state: {"scale": state.last_factor, "skipped": jnp.zeros([], jnp.int32)}
    if name == "spike_skip":
        return lambda state: {"scale": jnp.ones([], jnp.float32), "skipped": state.skipped}
    if name == "plateau":
        return lambda state: {"scale": jnp.asarray(state[1].scale, jnp.float32),
                              "skipped": jnp.zeros([], jnp.int32)}
    return _one


def baseline_kwargs(name: str, cfg) -> dict:
    """The knobs of baseline ``name``: the config's ``optimizer.<name>``."""
    return optim.knob_dict(cfg.optimizer.get(name))


def source_of(name: str, s) -> str | None:
    """The guard arm a control or replay copies; None for other arms."""
    if name == "effective_lr":
        return s.effective_lr_of
    for prefix in ("effective_lr_", "replay_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def kind_of(name: str) -> str:
    if name == "effective_lr" or name.startswith("effective_lr_"):
        return "control"
    if name.startswith("replay_"):
        return "replay"
    if name == "adamw" or name in optim.BASELINES:
        return "baseline"
    return "guard"


def build_arm(name: str, cfg) -> Arm:
    """The arm called ``name``; knob errors surface here, before any trace."""
    s = cfg.stress
    kind = kind_of(name)
    plain = lambda lr: optim.build_optimizer(cfg, lr, guard="none", baseline="none")
    if kind == "control":
        return Arm(name, f"AdamW at {source_of(name, s)}'s mean effective LR", kind, plain, _one,
                   source=source_of(name, s))
    if kind == "replay":
        return Arm(name, f"AdamW replaying {source_of(name, s)}'s multiplier", kind, plain, _one,
                   source=source_of(name, s))
    if kind == "baseline":
        if name == "adamw":
            return Arm(name, LABELS[name], kind, plain, _one)
        kwargs = baseline_kwargs(name, cfg)
        optim.wrap_baseline(cfg, name, optax.adamw(1e-3), kwargs)  # checks the knobs now
        label = LABELS[name] + (f"({cfg.optimizer.clip.max_norm})" if name == "clip" else "")
        return Arm(name, label, kind,
                   lambda lr: optim.build_optimizer(cfg, lr, guard="none", baseline=name,
                                                    baseline_kwargs=kwargs),
                   _baseline_probe(name))
    if name in s.variants:   # e.g. an ablation: the policy as configured, some knobs changed
        policy_name, changed = s.variants[name].policy, optim.knob_dict(s.variants[name].kwargs)
        label = f"{policy_name}, " + ", ".join(f"{k}={v}" for k, v in changed.items())
        if policy_name not in lbw_jax.POLICIES:
            raise ValueError(f"stress.variants.{name}.policy={policy_name!r} is not a policy of "
                             f"lbw_jax.POLICIES {sorted(lbw_jax.POLICIES)}")
        policy_kwargs = {**optim.policy_knobs(cfg, policy_name), **changed}
    elif name in lbw_jax.POLICIES:
        policy_name, policy_kwargs, label = name, optim.policy_knobs(cfg, name), name
    else:
        raise ValueError(f"stress.arms: unknown arm {name!r}; choose from adamw, "
                         f"{sorted(optim.BASELINES)}, a policy of lbw_jax.POLICIES "
                         f"{sorted(lbw_jax.POLICIES)}, a stress.variants entry {sorted(s.variants)}, "
                         f"effective_lr_<guard arm> or replay_<guard arm>")
    policy = optim.build_policy(policy_name, policy_kwargs)

    def guard_probe(state):
        info = lbw_jax.telemetry(state)
        return {"scale": info["scale"], "skipped": info["skipped"]}

    return Arm(name, f"lbw_guard({label})", kind,
               lambda lr: optim.build_optimizer(cfg, lr, guard=policy_name, policy=policy,
                                                baseline="none"),
               guard_probe)
