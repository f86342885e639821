"""Knobs: a control law's hyperparameters, declared once and checked once.

The public contract for writing a policy (``lbw_jax.Policy``): declare each knob as a
dataclass field with one of the ``*_knob`` constructors below, which carries its
default and its check; ``Policy`` runs ``check_all`` at construction, and
``defaults(cls)`` lists them (``lbw_jax.train.run`` makes its config fields from it).

Knobs are hyperparameters: they shape the compiled program, so they are checked
up front with an error that names the knob, the value and the allowed range,
rather than surfacing later as a NaN or a silently inert guard.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import sys
import warnings


class KnobError(ValueError):
    """A knob that is out of its range, or unknown: what a program reads to say which
    setting to change. A ``ValueError``, so ``except ValueError`` still catches it.

    Attributes:
      owner: the policy or baseline whose knob it is, e.g. ``"governor"``.
      name: the knob (for unknown knobs, the first of them in sorted order; the message
        lists them all).
      value: the value given.
      allowed: what is allowed, in words: e.g. ``"a real number in (0.0, 1.0]"``, or for an
        unknown knob ``"one of [...]"``, the known knobs.
    """

    def __init__(self, message: str, *, owner: str, name: str, value, allowed: str):
        super().__init__(message)
        self.owner, self.name, self.value, self.allowed = owner, name, value, allowed


def _fail(owner: str, name: str, value, allowed: str):
    raise KnobError(f"{owner}: knob {name}={value!r} is invalid; allowed: {allowed}.",
                    owner=owner, name=name, value=value, allowed=allowed)


def real(owner: str, name: str, value, *, low: float, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """Checks a real knob lies in an interval; returns it as a Python float."""
    left = "(" if low_open else "["
    right = ")" if high_open or math.isinf(high) else "]"
    allowed = f"a real number in {left}{low}, {high}{right}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(owner, name, value, allowed)
    value = float(value)
    if math.isnan(value):
        _fail(owner, name, value, allowed)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        _fail(owner, name, value, allowed)
    return value


def integer(owner: str, name: str, value, *, low: int, high: int | None = None) -> int:
    """Checks an integer knob lies in [low, high]; returns it as a Python int."""
    allowed = f"an integer in [{low}, {'inf' if high is None else high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(owner, name, value, allowed)
    value = int(value)
    if value < low or (high is not None and value > high):
        _fail(owner, name, value, allowed)
    return value


def boolean(owner: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        _fail(owner, name, value, "True or False")
    return value


def ordered(owner: str, low_name: str, low_value: float, high_name: str, high_value: float):
    """Checks two knobs are ordered, e.g. the stress threshold below the spike one."""
    if low_value > high_value:
        raise KnobError(
            f"{owner}: knob {low_name}={low_value!r} must not exceed "
            f"{high_name}={high_value!r}.",
            owner=owner, name=low_name, value=low_value, allowed=f"at most {high_name}={high_value!r}")


def construct(cls, knobs: dict):
    """Builds a policy dataclass, rejecting unknown knobs by name; a knob's former name
    (``cls.renamed_knobs``) is taken with a ``DeprecationWarning``."""
    knobs = _rename(cls, knobs)
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(knobs) - set(known))
    if unknown:
        raise KnobError(f"{cls.name}: unknown knob(s) {unknown}; known knobs: {known}.",
                        owner=cls.name, name=unknown[0], value=knobs[unknown[0]],
                        allowed=f"one of {known}")
    return cls(**knobs)


def _rename(cls, knobs: dict) -> dict:
    """``knobs`` with each former name of ``cls.renamed_knobs`` replaced by the current one.
    The new name may be given too, at its default (a harness passes a config's every knob
    beside a saved setting under the former name); set to anything else, the two clash."""
    out = dict(knobs)
    for old, new in getattr(cls, "renamed_knobs", {}).items():
        if old not in out:
            continue
        if new in out and out[new] != getattr(cls, new):
            raise KnobError(f"{cls.name}: knob {old}={out[old]!r} is the former name of {new}, "
                            f"which is also given; give {new} alone.",
                            owner=cls.name, name=old, value=out[old], allowed=f"{new} alone")
        warnings.warn(f"{cls.name}: knob {old} is now called {new}; the old name goes in the "
                      f"next release.", DeprecationWarning, stacklevel=_caller_level())
        out[new] = out.pop(old)
    return out


def _caller_level() -> int:
    """The ``stacklevel`` that names the first caller outside the policies and this module
    (``governor(...)`` or ``Governor.create(...)`` alike), so the warning shows where it is
    due (Python shows a ``DeprecationWarning`` by default only when ``__main__`` caused it)."""
    library = (os.path.dirname(__file__) + os.sep + "policies" + os.sep, __file__)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(library):
        frame, level = frame.f_back, level + 1
    return level


# Declaring a knob: a dataclass field that carries its own check, so each knob is
# declared once and ``lbw_jax.Policy`` validates them all in one place.

def _field(default, check):
    return dataclasses.field(default=default, metadata={"check": check})


def real_knob(default: float, *, low: float, high: float = math.inf, low_open: bool = False,
              high_open: bool = False):
    """A real-valued knob in an interval (see ``real``)."""
    return _field(default, functools.partial(real, low=low, high=high, low_open=low_open,
                                             high_open=high_open))


def fraction_knob(default: float):
    """A factor in (0, 1]: a cut, a floor."""
    return real_knob(default, low=0.0, high=1.0, low_open=True)


def decay_knob(default: float):
    """An EMA decay in [0, 1)."""
    return real_knob(default, low=0.0, high=1.0, high_open=True)


def integer_knob(default: int, *, low: int, high: int | None = None):
    return _field(default, functools.partial(integer, low=low, high=high))


def boolean_knob(default: bool):
    return _field(default, boolean)


def value_knob(default, check):
    """A knob of any other kind; ``check(owner, name, value)`` returns the value or raises."""
    return _field(default, check)


def check_all(policy) -> None:
    """Validates every field of a frozen policy dataclass by its declared check (and
    stores the normalised value). A field declared without a check is a bug."""
    for f in dataclasses.fields(policy):
        check = f.metadata.get("check")
        if check is None:
            raise TypeError(f"{type(policy).__name__}.{f.name} is declared without a check; "
                            f"declare knobs with lbw_jax.knobs (real_knob, integer_knob, ...)")
        object.__setattr__(policy, f.name, check(policy.name, f.name, getattr(policy, f.name)))


def defaults(cls) -> dict:
    """Every knob of the policy class ``cls`` with its default, in declaration order: the
    one list of them (configs and docs read it rather than restate the values)."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def given(cls, parameters: dict) -> dict:
    """The knobs of ``cls`` that a caller set, from its factory's ``locals()``: a factory whose
    parameters default to the fields' own defaults (``def governor(*, tolerance: float =
    Governor.tolerance, ...)``) passes on only these, so that a former name does not clash with
    the new name's default. A parameter still holding its field's default object was not set."""
    return {k: parameters[k] for k in defaults(cls) if parameters[k] is not getattr(cls, k)}
