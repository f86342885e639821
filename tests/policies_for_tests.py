"""A minimal policy that follows a fixed schedule, to test the guard's plumbing
apart from any control law, written as a user would: against public names only
(``lbw_jax.Policy``, ``lbw_jax.Decision``, ``lbw_jax.knobs``), with its own vocabulary."""

import dataclasses
import enum
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

import lbw_jax
from lbw_jax import knobs


class ScheduledRegime(enum.IntEnum):
    CALM = 0
    HELD_DOWN = 1   # the schedule asked for a scale below 1


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

    schedule: Callable = knobs.value_knob(None, _callable)

    name = "scheduled"
    state_type = ScheduledState
    Regime = ScheduledRegime

    def init(self, params):
        return ScheduledState(jnp.ones([], jnp.float32), jnp.zeros([], jnp.int32))

    def decide(self, grads, state, *, step, value, inner_state):
        new_scale = jnp.asarray(self.schedule(step), jnp.float32)
        held = new_scale < 1.0
        regime = jnp.where(held, ScheduledRegime.HELD_DOWN, ScheduledRegime.CALM).astype(jnp.int32)
        return lbw_jax.Decision(held), ScheduledState(new_scale, regime)
