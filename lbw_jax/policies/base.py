"""What a control law provides to drive ``lbw_guard``: the ``Policy`` base class."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lbw_jax import knobs


class Decision(NamedTuple):
    """What a control law says about one update, besides its new state.

    Attributes:
      intervened: a bool scalar; True when the law acted on this update (cut or pinned
        the scale, skipped it): the guard counts these as ``interventions``. Holding the
        scale between decisions, or recovering it, is not an intervention.
      skip: a bool scalar; True makes the guard skip this update exactly as it skips a
        non-finite one (zero update, inner state untouched) while keeping the law's new
        state. Read only for laws with ``may_skip = True``.
    """

    intervened: jax.Array
    skip: Any = False


class Regime(enum.IntEnum):
    """The regimes of a law that has no others; every law's own ``Regime`` has ``CALM = 0``."""

    CALM = 0


class Reason(enum.IntEnum):
    """The reasons of a law that reports none (``NONE = 0`` in every law's ``Reason``)."""

    NONE = 0


# Each policy's state type -> the policy class, so a state (a pytree of arrays, which
# cannot carry its law) finds the vocabulary its regime codes belong to.
_POLICY_OF_STATE: dict[type, type] = {}


def policy_of_state(state_type: type) -> type | None:
    """The policy class whose ``state_type`` is ``state_type`` (None if no law declares it)."""
    return _POLICY_OF_STATE.get(state_type)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """A control law: maps training telemetry to a step scale, inside XLA.

    A law is a frozen dataclass whose fields are its knobs, each declared once with
    its check (``lbw_jax.knobs.real_knob`` and friends); construction validates them
    all and ``check_knobs`` adds checks between knobs. It provides:

    * ``init(params)``: its state, an instance of its ``state_type``: a pytree of
      arrays with fields ``scale`` (float32, the step multiplier in force) and
      ``regime`` (int32, a code of its ``Regime``), and a method ``telemetry()``
      giving its other scalar signals.
    * ``decide(grads, state, *, step, value, inner_state)``: called once per update
      with the raw gradients, the 1-based count ``step`` of applied updates, the
      ``value=`` extra argument (the loss) or None, and the inner optimizer's state
      before this update; returns ``(Decision, new_state)``. On a non-finite update
      the guard discards the new state, so a law need not guard its statistics
      against NaN. It must not branch in Python on traced values, so that it
      compiles into the training step and vmaps.
    * ``limit(updates, state)``: called with the inner optimizer's updates of an
      applied step; returns a factor in (0, 1] for this one step (e.g. a trust
      region on the step size) and the state. The base class's is the identity. A law
      whose ``limit_reads_grads`` is True gets the raw gradients too, as ``grads=``; one
      whose ``limit_reads_value_fn`` is True gets ``params=``, ``value=`` and the
      ``value_fn=`` extra argument (the loss as a function of the parameters, or None).

    Class attributes: ``name``; ``state_type`` (the class ``init`` returns);
    ``Regime`` and ``Reason``, its vocabulary: ``IntEnum``s with ``CALM = 0`` and
    ``NONE = 0`` (``lbw_jax.regime_name`` reads them); ``may_skip`` (static: whether
    ``Decision.skip`` can be True; the guard compiles the skip branch only then);
    ``reads_tensors`` (the law reads per-tensor statistics, so stacked layers are
    split for it); ``renamed_knobs`` (a knob's former name -> its name, each taken by
    ``create`` with a ``DeprecationWarning`` for one release; the one place a rename is
    recorded, so a harness can map saved settings too).
    """

    name: ClassVar[str] = "policy"
    state_type: ClassVar[type | None] = None
    Regime: ClassVar[type[enum.IntEnum]] = Regime
    Reason: ClassVar[type[enum.IntEnum]] = Reason
    may_skip: ClassVar[bool] = False
    reads_tensors: ClassVar[bool] = False
    limit_reads_grads: ClassVar[bool] = False
    limit_reads_value_fn: ClassVar[bool] = False
    renamed_knobs: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for table, zero in ((cls.Regime, "CALM"), (cls.Reason, "NONE")):
            if not (isinstance(table, type) and issubclass(table, enum.IntEnum)) or \
                    getattr(table, zero, None) != 0:
                raise TypeError(f"{cls.__name__}: {table!r} must be an enum.IntEnum with {zero} = 0")
        state_type = cls.__dict__.get("state_type")
        if state_type is not None:
            known = _POLICY_OF_STATE.get(state_type)
            if known is not None and (known.Regime, known.Reason) != (cls.Regime, cls.Reason):
                raise TypeError(f"{cls.__name__} and {known.__name__} share the state type "
                                f"{state_type.__name__} with different vocabularies")
            _POLICY_OF_STATE.setdefault(state_type, cls)
        for other in cls.__dict__.get("other_state_types", ()):   # a state a knob switches to
            _POLICY_OF_STATE.setdefault(other, cls)

    def __post_init__(self):
        knobs.check_all(self)
        self.check_knobs()

    def check_knobs(self) -> None:
        """Checks between knobs (e.g. an ordering); none by default."""

    @classmethod
    def create(cls, **values):
        """The law with the knobs in ``values`` changed from their defaults; an unknown
        or bad knob raises ``lbw_jax.KnobError`` (a ``ValueError``) naming it."""
        return knobs.construct(cls, values)

    @classmethod
    def regime_name(cls, code) -> str:
        """The name of this law's regime ``code`` (an int or a scalar array)."""
        return _name(cls, cls.Regime, code, "regime")

    @classmethod
    def reason_name(cls, code) -> str:
        """The name of this law's reason ``code``."""
        return _name(cls, cls.Reason, code, "reason")

    def init(self, params) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define init(params)")

    def decide(self, grads, state, *, step, value, inner_state) -> tuple[Decision, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define decide(...)")

    def limit(self, updates, state) -> tuple[jax.Array, Any]:
        del updates
        return jnp.ones([], jnp.float32), state


def _name(policy, table, code, what: str) -> str:
    try:
        return table(int(code)).name.lower()
    except ValueError:
        known = {m.value: m.name.lower() for m in table}
        raise ValueError(f"{policy.name}: unknown {what} code {int(code)}; known: {known}") from None
