"""Small helpers on plain values, shared by the run's records and the stress reports:
finiteness of a figure that may be missing, a relative change in %, and JSON that
strict parsers accept."""

from __future__ import annotations

import math

import numpy as np


def is_finite(x) -> bool:
    """True for a finite number; False for None, NaN or an infinity."""
    return x is not None and math.isfinite(x)


def pct_change(a, b) -> float | None:
    """How far ``a`` lies above ``b``, in % (negative: below); None unless both are finite."""
    return 100.0 * (a / b - 1.0) if is_finite(a) and is_finite(b) else None


def format_pct(x, digits: int = 1, missing: str = "—") -> str:
    """A signed percentage (``+1.5%``), or ``missing`` for None or a non-finite value."""
    return missing if not is_finite(x) else f"{x:+.{digits}f}%"


def plain_json(obj):
    """``obj`` as plain JSON values: keys as strings, tuples as lists, numpy scalars as
    Python ones, and non-finite floats as null (strict parsers reject NaN and Infinity)."""
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
