"""A minimal policy that follows a fixed schedule, to test the guard's plumbing
apart from any control law (and to show the Policy base class is all a law needs)."""

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

import lbw_jax
from lbw_jax import _knobs, regimes


class ScheduledState(NamedTuple):
    scale: jax.Array
    regime: jax.Array

    def telemetry(self):
        return {}


def _callable(owner, name, value):
    if not callable(value):
        raise ValueError(f"{owner}: knob {name} must be a function of the step, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScheduledScale(lbw_jax.Policy):
    """Scale = schedule(step), where step is the 1-based count of applied updates."""

    schedule: Callable = _knobs.value_knob(None, _callable)

    name = "scheduled"

    def init(self, params):
        return ScheduledState(jnp.ones([], jnp.float32), jnp.zeros([], jnp.int32))

    def decide(self, grads, state, *, step, value, inner_state):
        new_scale = jnp.asarray(self.schedule(step), jnp.float32)
        regime = jnp.where(new_scale < 1.0, regimes.SPIKE, regimes.CALM).astype(jnp.int32)
        return lbw_jax.Decision(jnp.array(True)), ScheduledState(new_scale, regime)
