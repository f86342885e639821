"""The governor's state and vocabularies: ``GovernorState`` (its signals and memory, and
the telemetry it reports), ``GovernorRegime`` and ``GovernorReason`` (the codes of its
``regime`` and ``reason`` telemetry). The law itself is ``lbw_jax.policies.governor``."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class GovernorRegime(enum.IntEnum):
    """What the governor did at its last decision (``regime`` in the telemetry)."""

    CALM = 0
    SKIP = 1          # one pathological step (loss or gradient outlier) skipped
    HARM = 2          # the loss lost ground against its recent best: scale cut (reason HARM)
    STEP_LIMIT = 3    # the step was larger than the trust region allows: clamped
    OVERSHOOT = 4     # the smoothed overshoot was above brake_above: scale cut (the brake)
    ROOM = 5          # the step was above the room level (room_fraction of the critical step): cut to it


class GovernorReason(enum.IntEnum):
    """Why the governor's last intervention happened (``reason`` in the telemetry)."""

    NONE = 0
    LOSS_SPIKE = 1
    GRAD_SPIKE = 2
    STEP_LIMIT = 3
    HARM = 4
    ACCEPTED_SHIFT = 5  # a run of outliers longer than max_skips, accepted as a new level
    OVERSHOOT = 6
    ROOM = 7            # the room probe put the level below the step in use (mechanism 5)


class GovernorState(NamedTuple):
    """Signals and memory of the governor.

    Attributes:
      scale: the step multiplier in [min_scale, 1] (before the trust region).
      regime: the ``GovernorRegime`` code of the last decision.
      count: finite, not skipped steps seen.
      loss_mean, loss_var: running mean and variance of the loss (Welford during the
        calibration, then EMAs with ``stat_decay``; a skipped loss outlier widens the
        variance by ``skip_widen``).
      grad_mean, grad_var: the same for the log of the global gradient norm.
      fast: the fast EMA of the loss.
      best: its recent best (forgetting upward at rate ``forget``); the telemetry's
        ``excess`` is (fast - best) / |best|, derived from the two.
      step_ref: the reference step norm of the trust region (at scale 1).
      run: consecutive skipped steps.
      loss_z, grad_z: z-scores of the last step's loss and log gradient norm.
      step_ratio: the last inner step's norm over the reference.
      reason: the ``GovernorReason`` code of the last intervention.
      skips, cuts, limits: steps skipped, cut by the harm control, and clamped by the
        trust region.
      anchor: the scale at which the current stretch of harm began (0 when the last
        applied step was not harmful); ``level_cuts`` cuts relative to it.
      prev: the last applied step's proposal at scale 1 (parameter-shaped), or () when
        ``use_overshoot`` is off; not telemetry.
      prev_slope: its slope g . u against the gradient it was taken from.
      overshoot: the last reading of the overshoot (lbw_jax.policies.overshoot).
      over_ema: its EMA (``over_decay``; starts at 1).
      brakes: steps whose scale the overshoot brake cut.
    """

    scale: jax.Array
    regime: jax.Array
    count: jax.Array
    loss_mean: jax.Array
    loss_var: jax.Array
    grad_mean: jax.Array
    grad_var: jax.Array
    fast: jax.Array
    best: jax.Array
    step_ref: jax.Array
    run: jax.Array
    loss_z: jax.Array
    grad_z: jax.Array
    step_ratio: jax.Array
    reason: jax.Array
    skips: jax.Array
    cuts: jax.Array
    limits: jax.Array
    anchor: jax.Array
    prev: Any
    prev_slope: jax.Array
    overshoot: jax.Array
    over_ema: jax.Array
    brakes: jax.Array

    def telemetry(self) -> dict[str, jax.Array]:
        """Every scalar field but ``scale`` and ``regime`` (the guard's telemetry reports those),
        and ``excess``, the harm control's signal."""
        out = {k: v for k, v in self._asdict().items() if k not in ("scale", "regime", "prev")}
        out["excess"] = relative_excess(self.fast, self.best)
        return out


# With ``use_room`` (mechanism 5) the state is ``GovernorRoomState``: every field of
# ``GovernorState`` and the room's. A state without the room keeps the exact fields of v3.0, so
# its runs' checkpoints resume unchanged.
ROOM_FIELDS = (("held", jax.Array), ("room", jax.Array), ("room_len", jax.Array),
               ("room_level", jax.Array), ("probes", jax.Array), ("burst", jax.Array),
               ("since_probe", jax.Array), ("room_cuts", jax.Array), ("peak", jax.Array))


class GovernorRoomState(NamedTuple("_GovernorRoomFields", list(GovernorState.__annotations__.items())
                                   + list(ROOM_FIELDS))):
    """``GovernorState`` with the room probe's fields (``use_room``, mechanism 5).

    Attributes:
      (every attribute of ``GovernorState``, then:)
      held: the scale before this step's decision (the level a cut is bounded from).
      room: the last reading of the critical multiplier a_c along the step (in units of the
        proposal at scale 1; 0 before any).
      room_len: the pooled log of the critical step's length a_c |u| (an EMA over readings
        with ``room_decay``), from which each step's level is read against ``peak``.
      room_level: the level of the last applied step, room_fraction x critical length / peak,
        in [min_scale, 1] (1 before any reading).
      probes: readings taken (forward passes spent by the probe).
      burst: probes left to take on every step (after the start, a cut or a skip).
      since_probe: applied steps since the last probe.
      room_cuts: steps the room level cut below the harm control's and the brake's scale.
      peak: the largest proposal norm (at scale 1) the trust region let through whole since
        the first proposal past its pooled critical step (0 before: the level does not act), the
        schedule's peak step against which the level is read.
    """

    telemetry = GovernorState.telemetry


def initial_state(prev, room: bool = False, burst: int = 0) -> GovernorState:
    """The governor's state before any step; ``prev`` is the overshoot's buffer; with ``room``,
    a ``GovernorRoomState`` whose probe starts with ``burst`` probes on every step."""
    f = lambda v=0.0: jnp.full([], v, jnp.float32)
    n = lambda v=0: jnp.full([], v, jnp.int32)
    base = _initial(prev, f, n)
    if not room:
        return base
    return GovernorRoomState(*base, held=f(1.0), room=f(), room_len=f(), room_level=f(1.0), probes=n(),
                             burst=n(burst), since_probe=n(), room_cuts=n(), peak=f())


def _initial(prev, f, n) -> GovernorState:
    return GovernorState(
        scale=f(1.0), regime=n(GovernorRegime.CALM), count=n(), loss_mean=f(), loss_var=f(),
        grad_mean=f(), grad_var=f(), fast=f(), best=f(), step_ref=f(), run=n(),
        loss_z=f(), grad_z=f(), step_ratio=f(1.0), reason=n(), skips=n(), cuts=n(), limits=n(),
        anchor=f(), prev=prev, prev_slope=f(), overshoot=f(1.0), over_ema=f(1.0), brakes=n())


def relative_excess(fast, best, eps=1e-12):
    """How far the fast loss EMA lies above its recent best, relative to the best."""
    return (fast - best) / (jnp.abs(best) + eps)
