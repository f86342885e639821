"""What a control law must provide to drive ``lbw_guard``."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax


class Decision(NamedTuple):
    """A control law's output for one applied update.

    Attributes:
      scale: the step multiplier for this update, a float32 scalar.
      regime: the regime code of the most recent decision (see ``REGIMES``).
      decided: True when the law decided on this update, False when it only held
        its previous scale (the reference laws decide on telemetry steps alone).
      skip: optional; a bool scalar that, when True, makes the guard skip this update
        exactly as it skips a non-finite one (zero update, inner state untouched), while
        keeping the law's new state. None (the default): never skip.
    """

    scale: jax.Array
    regime: jax.Array
    decided: jax.Array
    skip: Any = None


@runtime_checkable
class Policy(Protocol):
    """A control law: maps gradient telemetry to a step scale, inside XLA.

    ``init`` builds the law's state (a pytree of arrays). ``decide`` is called once
    per finite update, with the raw gradients, the 1-based count ``step`` of
    applied updates, the current ``scale`` and ``regime``, and the ``value=``
    extra argument (the loss) or None. On a non-finite update the guard discards
    the state it returns, so a law need not guard its statistics against NaN.
    It must not branch in Python on traced
    values, so that it compiles into the training step and vmaps.
    The law's state also provides ``telemetry()``: a dict of its scalar signals.

    A law with ``reads_inner_state = True`` also receives ``inner_state=`` (the inner
    optimizer's state before this update) in ``decide``.

    A law may also define ``limit(updates, state, *, scale, regime) -> (scale,
    regime, state)``: called with the inner optimizer's updates of an applied step,
    it may lower that one step's scale (e.g. a trust region on the step size).
    """

    name: str

    def init(self, params) -> Any: ...

    def decide(self, grads, state, *, step, scale, regime, value) -> tuple[Decision, Any]: ...
