"""Knobs are checked at construction: a bad one names itself, its value and its range."""

import math

import pytest

import lbw_jax


@pytest.mark.parametrize("make", [lbw_jax.reflex, lbw_jax.reflex_pro])
@pytest.mark.parametrize("knob, value, allowed", [
    ("stress_threshold", 0.0, r"\(0.0, inf\)"),
    ("spike_threshold", -1.5, r"\(0.0, inf\)"),
    ("min_scale", 0.0, r"\(0.0, 1.0\]"),
    ("min_scale", 1.5, r"\(0.0, 1.0\]"),
    ("recovery", -0.01, r"\[0.0, 1.0\]"),
    ("stats_every", 0, r"an integer in \[1, inf\]"),
    ("stats_every", 2.5, r"an integer"),
    ("stats_every", True, r"an integer"),
    ("ema_decay", 1.0, r"\[0.0, 1.0\)"),
    ("ema_decay", math.nan, r"\[0.0, 1.0\)"),
    ("use_max", 1, "True or False"),
    ("spike_cut", 0.0, r"\(0.0, 1.0\]"),
    ("stress_cut", 1.2, r"\(0.0, 1.0\]"),
    ("eps", "tiny", r"\(0.0, inf\)"),
])
def test_bad_shared_knob_is_named(make, knob, value, allowed):
    with pytest.raises(ValueError, match=rf"{make.__name__}: knob {knob}=.* allowed: .*{allowed}"):
        make(**{knob: value})


@pytest.mark.parametrize("knob, value", [
    ("window", 0), ("cluster_spikes", 0), ("oscillation_spikes", -1),
    ("variance_threshold", -0.5), ("variance_min_filled", 0), ("spike_streak_limit", 0),
    ("nuclear_factor", 0.0), ("fast_recovery", -4.0), ("max_change", 0.0),
    ("cluster_factor", 2.0),
])
def test_bad_pro_knob_is_named(knob, value):
    with pytest.raises(ValueError, match=rf"reflex_pro: knob {knob}={value!r}"):
        lbw_jax.reflex_pro(**{knob: value})


def test_knob_order_and_unknown_knobs():
    with pytest.raises(ValueError, match="stress_threshold=2.0 must not exceed spike_threshold=1.5"):
        lbw_jax.reflex(stress_threshold=2.0)
    with pytest.raises(ValueError, match="calm_streak_mid=12 must not exceed calm_streak_fast=10"):
        lbw_jax.reflex_pro(calm_streak_mid=12)
    with pytest.raises(ValueError, match=r"unknown knob\(s\) \['window'\]; known knobs: \["):
        lbw_jax.reflex(window=50)


def test_defaults_are_the_published_ones():
    law = lbw_jax.reflex()
    assert (law.stress_threshold, law.spike_threshold, law.min_scale, law.recovery, law.use_max,
            law.stats_every, law.ema_decay, law.spike_cut, law.stress_cut) == (
        1.1, 1.5, 0.1, 0.01, True, 10, 0.85, 0.7, 0.85)
    pro = lbw_jax.reflex_pro()
    assert (pro.window, pro.spike_cut, pro.stress_cut, pro.max_change, pro.nuclear_factor) == (
        50, 0.65, 0.80, 0.3, 0.5)
    # Valid ints for real knobs are accepted and normalised.
    assert lbw_jax.reflex(min_scale=1).min_scale == 1.0


def test_every_knob_is_declared_with_its_check():
    import dataclasses

    for make in lbw_jax.POLICIES.values():
        policy = make()
        for f in dataclasses.fields(policy):
            assert callable(f.metadata.get("check")), (policy.name, f.name)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Unchecked(lbw_jax.Policy):
        gain: float = 1.0
        name = "unchecked"

    with pytest.raises(TypeError, match="Unchecked.gain is declared without a check"):
        Unchecked()
