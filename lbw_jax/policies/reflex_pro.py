"""The reference pro law ("reflex_pro"): reflex's sensing plus a memory of recent
decisions that escalates to a "nuclear" floor when spikes cluster or the ratio
is unstable, and recovers faster after long calm streaks.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lbw_jax import knobs
from lbw_jax.policies.base import Decision
from lbw_jax.policies.reflex import (ReflexSensing, ReflexSignals, init_signals,
                                     initial_scale_and_regime)


class ReflexProRegime(enum.IntEnum):
    """What the reference pro law decided at its last collection (reflex's, then its own)."""

    CALM = 0
    OSCILLATION = 1
    SPIKE = 2
    SPIKE_CLUSTER = 3   # two or more spikes inside its window
    NUCLEAR = 4         # oscillating or unstable: the scale dropped to its floor


class ReflexProState(NamedTuple):
    """State of the pro law.

    Attributes:
      scale: the step multiplier in force, float32.
      regime: the ``ReflexProRegime`` code of the last decision.
      signals: the sensed telemetry, as for ``reflex``.
      spikes: ring buffer of is_spike over the last ``window`` decisions.
      ratios: ring buffer of the ratio over the last ``window`` decisions.
      head: index of the next ring-buffer write.
      filled: number of valid ring-buffer entries (at most ``window``).
      spike_streak: consecutive spike decisions.
      calm_streak: consecutive calm decisions.
      spike_count: spikes in the window at the last decision.
      ratio_var: variance of the ratio over the filled window at the last decision.
    """

    scale: jax.Array
    regime: jax.Array
    signals: ReflexSignals
    spikes: jax.Array
    ratios: jax.Array
    head: jax.Array
    filled: jax.Array
    spike_streak: jax.Array
    calm_streak: jax.Array
    spike_count: jax.Array
    ratio_var: jax.Array

    def telemetry(self) -> dict[str, jax.Array]:
        return {**self.signals.telemetry(), "spike_count": self.spike_count,
                "ratio_var": self.ratio_var, "spike_streak": self.spike_streak,
                "calm_streak": self.calm_streak}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReflexPro(ReflexSensing):
    """The reference pro law; every number of it is a knob (defaults as published)."""

    window: int = knobs.integer_knob(50, low=1)
    spike_cut: float = knobs.fraction_knob(0.65)
    stress_cut: float = knobs.fraction_knob(0.80)
    # spikes in the window that pin the scale at the floor ...
    cluster_spikes: int = knobs.integer_knob(2, low=1)
    # ... at max(min_scale, min_scale * cluster_factor). INERT, kept for parity with the
    # reference: cluster_factor <= 1, so that is always min_scale, whatever its value
    # (tests/test_reference_parity.py shows it changes nothing).
    cluster_factor: float = knobs.fraction_knob(0.8)
    # spikes in the window that mean "oscillating"
    oscillation_spikes: int = knobs.integer_knob(3, low=1)
    # ratio variance that means "unstable" ... once this many decisions are in the window
    variance_threshold: float = knobs.real_knob(0.5, low=0.0)
    variance_min_filled: int = knobs.integer_knob(20, low=1)
    # consecutive spikes that mean "unstable"
    spike_streak_limit: int = knobs.integer_knob(2, low=1)
    # nuclear scale and final floor: min_scale * nuclear_factor
    nuclear_factor: float = knobs.fraction_knob(0.5)
    # calm streaks for recovery * fast_recovery and recovery * mid_recovery
    calm_streak_fast: int = knobs.integer_knob(10, low=1)
    fast_recovery: float = knobs.real_knob(4.0, low=0.0)
    calm_streak_mid: int = knobs.integer_knob(5, low=1)
    mid_recovery: float = knobs.real_knob(2.0, low=0.0)
    # largest change per decision, except nuclear
    max_change: float = knobs.fraction_knob(0.3)

    name = "reflex_pro"
    state_type = ReflexProState
    Regime = ReflexProRegime

    def check_knobs(self):
        super().check_knobs()
        knobs.ordered(self.name, "calm_streak_mid", self.calm_streak_mid,
                       "calm_streak_fast", self.calm_streak_fast)

    def init(self, params) -> ReflexProState:
        del params
        scale, regime = initial_scale_and_regime()
        return ReflexProState(
            scale=scale, regime=regime, signals=init_signals(),
            spikes=jnp.zeros([self.window], jnp.bool_),
            ratios=jnp.zeros([self.window], jnp.float32),
            head=jnp.zeros([], jnp.int32),
            filled=jnp.zeros([], jnp.int32),
            spike_streak=jnp.zeros([], jnp.int32),
            calm_streak=jnp.zeros([], jnp.int32),
            spike_count=jnp.zeros([], jnp.int32),
            ratio_var=jnp.zeros([], jnp.float32))

    def decide(self, grads, state: ReflexProState, *, step, value, inner_state):
        del value, inner_state  # the reference law reads the gradients alone
        scale = state.scale

        def collect():
            signals = self.sense(grads, state.signals)
            ratio = signals.ratio
            spike = ratio > self.spike_threshold
            stress = ~spike & ((ratio > self.stress_threshold) | signals.sign_flip)
            calm = ~spike & ~stress

            # Record this decision first, then read the window including it.
            spikes = state.spikes.at[state.head].set(spike)
            ratios = state.ratios.at[state.head].set(ratio)
            head = (state.head + 1) % self.window
            filled = jnp.minimum(state.filled + 1, self.window)
            spike_streak = jnp.where(spike, state.spike_streak + 1, 0)
            calm_streak = jnp.where(calm, state.calm_streak + 1, 0)

            spike_count = jnp.sum(spikes, dtype=jnp.int32)
            valid = jnp.arange(self.window) < filled  # writes start at 0, so the prefix is valid
            n = filled.astype(jnp.float32)
            mean = jnp.sum(jnp.where(valid, ratios, 0.0)) / n
            mean_sq = jnp.sum(jnp.where(valid, ratios * ratios, 0.0)) / n
            ratio_var = jnp.maximum(mean_sq - mean * mean, 0.0)

            oscillating = spike_count >= self.oscillation_spikes
            unstable = (((ratio_var > self.variance_threshold) & (filled >= self.variance_min_filled))
                        | (spike_streak >= self.spike_streak_limit))
            nuclear = oscillating | unstable
            cluster = spike_count >= self.cluster_spikes

            floor = self.min_scale * self.nuclear_factor
            target = jnp.select(
                [cluster, spike, stress,
                 calm_streak >= self.calm_streak_fast, calm_streak >= self.calm_streak_mid],
                [jnp.maximum(self.min_scale, self.min_scale * self.cluster_factor),
                 jnp.maximum(self.min_scale, self.spike_cut * scale),
                 jnp.maximum(self.min_scale, self.stress_cut * scale),
                 jnp.minimum(1.0, scale + self.fast_recovery * self.recovery),
                 jnp.minimum(1.0, scale + self.mid_recovery * self.recovery)],
                default=jnp.minimum(1.0, scale + self.recovery))
            limited = jnp.clip(target, scale - self.max_change, scale + self.max_change)
            new_scale = jnp.clip(jnp.where(nuclear, floor, limited), floor, 1.0)
            R = ReflexProRegime
            new_regime = jnp.select([nuclear, cluster, spike, stress],
                                    [R.NUCLEAR, R.SPIKE_CLUSTER, R.SPIKE, R.OSCILLATION],
                                    default=R.CALM)
            new_state = ReflexProState(
                scale=new_scale.astype(jnp.float32), regime=new_regime.astype(jnp.int32),
                signals=signals, spikes=spikes, ratios=ratios, head=head, filled=filled,
                spike_streak=spike_streak, calm_streak=calm_streak, spike_count=spike_count,
                ratio_var=ratio_var.astype(jnp.float32))
            return Decision(new_regime != R.CALM), new_state

        def hold():  # between collections the scale is held: no decision, no intervention
            return Decision(jnp.array(False)), state

        return self.on_schedule(step, collect, hold)


# Each default is read from its field, so it is declared once (tests/test_knobs.py checks).
def reflex_pro(*, stress_threshold: float = ReflexPro.stress_threshold,
               spike_threshold: float = ReflexPro.spike_threshold,
               min_scale: float = ReflexPro.min_scale, recovery: float = ReflexPro.recovery,
               use_max: bool = ReflexPro.use_max, stats_every: int = ReflexPro.stats_every,
               ema_decay: float = ReflexPro.ema_decay, eps: float = ReflexPro.eps,
               window: int = ReflexPro.window, spike_cut: float = ReflexPro.spike_cut,
               stress_cut: float = ReflexPro.stress_cut,
               cluster_spikes: int = ReflexPro.cluster_spikes,
               cluster_factor: float = ReflexPro.cluster_factor,
               oscillation_spikes: int = ReflexPro.oscillation_spikes,
               variance_threshold: float = ReflexPro.variance_threshold,
               variance_min_filled: int = ReflexPro.variance_min_filled,
               spike_streak_limit: int = ReflexPro.spike_streak_limit,
               nuclear_factor: float = ReflexPro.nuclear_factor,
               calm_streak_fast: int = ReflexPro.calm_streak_fast,
               fast_recovery: float = ReflexPro.fast_recovery,
               calm_streak_mid: int = ReflexPro.calm_streak_mid,
               mid_recovery: float = ReflexPro.mid_recovery,
               max_change: float = ReflexPro.max_change, **unknown) -> ReflexPro:
    """The reference pro law as a policy for ``lbw_guard``.

    Its knobs are the fields of ``ReflexPro`` (reflex's sensing knobs and its own; the
    defaults are the published ones). ``cluster_factor`` is inert (see its field). Any other
    name in ``unknown``, or a bad value, raises ``lbw_jax.KnobError`` (a ``ValueError``).
    """
    return ReflexPro.create(**knobs.given(ReflexPro, locals()), **unknown)
