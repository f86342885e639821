"""The reference pro law ("reflex_pro"): reflex's sensing plus a memory of recent
decisions that escalates to a "nuclear" floor when spikes cluster or the ratio
is unstable, and recovers faster after long calm streaks.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lbw_jax import _knobs
from lbw_jax import regimes
from lbw_jax.policies.base import Decision
from lbw_jax.policies.reflex import ReflexSensing, ReflexState, init_reflex_state


class ReflexProState(NamedTuple):
    """State of the pro law.

    Attributes:
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

    signals: ReflexState
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

    window: int = 50
    spike_cut: float = 0.65
    stress_cut: float = 0.80
    cluster_spikes: int = 2          # spikes in the window that pin the scale at the floor
    cluster_factor: float = 0.8      # ... at max(min_scale, min_scale * cluster_factor)
    oscillation_spikes: int = 3      # spikes in the window that mean "oscillating"
    variance_threshold: float = 0.5  # ratio variance that means "unstable" ...
    variance_min_filled: int = 20    # ... once this many decisions are in the window
    spike_streak_limit: int = 2      # consecutive spikes that mean "unstable"
    nuclear_factor: float = 0.5      # nuclear scale and final floor: min_scale * nuclear_factor
    calm_streak_fast: int = 10       # calm streak for recovery * fast_recovery
    fast_recovery: float = 4.0
    calm_streak_mid: int = 5         # calm streak for recovery * mid_recovery
    mid_recovery: float = 2.0
    max_change: float = 0.3          # largest change per decision, except nuclear

    name = "reflex_pro"

    def __post_init__(self):
        super().__post_init__()
        owner = self.name
        checked = {
            "window": _knobs.integer(owner, "window", self.window, low=1),
            "spike_cut": _knobs.real(owner, "spike_cut", self.spike_cut, low=0.0, high=1.0, low_open=True),
            "stress_cut": _knobs.real(owner, "stress_cut", self.stress_cut, low=0.0, high=1.0, low_open=True),
            "cluster_spikes": _knobs.integer(owner, "cluster_spikes", self.cluster_spikes, low=1),
            "cluster_factor": _knobs.real(owner, "cluster_factor", self.cluster_factor, low=0.0, high=1.0, low_open=True),
            "oscillation_spikes": _knobs.integer(owner, "oscillation_spikes", self.oscillation_spikes, low=1),
            "variance_threshold": _knobs.real(owner, "variance_threshold", self.variance_threshold, low=0.0),
            "variance_min_filled": _knobs.integer(owner, "variance_min_filled", self.variance_min_filled, low=1),
            "spike_streak_limit": _knobs.integer(owner, "spike_streak_limit", self.spike_streak_limit, low=1),
            "nuclear_factor": _knobs.real(owner, "nuclear_factor", self.nuclear_factor, low=0.0, high=1.0, low_open=True),
            "calm_streak_fast": _knobs.integer(owner, "calm_streak_fast", self.calm_streak_fast, low=1),
            "fast_recovery": _knobs.real(owner, "fast_recovery", self.fast_recovery, low=0.0),
            "calm_streak_mid": _knobs.integer(owner, "calm_streak_mid", self.calm_streak_mid, low=1),
            "mid_recovery": _knobs.real(owner, "mid_recovery", self.mid_recovery, low=0.0),
            "max_change": _knobs.real(owner, "max_change", self.max_change, low=0.0, high=1.0, low_open=True),
        }
        _knobs.ordered(owner, "calm_streak_mid", checked["calm_streak_mid"],
                       "calm_streak_fast", checked["calm_streak_fast"])
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def init(self, params) -> ReflexProState:
        del params
        return ReflexProState(
            signals=init_reflex_state(),
            spikes=jnp.zeros([self.window], jnp.bool_),
            ratios=jnp.zeros([self.window], jnp.float32),
            head=jnp.zeros([], jnp.int32),
            filled=jnp.zeros([], jnp.int32),
            spike_streak=jnp.zeros([], jnp.int32),
            calm_streak=jnp.zeros([], jnp.int32),
            spike_count=jnp.zeros([], jnp.int32),
            ratio_var=jnp.zeros([], jnp.float32))

    def decide(self, grads, state: ReflexProState, *, step, scale, regime, value):
        del value  # the reference law does not read the loss

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
            new_regime = jnp.select(
                [nuclear, cluster, spike, stress],
                [regimes.NUCLEAR, regimes.SPIKE_CLUSTER, regimes.SPIKE, regimes.OSCILLATION],
                default=regimes.CALM)
            new_state = ReflexProState(
                signals=signals, spikes=spikes, ratios=ratios, head=head, filled=filled,
                spike_streak=spike_streak, calm_streak=calm_streak, spike_count=spike_count,
                ratio_var=ratio_var.astype(jnp.float32))
            return Decision(new_scale.astype(jnp.float32), new_regime.astype(jnp.int32),
                            jnp.array(True)), new_state

        def hold():
            return Decision(scale, regime, jnp.array(False)), state

        return self.on_schedule(step, collect, hold)


def reflex_pro(**knobs) -> ReflexPro:
    """The reference pro law as a policy for ``lbw_guard``.

    Shares reflex's sensing knobs and defaults (stress_threshold 1.1, spike_threshold
    1.5, min_scale 0.1, recovery 0.01, use_max True, stats_every 10, ema_decay 0.85)
    and adds window 50, spike_cut 0.65, stress_cut 0.80, cluster_spikes 2,
    cluster_factor 0.8, oscillation_spikes 3, variance_threshold 0.5,
    variance_min_filled 20, spike_streak_limit 2, nuclear_factor 0.5,
    calm_streak_fast 10 / fast_recovery 4, calm_streak_mid 5 / mid_recovery 2,
    max_change 0.3. A bad value raises ``ValueError``.
    """
    return _knobs.construct(ReflexPro, knobs)
