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
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import optax

from lbw_jax import _knobs
from lbw_jax import regimes
from lbw_jax.policies.base import Decision
from lbw_jax.sensing import grad_stats


class ReflexState(NamedTuple):
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


def init_reflex_state() -> ReflexState:
    # One array per field: a buffer shared between fields cannot be donated to jit.
    zero = lambda: jnp.zeros([], jnp.float32)
    return ReflexState(grad_ms=zero(), signed_mean=zero(), ema=zero(), ratio=jnp.ones([], jnp.float32),
                       sign_flip=jnp.array(False), collections=jnp.zeros([], jnp.int32))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReflexSensing:
    """Knobs and sensing shared by both reference laws."""

    stress_threshold: float = 1.1
    spike_threshold: float = 1.5
    min_scale: float = 0.1
    recovery: float = 0.01
    use_max: bool = True
    stats_every: int = 10
    ema_decay: float = 0.85
    eps: float = 1e-12

    name = "reflex_sensing"
    # Its statistics are per tensor: the guard splits stacked leaves for it (stacked_axes).
    reads_tensors = True

    def __post_init__(self):
        owner = self.name
        check = {
            "stress_threshold": _knobs.real(owner, "stress_threshold", self.stress_threshold, low=0.0, low_open=True),
            "spike_threshold": _knobs.real(owner, "spike_threshold", self.spike_threshold, low=0.0, low_open=True),
            "min_scale": _knobs.real(owner, "min_scale", self.min_scale, low=0.0, high=1.0, low_open=True),
            "recovery": _knobs.real(owner, "recovery", self.recovery, low=0.0, high=1.0),
            "use_max": _knobs.boolean(owner, "use_max", self.use_max),
            "stats_every": _knobs.integer(owner, "stats_every", self.stats_every, low=1),
            "ema_decay": _knobs.real(owner, "ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True),
            "eps": _knobs.real(owner, "eps", self.eps, low=0.0, low_open=True),
        }
        _knobs.ordered(owner, "stress_threshold", check["stress_threshold"],
                       "spike_threshold", check["spike_threshold"])
        for key, value in check.items():  # normalise ints given for floats etc.
            object.__setattr__(self, key, value)

    def is_collection_step(self, step) -> jax.Array:
        return (step == 1) | (step % self.stats_every == 0)

    def sense(self, grads, signals: ReflexState) -> ReflexState:
        stats = grad_stats(grads, use_max=self.use_max)
        first = signals.collections == 0
        ema = jnp.where(first, stats.grad_ms,
                        self.ema_decay * signals.ema + (1.0 - self.ema_decay) * stats.grad_ms)
        ratio = stats.grad_ms / (ema + self.eps)
        previous = signals.signed_mean
        flip = ((previous > 0) & (stats.signed_mean < 0)) | ((previous < 0) & (stats.signed_mean > 0))
        flip = flip & ~first
        return ReflexState(grad_ms=stats.grad_ms, signed_mean=stats.signed_mean, ema=ema,
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

    spike_cut: float = 0.7
    stress_cut: float = 0.85

    name = "reflex"

    def __post_init__(self):
        super().__post_init__()
        for key in ("spike_cut", "stress_cut"):
            value = _knobs.real(self.name, key, getattr(self, key), low=0.0, high=1.0, low_open=True)
            object.__setattr__(self, key, value)

    def init(self, params) -> ReflexState:
        del params
        return init_reflex_state()

    def decide(self, grads, state: ReflexState, *, step, scale, regime, value):
        del value  # the reference law does not read the loss

        def collect():
            signals = self.sense(grads, state)
            spike = signals.ratio > self.spike_threshold
            stress = (signals.ratio > self.stress_threshold) | signals.sign_flip
            new_scale = jnp.where(
                spike, jnp.maximum(self.min_scale, self.spike_cut * scale),
                jnp.where(stress, jnp.maximum(self.min_scale, self.stress_cut * scale),
                          jnp.minimum(1.0, scale + self.recovery)))
            new_regime = jnp.where(spike, regimes.SPIKE,
                                   jnp.where(stress, regimes.OSCILLATION, regimes.CALM))
            return Decision(new_scale.astype(jnp.float32), new_regime.astype(jnp.int32),
                            jnp.array(True)), signals

        def hold():
            return Decision(scale, regime, jnp.array(False)), state

        return self.on_schedule(step, collect, hold)


def reflex(**knobs) -> Reflex:
    """The reference eval law as a policy for ``lbw_guard``.

    Knobs (defaults): stress_threshold 1.1, spike_threshold 1.5, min_scale 0.1,
    recovery 0.01, use_max True, stats_every 10, ema_decay 0.85, eps 1e-12,
    spike_cut 0.7, stress_cut 0.85. A bad value raises ``ValueError``.
    """
    return _knobs.construct(Reflex, knobs)
