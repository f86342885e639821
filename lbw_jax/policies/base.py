"""What a control law provides to drive ``lbw_guard``: the ``Policy`` base class."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lbw_jax import _knobs


class Decision(NamedTuple):
    """What a control law says about one update, besides its new state.

    Attributes:
      decided: True when the law decided on this update, False when it only held
        its scale (the reference laws decide on telemetry steps alone).
      skip: a bool scalar; True makes the guard skip this update exactly as it skips a
        non-finite one (zero update, inner state untouched) while keeping the law's new
        state. Read only for laws with ``may_skip = True``.
    """

    decided: jax.Array
    skip: Any = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """A control law: maps training telemetry to a step scale, inside XLA.

    A law is a frozen dataclass whose fields are its knobs, each declared once with
    its check (``lbw_jax._knobs.real_knob`` and friends); construction validates them
    all and ``check_knobs`` adds checks between knobs. It provides:

    * ``init(params)``: its state, a pytree of arrays with fields ``scale`` (float32,
      the step multiplier in force) and ``regime`` (int32, a code of ``REGIMES``),
      and a method ``telemetry()`` giving its other scalar signals.
    * ``decide(grads, state, *, step, value, inner_state)``: called once per update
      with the raw gradients, the 1-based count ``step`` of applied updates, the
      ``value=`` extra argument (the loss) or None, and the inner optimizer's state
      before this update; returns ``(Decision, new_state)``. On a non-finite update
      the guard discards the new state, so a law need not guard its statistics
      against NaN. It must not branch in Python on traced values, so that it
      compiles into the training step and vmaps.
    * ``limit(updates, state)``: called with the inner optimizer's updates of an
      applied step; returns a factor in (0, 1] for this one step (e.g. a trust
      region on the step size) and the state. The base class's is the identity.

    Class attributes: ``name``; ``may_skip`` (static: whether ``Decision.skip`` can
    be True; the guard compiles the skip branch only then); ``reads_tensors`` (the
    law reads per-tensor statistics, so stacked layers are split for it).
    """

    name: ClassVar[str] = "policy"
    may_skip: ClassVar[bool] = False
    reads_tensors: ClassVar[bool] = False

    def __post_init__(self):
        _knobs.check_all(self)
        self.check_knobs()

    def check_knobs(self) -> None:
        """Checks between knobs (e.g. an ordering); none by default."""

    @classmethod
    def create(cls, **knobs):
        """The law with ``knobs`` changed from their defaults; an unknown or bad knob
        raises ``ValueError`` naming it."""
        return _knobs.construct(cls, knobs)

    def init(self, params) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define init(params)")

    def decide(self, grads, state, *, step, value, inner_state) -> tuple[Decision, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define decide(...)")

    def limit(self, updates, state) -> tuple[jax.Array, Any]:
        del updates
        return jnp.ones([], jnp.float32), state
