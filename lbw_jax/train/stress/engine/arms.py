"""The optimizer arms of the stress suite, each a function of a traced learning rate.

Every arm is the optimizer ``lbw_jax.train.optim.build_optimizer`` gives for the same
settings, so the suite measures the step users run. ``make(lr)`` is called inside
the vmapped step with the cell's learning rate (schedule, faults and any replayed
multiplier already folded in) as a tracer, so one compiled program serves every
LR and seed.

Kinds (``ArmSpec``, parsed once from the name):
  baseline: AdamW, alone or with one baseline of ``lbw_jax.train.baseline_registry.BASELINES``
    around it or in its place.
  guard: ``lbw_guard`` with a policy of ``lbw_jax.POLICIES`` or a ``stress.variants`` entry,
    over AdamW, or over a guardable baseline: ``<guard>@<baseline>`` (``governor@dadapt_adamw_lr0``,
    the baseline a baseline name or a variant of one), which takes the guard's scale as its
    learning-rate multiplier. Such an arm has no control or replay: both are AdamW
    open loop, and the baseline's open-loop twin would need the baseline's own state to replay.
  control: ``effective_lr_<guard>``, plain AdamW at LR x the guard's mean applied
    multiplier in the same cell (``effective_lr`` alone copies ``stress.effective_lr_of``).
  replay: ``replay_<guard>``, plain AdamW whose LR follows the guard's multiplier
    trajectory, averaged over the seeds at the same LR: the guard as an open-loop
    schedule, which tells feedback from schedule.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax.numpy as jnp
import optax

import lbw_jax
from lbw_jax.train import optim
from lbw_jax.train.baseline_registry import BASELINES, probe_of, unprobed

KINDS = ("baseline", "guard", "control", "replay")
ADAMW_LABEL = "AdamW"


class ArmSpec(NamedTuple):
    """What an arm's name says, parsed once.

    Attributes:
      name: the arm's name in ``stress.arms``.
      kind: one of ``KINDS``.
      source: the guard arm a control or replay copies; None for the others.
    """

    name: str
    kind: str
    source: str | None = None


def parse_arm(name: str, stress) -> ArmSpec:
    """The spec of arm ``name`` (``stress`` gives ``effective_lr_of``)."""
    if name == "effective_lr":
        return ArmSpec(name, "control", stress.effective_lr_of)
    for prefix, kind in (("effective_lr_", "control"), ("replay_", "replay")):
        if name.startswith(prefix):
            if "@" in name:
                raise ValueError(f"stress.arms: {name!r}: a guard over a baseline has no {kind}; the "
                                 f"{kind}s run plain AdamW, which would not be the baseline's open loop")
            return ArmSpec(name, kind, name[len(prefix):])
    if "@" in name:
        return ArmSpec(name, "guard")
    variant = stress.get("variants", {}).get(name)
    if name == "adamw" or name in BASELINES or (variant is not None and variant.policy in BASELINES):
        return ArmSpec(name, "baseline")
    return ArmSpec(name, "guard")


def specs_from_results(results: dict) -> dict:
    """arm -> ``ArmSpec`` from a results file's ``kinds`` and ``sources``."""
    sources = results.get("sources", {})
    return {name: ArmSpec(name, kind, sources.get(name)) for name, kind in results["kinds"].items()}


