"""The harness's shared value helpers: finiteness of a figure that may be missing,
relative changes, and strict JSON."""

import json
import math

import numpy as np

from lbw_jax.train.values import format_pct, is_finite, pct_change, plain_json


def test_finite_and_percentages():
    assert is_finite(1.0) and not is_finite(None) and not is_finite(math.nan)
    assert not is_finite(math.inf)
    assert pct_change(110.0, 100.0) == 10.000000000000009
    assert pct_change(None, 1.0) is None and pct_change(1.0, math.nan) is None
    assert format_pct(pct_change(90.0, 100.0), 2) == "-10.00%"
    assert format_pct(None) == "—" and format_pct(math.inf, missing="non-finite") == "non-finite"


def test_plain_json_is_accepted_by_a_strict_parser():
    value = {1: (np.float32(0.5), np.int64(3)), "x": [math.nan, -math.inf, np.bool_(True)]}
    text = json.dumps(plain_json(value), allow_nan=False)
    assert json.loads(text) == {"1": [0.5, 3], "x": [None, None, True]}
