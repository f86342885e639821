"""A minimal policy that follows a fixed schedule, to test the guard's plumbing
apart from any control law (and to show the Policy protocol is all a law needs)."""

import dataclasses
from typing import Callable, NamedTuple

import jax.numpy as jnp

import lbw_jax
from lbw_jax import regimes


class _NoSignals(NamedTuple):
    def telemetry(self):
        return {}


@dataclasses.dataclass(frozen=True)
class ScheduledScale:
    """Scale = schedule(step), where step is the 1-based count of applied updates."""

    schedule: Callable
    name: str = "scheduled"

    def init(self, params):
        return _NoSignals()

    def decide(self, grads, state, *, step, scale, regime, value):
        new_scale = jnp.asarray(self.schedule(step), jnp.float32)
        cut = new_scale < 1.0
        return lbw_jax.Decision(new_scale, jnp.where(cut, regimes.SPIKE, regimes.CALM).astype(jnp.int32),
                                jnp.array(True)), state