def copy_of(specs: dict, source: str, kind: str) -> str | None:
    """The arm of ``kind`` (control or replay) that copies ``source``, if one ran."""
    return next((s.name for s in specs.values() if s.kind == kind and s.source == source), None)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One optimizer arm.

    Attributes:
      spec: its ``ArmSpec``.
      label: a readable name for reports.
      make: learning rate (a traced scalar) -> the optimizer; its update takes ``value=``.
      probe: optimizer state -> {"multiplier", "skipped", "estimate"}: the step multiplier the
        arm applied (1 for arms without one), the steps it skipped so far, and its own
        step-size estimate (NaN for arms without one).
      lr_mode: how its LR is given (``lbw_jax.train.baseline_registry.LR_MODES``): "schedule" (the cell's
        LR on the suite's schedule), "shape" (LR-free: the schedule's shape, peak 1; it
        runs one column) or "constant" (the cell's LR, no schedule: it warms up itself).
      eval_params: (state, params) -> the parameters to evaluate, or None.
      policy: a guard arm's (policy name, its knobs, the knobs its variant changes); None
        for the others.
      signals: optimizer state -> named per-step scalars recorded beside the metrics
        (``CellRuns.signals``); None records none.

    ``make``, ``probe`` and ``signals`` are the per-step record hook: an instrument wraps
    an arm's optimizer with ``dataclasses.replace(arm, make=..., probe=..., signals=...)``
    (``lbw_jax.train.study.signals.traced_arm``), and the sweep runs and records it as any
    other arm, the engine knowing nothing of the instrument.
    """

    spec: ArmSpec
    label: str
    make: Callable[[jnp.ndarray], optax.GradientTransformationExtraArgs]
    probe: Callable[[object], dict]
    lr_mode: str = "schedule"
    eval_params: Callable | None = None
    policy: tuple | None = None
    signals: Callable[[object], dict] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def source(self) -> str | None:
        return self.spec.source

    @property
    def is_guard(self) -> bool:
        return self.kind == "guard"

    @property
    def lr_free(self) -> bool:
        return self.lr_mode == "shape"


def baseline_label(name: str, cfg) -> str:
    if name == "clip":
        return f"{BASELINES[name].label}({cfg.optimizer.clip.max_norm})"
    return BASELINES[name].label


def _baseline_of(name: str, cfg) -> tuple[str, dict, str]:
    """(baseline, knobs, label) of a baseline name or a ``stress.variants`` entry of one."""
    s = cfg.stress
    if name in s.variants:   # a baseline with some knobs changed (e.g. a calibrated start)
        base, changed = s.variants[name].policy, optim.knob_dict(s.variants[name].kwargs)
        kwargs = {**optim.knob_dict(cfg.optimizer.get(base)), **changed}
        label = f"{baseline_label(base, cfg)}, " + ", ".join(f"{k}={v}" for k, v in changed.items())
        return base, kwargs, label
    if name not in BASELINES:
        raise ValueError(f"stress.arms: {name!r} is not a baseline of lbw_jax.train.baseline_registry.BASELINES "
                         f"{sorted(BASELINES)} or a stress.variants entry of one")
    return name, optim.knob_dict(cfg.optimizer.get(name)), baseline_label(name, cfg)


def build_arm(name: str, cfg) -> Arm:
    """The arm called ``name``; knob errors surface here, before any trace."""
    s = cfg.stress
    spec = parse_arm(name, s)
    if "@" in name:
        guard, baseline = name.split("@", 1)
        return _guarded(build_arm(guard, cfg), spec, baseline, cfg)
    plain = lambda lr: optim.build_optimizer(cfg, lr, policy_name="none", baseline="none")
    if spec.kind == "control":
        return Arm(spec, f"AdamW at {spec.source}'s mean effective LR", plain, unprobed)
    if spec.kind == "replay":
        return Arm(spec, f"AdamW replaying {spec.source}'s multiplier", plain, unprobed)
    if spec.kind == "baseline":
        if name == "adamw":
            return Arm(spec, ADAMW_LABEL, plain, unprobed)
        base, kwargs, label = _baseline_of(name, cfg)
        optim.build_baseline(cfg, base, 1e-3, kwargs)  # checks the knobs now
        record = BASELINES[base]
        return Arm(spec, label,
                   lambda lr: optim.build_optimizer(cfg, lr, policy_name="none", baseline=base,
                                                    baseline_kwargs=kwargs),
                   probe_of(base), lr_mode=record.lr, eval_params=record.eval_params)
    if name in s.variants:   # e.g. an ablation: the policy as configured, some knobs changed
        policy_name, changed = s.variants[name].policy, optim.knob_dict(s.variants[name].kwargs)
        if policy_name not in lbw_jax.POLICIES:
            raise ValueError(f"stress.variants.{name}.policy={policy_name!r} is not a policy of "
                             f"lbw_jax.POLICIES {sorted(lbw_jax.POLICIES)} or a baseline of "
                             f"lbw_jax.train.baseline_registry.BASELINES {sorted(BASELINES)}")
        policy_kwargs = {**optim.policy_knobs(cfg, policy_name), **changed}
    elif name in lbw_jax.POLICIES:
        policy_name, changed = name, {}
        policy_kwargs = optim.policy_knobs(cfg, name)
    else:
        raise ValueError(f"stress.arms: unknown arm {name!r}; choose from adamw, "
                         f"{sorted(BASELINES)}, a policy of lbw_jax.POLICIES "
                         f"{sorted(lbw_jax.POLICIES)}, a stress.variants entry {sorted(s.variants)}, "
                         f"effective_lr_<guard arm> or replay_<guard arm>")
    policy = optim.build_policy(policy_name, policy_kwargs)
    # The label names every knob away from the library's default, those the config sets
    # (optimizer.<policy>) as well as the variant's, so a report says which law it ran.
    configured = {k: v for k, v in optim.set_knobs(cfg, policy_name).items() if k not in changed}
    label = ", ".join([policy_name, *(f"{k}={v}" for k, v in {**configured, **changed}.items())])

    return Arm(spec, f"lbw_guard({label})",
               lambda lr: optim.build_optimizer(cfg, lr, policy_name=policy_name, policy=policy,
                                                baseline="none"),
               _guard_probe, policy=(policy_name, policy_kwargs, changed))


def _guard_probe(state):
    info = lbw_jax.telemetry(state)
    # The room probe's forward passes (governor v4): its cost over the run, cell by cell.
    probes = info.get("probes", jnp.zeros([], jnp.int32))
    return {**unprobed(), "multiplier": info["multiplier"], "skipped": info["skipped"], "room_probes": probes}


def _guarded(guard: Arm, spec: ArmSpec, baseline: str, cfg) -> Arm:
    """The guard arm ``guard`` over baseline ``baseline`` (``<guard>@<baseline>``)."""
    if guard.kind != "guard" or "@" in guard.name:
        raise ValueError(f"stress.arms: {spec.name!r}: {guard.name!r} before the @ is not a guard "
                         f"(a policy of lbw_jax.POLICIES or a stress.variants entry of one)")
    base, kwargs, label = _baseline_of(baseline, cfg)
    policy_name, policy_kwargs, changed = guard.policy
    optim.build_baseline(cfg, base, 1e-3, kwargs, scaled=True)  # refuses what cannot be guarded
    # The knobs the guard takes over this baseline (as lbw_jax.train.run sets them), named in the label.
    over = optim.baseline_guard_knobs(cfg, policy_name, base, changed)
    policy = optim.build_policy(policy_name, {**policy_kwargs, **over})
    guard_label = guard.label[:-1] + "".join(f", {k}={v}" for k, v in over.items())
    record, read_baseline = BASELINES[base], probe_of(base)

    def probe(state):   # the guard's scale and skips, the baseline's own estimate
        return {**_guard_probe(state), "estimate": read_baseline(state)["estimate"]}

    return Arm(spec, f"{guard_label} over {label})",
               lambda lr: optim.build_optimizer(cfg, lr, policy_name=policy_name, policy=policy,
                                                baseline=base, baseline_kwargs=kwargs),
               probe, lr_mode=record.lr, eval_params=record.eval_params)
