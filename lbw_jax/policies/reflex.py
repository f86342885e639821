"""The reference eval law ("reflex") and the sensing it shares with reflex_pro.

Schedule: telemetry is collected on update t = 1 and whenever t % stats_every == 0;
on other updates nothing is sensed and the scale is held. On a collection:
  ema   = grad_ms at the first collection, else ema_decay*ema + (1-ema_decay)*grad_ms
  ratio = grad_ms / (ema + eps)                      (ema updated first)
  flip  = signed mean changed strictly from > 0 to < 0 or < 0 to > 0
and the law decides spike (ratio > spike_threshold), oscillation (ratio >
stress_threshold or flip) or calm.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import optax

from lbw_jax import knobs
from lbw_jax.policies.base import Decision, Policy
from lbw_jax.sensing import grad_stats


class ReflexRegime(enum.IntEnum):
    """What the reference eval law decided at its last collection."""

    CALM = 0          # no stress sensed: the scale recovers towards 1
    OSCILLATION = 1   # gradient energy above the stress threshold, or a sign flip
    SPIKE = 2         # gradient energy above the spike threshold


class ReflexSignals(NamedTuple):
    """Sensed and analysed telemetry of the reference laws (as of the last collection).

    Attributes:
      grad_ms: max (or mean) over gradient leaves of the mean of squares.
      signed_mean: sum of all gradient entries over the entry count.
      ema: exponential moving average of grad_ms.
      ratio: grad_ms / (ema + eps).
      sign_flip: whether the signed mean changed sign since the previous collection.
      collections: how many collections have been made.
    """

    grad_ms: jax.Array
    signed_mean: jax.Array
    ema: jax.Array
    ratio: jax.Array
    sign_flip: jax.Array
    collections: jax.Array

    def telemetry(self) -> dict[str, jax.Array]:
        return self._asdict()


def init_signals() -> ReflexSignals:
    # One array per field: a buffer shared between fields cannot be donated to jit.
    zero = lambda: jnp.zeros([], jnp.float32)
    return ReflexSignals(grad_ms=zero(), signed_mean=zero(), ema=zero(), ratio=jnp.ones([], jnp.float32),
                         sign_flip=jnp.array(False), collections=jnp.zeros([], jnp.int32))


def initial_scale_and_regime() -> tuple[jax.Array, jax.Array]:
    return jnp.ones([], jnp.float32), jnp.zeros([], jnp.int32)  # CALM, in every vocabulary


class ReflexState(NamedTuple):
    """State of the reference eval law.

    Attributes:
      scale: the step multiplier in force, float32.
      regime: the ``ReflexRegime`` code of the last decision.
      signals: the sensed telemetry.
    """

    scale: jax.Array
    regime: jax.Array
    signals: ReflexSignals

    def telemetry(self) -> dict[str, jax.Array]:
        return self.signals.telemetry()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReflexSensing(Policy):
    """Knobs and sensing shared by both reference laws."""

    stress_threshold: float = knobs.real_knob(1.1, low=0.0, low_open=True)
    spike_threshold: float = knobs.real_knob(1.5, low=0.0, low_open=True)
    min_scale: float = knobs.fraction_knob(0.1)
    recovery: float = knobs.real_knob(0.01, low=0.0, high=1.0)
    use_max: bool = knobs.boolean_knob(True)
    stats_every: int = knobs.integer_knob(10, low=1)
    ema_decay: float = knobs.decay_knob(0.85)
    eps: float = knobs.real_knob(1e-12, low=0.0, low_open=True)

    name = "reflex_sensing"
    # Its statistics are per tensor: the guard splits stacked leaves for it (stacked_axes).
    reads_tensors = True

    def check_knobs(self):
        knobs.ordered(self.name, "stress_threshold", self.stress_threshold,
                       "spike_threshold", self.spike_threshold)

    def is_collection_step(self, step) -> jax.Array:
        return (step == 1) | (step % self.stats_every == 0)

    def sense(self, grads, signals: ReflexSignals) -> ReflexSignals:
        stats = grad_stats(grads, use_max=self.use_max)
        first = signals.collections == 0
        ema = jnp.where(first, stats.grad_ms,
                        self.ema_decay * signals.ema + (1.0 - self.ema_decay) * stats.grad_ms)
        ratio = stats.grad_ms / (ema + self.eps)
        previous = signals.signed_mean
        flip = ((previous > 0) & (stats.signed_mean < 0)) | ((previous < 0) & (stats.signed_mean > 0))
        flip = flip & ~first
        return ReflexSignals(grad_ms=stats.grad_ms, signed_mean=stats.signed_mean, ema=ema,
                             ratio=ratio, sign_flip=flip,
                             collections=optax.safe_increment(signals.collections))

    def on_schedule(self, step, collect, hold):
        """Runs ``collect`` on collection steps and ``hold`` otherwise (a lax.cond,
        so the reductions cost nothing on the other steps)."""
        return lax.cond(self.is_collection_step(step), collect, hold)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reflex(ReflexSensing):
    """The reference eval law: cut by ``spike_cut`` on a spike, by ``stress_cut``
    on stress or a sign flip (never below ``min_scale``), else recover by
    ``recovery`` (never above 1)."""

    spike_cut: float = knobs.fraction_knob(0.7)
    stress_cut: float = knobs.fraction_knob(0.85)

    name = "reflex"
    state_type = ReflexState
    Regime = ReflexRegime

    def init(self, params) -> ReflexState:
        del params
        return ReflexState(*initial_scale_and_regime(), init_signals())

    def decide(self, grads, state: ReflexState, *, step, value, inner_state):
        del value, inner_state  # the reference law reads the gradients alone
        scale = state.scale

        def collect():
            signals = self.sense(grads, state.signals)
            spike = signals.ratio > self.spike_threshold
            stress = (signals.ratio > self.stress_threshold) | signals.sign_flip
            new_scale = jnp.where(
                spike, jnp.maximum(self.min_scale, self.spike_cut * scale),
                jnp.where(stress, jnp.maximum(self.min_scale, self.stress_cut * scale),
                          jnp.minimum(1.0, scale + self.recovery)))
            R = ReflexRegime
            new_regime = jnp.where(spike, R.SPIKE, jnp.where(stress, R.OSCILLATION, R.CALM))
            return Decision(spike | stress), ReflexState(
                new_scale.astype(jnp.float32), new_regime.astype(jnp.int32), signals)

        def hold():  # between collections the scale is held: no decision, no intervention
            return Decision(jnp.array(False)), state

        return self.on_schedule(step, collect, hold)


# Each default is read from its field, so it is declared once (tests/test_knobs.py checks).
def reflex(*, stress_threshold: float = Reflex.stress_threshold,
           spike_threshold: float = Reflex.spike_threshold, min_scale: float = Reflex.min_scale,
           recovery: float = Reflex.recovery, use_max: bool = Reflex.use_max,
           stats_every: int = Reflex.stats_every, ema_decay: float = Reflex.ema_decay,
           eps: float = Reflex.eps, spike_cut: float = Reflex.spike_cut,
           stress_cut: float = Reflex.stress_cut, **unknown) -> Reflex:
    """The reference eval law as a policy for ``lbw_guard``.

    Its knobs are the fields of ``Reflex`` and ``ReflexSensing`` (their defaults are the
    published ones). Any other name in ``unknown``, or a bad value, raises
    ``lbw_jax.KnobError`` (a ``ValueError``) naming it.
    """
    return Reflex.create(**knobs.given(Reflex, locals()), **unknown)
