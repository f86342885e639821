"""The governor: lbw-jax's own control law, and ``lbw_guard``'s default.

This module holds the law ``Governor`` (a frozen dataclass whose fields are its knobs) and the
factory ``governor(...)``; its state ``GovernorState`` and vocabularies ``GovernorRegime`` and
``GovernorReason`` (its telemetry's ``regime`` and ``reason`` codes) are in ``governor_state``.
docs/governor.md is its design document: each mechanism with its measurement, every knob and
every telemetry field.

The law acts only on evidence of harm, measured against this run's own recent past, and
otherwise leaves the step alone. Five mechanisms, each one knob away from off (for ablations):
(1) the exact skip of a pathological step (``use_skip``); (2) a trust region on the step
(``use_trust``, lbw_jax.policies.trust); (3) the harm control, a cut when the loss EMA loses
ground against its recent best and a recovery of x ``recover`` a step when it is back
(``use_harm``); (4) the overshoot brake and gated recovery (``use_overshoot``,
lbw_jax.policies.overshoot: one parameter-sized buffer); (5) the room probe (``use_room``, on by
default since v4, lbw_jax.policies.room): with the loss function given as ``value_fn=`` (as optax's line
searches take it), one forward pass along the step measures the critical step; once a proposal
runs past it, the scale holds the step at ``room_fraction`` of it: a cut lands at that level, a
recovery climbs straight back to it. Without ``value_fn`` mechanism 5 does nothing and the law is v3.0.

The guard applies the policy's ``scale`` times ``limit``'s one-step factor. Everything is arrays,
``jnp.where`` and ``lax.cond``: it vmaps, shards and compiles into the step. It needs ``value=loss``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from lbw_jax import _stats, knobs
from lbw_jax.policies import overshoot, room, trust
from lbw_jax.policies.base import Decision, Policy
from lbw_jax.policies.governor_state import (GovernorReason, GovernorRegime, GovernorRoomState, GovernorState,
                                             initial_state, relative_excess)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Governor(Policy):
    """lbw-jax's own control law (the module docstring describes its five mechanisms).

    Build it with ``lbw_jax.governor(...)`` (or ``Governor.create``); every knob is checked at
    construction, and a bad or unknown one raises ``lbw_jax.KnobError`` (a ``ValueError``)
    naming it. Ranges below are as checked: ``[a, b]`` closed, ``(a, b)`` open.

    Args:
      min_scale: floor of the scale. Default 0.01; a real in (0, 1].
      use_skip: the exact skip of pathological steps (mechanism 1). Default True.
      warmup_steps: applied steps that calibrate the skip's statistics (Welford) before any
        step can be skipped. Default 10; an integer >= 2.
      stat_decay: EMA decay of the skip's means and variances after the calibration.
        Default 0.95; a real in [0, 1).
      min_noise: floor of the loss's standard deviation, as a fraction of the loss mean's
        magnitude. Default 0.01; a real in [0, inf).
      grad_noise: floor of the log gradient norm's standard deviation. Healthy runs move
        their gradient norm by up to 2.3x for several steps with the loss flat, so at the
        default a gradient norm alone is an outlier only beyond exp(skip_z * 0.25) = 4.5x
        its level (docs/governor.md). Default 0.25; a real in [0, inf).
      skip_z: z-score above which a loss or gradient norm is an outlier (one-sided).
        Default 6.0; a real in (0, inf).
      skip_widen: factor on the (floored) variance of the signal that was out, per skip;
        1 freezes the statistics during a skip run. Default 1.15; a real in [1, inf).
      max_skips: the longest run of skips; the next outlier is applied and accepted as a new
        level (reason ``accepted_shift``). ``lbw_jax.train.run`` also requires it to be at most
        ``train.watchdog.max_skips``. Default 20; an integer >= 1.
      use_trust: the trust region on the step (mechanism 2). Default True.
      trust_ratio: the bound: a step's norm (at scale 1) may be at most this times the
        reference step norm. Default 2.0; a real in [1, inf).
      trust_from: the first applied step the trust region may clamp; before it the
        reference follows every step. Default 11; an integer >= 2.
      trust_decay: EMA decay of the reference step norm; 0 makes it the previous applied
        step. Default 0.0; a real in [0, 1).
      trust_growth: factor by which a clamped step lets the reference grow (instead of
        taking the step's norm). Default 1.02; a real in [1, inf).
      use_harm: the harm control (mechanism 3). Default True.
      fast_decay: EMA decay of the fast loss EMA. Default 0.8; a real in [0, 1).
      forget: fraction of the gap by which the recent best moves up towards the fast EMA
        each step; 0 keeps the all-time best. Default 0.1; a real in [0, 1].
      tolerance: relative excess of the fast EMA over its recent best beyond which a step
        is harmful and the scale is cut. Default 0.03; a real in (0, inf).
      cut_power: exponent of the cut, scale * (tolerance / excess) ** cut_power. Default
        1.0; a real in (0, inf).
      max_cut: the deepest compounding cut in one step (unused with ``level_cuts``).
        Default 0.5; a real in (0, 1].
      level_cuts: cut to a level, from the scale at which the current stretch of harm began,
        instead of compounding a cut on every harmful step. Default False.
      recover: factor on the scale per step while the excess is within the recovery band.
        Default 1.02; a real in [1, inf).
      recover_band: the recovery band, as a fraction of ``tolerance``. Default 0.5; a real
        in [0, 1].
      use_overshoot: the overshoot brake and gated recovery (mechanism 4); keeps one
        parameter-sized buffer. Default True.
      over_decay: EMA decay of the overshoot. Default 0.8; a real in [0, 1).
      brake_above: the smoothed overshoot above which the brake cuts (formerly ``over_cut``).
        Default 1.3; real > 0.
      over_gain: the brake cuts by (brake_above / EMA) ** over_gain, at most max_cut. Default 2.0.
      recover_below: the scale recovers only while the smoothed overshoot is below this
        (formerly ``over_recover``). Default 1.1; real > 0.
      over_clip: one reading is clipped to [-over_clip, over_clip]. Default 4.0; real > 0.
      use_room: the room probe (mechanism 5; acts only with ``value_fn=``). Default True
        (since v4; False is v3.0).
      room_cap, room_fraction, room_decay, probe_every, probe_burst, probe_held, burst_on_cap:
        mechanism 5's knobs (lbw_jax.policies.room.control and .follow; docs/governor.md, their defaults).
      eps: guards the log of the gradient norm and every division. Default 1e-12; real > 0.
    """

    min_scale: float = knobs.fraction_knob(0.01)
    # Exact skip of pathological steps.
    use_skip: bool = knobs.boolean_knob(True)
    warmup_steps: int = knobs.integer_knob(10, low=2)
    stat_decay: float = knobs.decay_knob(0.95)
    min_noise: float = knobs.real_knob(0.01, low=0.0)
    grad_noise: float = knobs.real_knob(0.25, low=0.0)
    skip_z: float = knobs.real_knob(6.0, low=0.0, low_open=True)
    skip_widen: float = knobs.real_knob(1.15, low=1.0)
    max_skips: int = knobs.integer_knob(20, low=1)
    # Trust region on the step.
    use_trust: bool = knobs.boolean_knob(True)
    trust_ratio: float = knobs.real_knob(2.0, low=1.0)
    trust_from: int = knobs.integer_knob(11, low=2)
    trust_decay: float = knobs.decay_knob(0.0)
    trust_growth: float = knobs.real_knob(1.02, low=1.0)
    # Harm control.
    use_harm: bool = knobs.boolean_knob(True)
    fast_decay: float = knobs.decay_knob(0.8)
    forget: float = knobs.real_knob(0.1, low=0.0, high=1.0)
    tolerance: float = knobs.real_knob(0.03, low=0.0, low_open=True)
    cut_power: float = knobs.real_knob(1.0, low=0.0, low_open=True)
    max_cut: float = knobs.fraction_knob(0.5)
    level_cuts: bool = knobs.boolean_knob(False)
    recover: float = knobs.real_knob(1.02, low=1.0)
    recover_band: float = knobs.real_knob(0.5, low=0.0, high=1.0)
    # Overshoot brake.
    use_overshoot: bool = knobs.boolean_knob(True)
    over_decay: float = knobs.decay_knob(0.8)
    brake_above: float = knobs.real_knob(1.3, low=0.0, low_open=True)
    over_gain: float = knobs.real_knob(2.0, low=0.0, low_open=True)
    recover_below: float = knobs.real_knob(1.1, low=0.0, low_open=True)
    over_clip: float = knobs.real_knob(4.0, low=0.0, low_open=True)
    # The room probe (needs value_fn=).
    use_room: bool = knobs.boolean_knob(True)
    room_cap: bool = knobs.boolean_knob(True)
    room_fraction: float = knobs.real_knob(0.25, low=0.0, low_open=True)
    room_decay: float = knobs.decay_knob(0.5)
    probe_every: int = knobs.integer_knob(25, low=1)
    probe_burst: int = knobs.integer_knob(10, low=0)
    probe_held: int = knobs.integer_knob(25, low=1)
    burst_on_cap: bool = knobs.boolean_knob(True)
    eps: float = knobs.real_knob(1e-12, low=0.0, low_open=True)

    name = "governor"
    state_type = GovernorState
    other_state_types = (GovernorRoomState,)   # with use_room
    Regime = GovernorRegime
    Reason = GovernorReason
    may_skip = True
    # Thresholds on the overshoot, once named like the factors max_cut and recover.
    renamed_knobs = {"over_cut": "brake_above", "over_recover": "recover_below"}

    @property
    def limit_reads_grads(self) -> bool:
        # The brake keeps each proposal's slope against its gradient; the room probe reads it.
        return self.use_overshoot or self.use_room

    @property
    def limit_reads_value_fn(self) -> bool:
        return self.use_room

    def init(self, params) -> GovernorState:
        return initial_state(overshoot.buffer(params, self.use_overshoot), self.use_room, self.probe_burst)

    def decide(self, grads, state: GovernorState, *, step, value, inner_state):
        del step, inner_state  # the governor counts its own applied steps
        if value is None:
            raise ValueError("governor: the guard's update needs the loss, as value=loss.")
        loss = jnp.asarray(value, jnp.float32)
        log_norm = jnp.log(optax.tree.norm(grads).astype(jnp.float32) + self.eps)
        calibrating, first = state.count < self.warmup_steps, state.count == 0
        # (1) Outliers against the calibrated statistics.
        loss_sd = jnp.maximum(jnp.sqrt(state.loss_var), self.min_noise * jnp.abs(state.loss_mean))
        grad_sd = jnp.maximum(jnp.sqrt(state.grad_var), self.grad_noise)
        loss_z = (loss - state.loss_mean) / (loss_sd + self.eps)
        grad_z = (log_norm - state.grad_mean) / (grad_sd + self.eps)
        loss_out, grad_out = loss_z > self.skip_z, grad_z > self.skip_z
        outlier = self.use_skip & ~calibrating & (loss_out | grad_out)
        skip = outlier & (state.run < self.max_skips)

        # Statistics move only on applied steps.
        loss_mean, loss_var = _stats.calibrated(state.loss_mean, state.loss_var, loss, state.count,
                                                self.warmup_steps, self.stat_decay)
        grad_mean, grad_var = _stats.calibrated(state.grad_mean, state.grad_var, log_norm, state.count,
                                                self.warmup_steps, self.stat_decay)

        # (3) Harm: the fast loss EMA against its recent best.
        fd = self.fast_decay
        fast = jnp.where(first, loss, fd * state.fast + (1 - fd) * loss)
        best = jnp.where(first, loss, jnp.minimum(fast, state.best + self.forget * (fast - state.best)))
        excess = relative_excess(fast, best, self.eps)
        harm = self.use_harm & ~first & (excess > self.tolerance)
        ratio = (excess / self.tolerance) ** (-self.cut_power)
        anchor = jnp.where(harm, jnp.where(state.anchor > 0, state.anchor, state.scale), 0.0)
        if self.level_cuts:   # to a level set by the excess, from where this harm began
            cut_scale = jnp.minimum(state.scale, anchor * ratio)
        else:                 # compounding: a cut on every harmful step
            cut_scale = state.scale * jnp.maximum(self.max_cut, ratio)
        # (4) The overshoot of the last step along itself: a brake, and a gate on recovery.
        over, over_ema, brake = self._overshoot(grads, state)
        brake_scale = state.scale * jnp.maximum(self.max_cut, (self.brake_above / over_ema) ** self.over_gain)
        cut_scale = jnp.minimum(jnp.where(harm, cut_scale, state.scale),
                                jnp.where(brake, brake_scale, state.scale))
        gate = room.recovery_gate(self, excess, over_ema, first)   # (3) and (4)'s gate on recovery
        scale = jnp.where(harm | brake, cut_scale, jnp.where(gate, state.scale * self.recover, state.scale))
        scale = jnp.clip(scale, self.min_scale, 1.0).astype(jnp.float32)

        reason = jnp.select([outlier & ~skip, harm, brake],
                            [GovernorReason.ACCEPTED_SHIFT, GovernorReason.HARM, GovernorReason.OVERSHOOT],
                            state.reason)
        regime = jnp.select([harm, brake], [GovernorRegime.HARM, GovernorRegime.OVERSHOOT], GovernorRegime.CALM)
        applied = state._replace(
            scale=scale, regime=regime.astype(jnp.int32),
            count=state.count + 1, loss_mean=loss_mean, loss_var=loss_var, grad_mean=grad_mean,
            grad_var=grad_var, fast=fast, best=best, run=jnp.zeros([], jnp.int32),
            loss_z=loss_z, grad_z=grad_z, reason=reason.astype(jnp.int32),
            cuts=state.cuts + (harm & (scale < state.scale)).astype(jnp.int32),
            anchor=anchor.astype(jnp.float32), overshoot=over, over_ema=over_ema,
            brakes=state.brakes + (brake & (scale < state.scale)).astype(jnp.int32))
        # A skipped step widens the variance of the signal that was out (see the docstring).
        skipped = state._replace(
            loss_var=jnp.where(loss_out, loss_sd ** 2 * self.skip_widen, state.loss_var),
            grad_var=jnp.where(grad_out, grad_sd ** 2 * self.skip_widen, state.grad_var),
            regime=jnp.asarray(GovernorRegime.SKIP, jnp.int32), run=state.run + 1, loss_z=loss_z,
            grad_z=grad_z, reason=jnp.where(loss_out, GovernorReason.LOSS_SPIKE,
                                            GovernorReason.GRAD_SPIKE).astype(jnp.int32),
            skips=state.skips + 1)
        if self.use_room:
            applied, skipped = room.decided(self, state, applied, skipped, harm | brake)
        # Only limit writes the kept step (prev): no element-wise select of it on every step.
        new_state = jax.tree.map(lambda a, b: jnp.where(skip, a, b), skipped._replace(prev=()),
                                 applied._replace(prev=()))._replace(prev=state.prev)
        return Decision(skip | harm | brake, skip), new_state

    def _overshoot(self, grads, state: GovernorState):
        """This step's reading, its EMA and whether the brake cuts."""
        if not self.use_overshoot:
            return state.overshoot, state.over_ema, jnp.zeros([], jnp.bool_)
        over, ema = overshoot.follow(grads, state, self.over_decay, self.over_clip)
        return over, ema, ema > self.brake_above

    def limit(self, updates, state: GovernorState, grads=None, *, params=None, value=None, value_fn=None):
        """(2) The trust region (lbw_jax.policies.trust), the proposal kept for the brake, and
        (5) the room probe when ``value_fn`` is given (lbw_jax.policies.room)."""
        factor, new_state = trust.limit(self, updates, state)
        if self.use_overshoot:   # the proposal at scale 1 and its slope, for the next reading
            new_state = new_state._replace(prev=overshoot.remember(updates, state.prev),
                                           prev_slope=overshoot.slope(grads, updates))
        if self.use_room and value_fn is not None:
            if params is None:
                raise ValueError("governor(use_room=True): the probe needs the parameters; call "
                                 "update(grads, state, params, value=loss, value_fn=loss_fn).")
            factor, new_state = room.control(self, updates, new_state, grads, params, value, value_fn, factor)
        return factor, new_state


# Each default is read from its field (``Governor.tolerance`` is that knob's default), so it is
# declared once; tests/test_knobs.py checks this signature lists exactly the fields and defaults.
def governor(*, min_scale: float = Governor.min_scale, use_skip: bool = Governor.use_skip,
             warmup_steps: int = Governor.warmup_steps, stat_decay: float = Governor.stat_decay,
             min_noise: float = Governor.min_noise, grad_noise: float = Governor.grad_noise,
             skip_z: float = Governor.skip_z, skip_widen: float = Governor.skip_widen,
             max_skips: int = Governor.max_skips, use_trust: bool = Governor.use_trust,
             trust_ratio: float = Governor.trust_ratio, trust_from: int = Governor.trust_from,
             trust_decay: float = Governor.trust_decay, trust_growth: float = Governor.trust_growth,
             use_harm: bool = Governor.use_harm, fast_decay: float = Governor.fast_decay,
             forget: float = Governor.forget, tolerance: float = Governor.tolerance,
             cut_power: float = Governor.cut_power, max_cut: float = Governor.max_cut,
             level_cuts: bool = Governor.level_cuts, recover: float = Governor.recover,
             recover_band: float = Governor.recover_band, use_overshoot: bool = Governor.use_overshoot,
             over_decay: float = Governor.over_decay, brake_above: float = Governor.brake_above,
             over_gain: float = Governor.over_gain, recover_below: float = Governor.recover_below,
             over_clip: float = Governor.over_clip, use_room: bool = Governor.use_room,
             room_cap: bool = Governor.room_cap, room_fraction: float = Governor.room_fraction,
             room_decay: float = Governor.room_decay, probe_every: int = Governor.probe_every,
             probe_burst: int = Governor.probe_burst, probe_held: int = Governor.probe_held,
             burst_on_cap: bool = Governor.burst_on_cap, eps: float = Governor.eps, **renamed) -> Governor:
    """lbw-jax's own control law for ``lbw_guard``; needs ``value=loss`` in ``update``.

    Args:
      min_scale ... eps: the knobs (``Governor``'s Args document each, with its range).
      **renamed: a knob under its former name (``Governor.renamed_knobs``), taken with a
        ``DeprecationWarning`` for one release; any other name raises ``lbw_jax.KnobError``.

    Returns:
      The ``Governor``; a value out of its range raises ``lbw_jax.KnobError`` naming it.
    """
    return Governor.create(**knobs.given(Governor, locals()), **renamed)
