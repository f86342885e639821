"""Knobs are checked at construction: a bad one names itself, its value and its range."""

import dataclasses
import inspect
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
    for law in lbw_jax.POLICIES.values():
        policy = law.create()
        for f in dataclasses.fields(policy):
            assert callable(f.metadata.get("check")), (policy.name, f.name)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Unchecked(lbw_jax.Policy):
        gain: float = 1.0
        name = "unchecked"

    with pytest.raises(TypeError, match="Unchecked.gain is declared without a check"):
        Unchecked()


@pytest.mark.parametrize("make, law", [(lbw_jax.governor, lbw_jax.Governor),
                                       (lbw_jax.reflex, lbw_jax.Reflex),
                                       (lbw_jax.reflex_pro, lbw_jax.ReflexPro)])
def test_each_factory_lists_every_knob_with_its_type_and_default(make, law):
    # The factory's signature restates the fields: this keeps the two from drifting apart.
    params = [p for p in inspect.signature(make).parameters.values() if p.kind != p.VAR_KEYWORD]
    assert {p.name: p.default for p in params} == lbw_jax.knobs.defaults(law)
    assert [p.name for p in params] == list(lbw_jax.knobs.defaults(law))    # in field order
    types = {f.name: f.type for f in dataclasses.fields(law)}
    assert all(p.kind == p.KEYWORD_ONLY and p.annotation == types[p.name] for p in params)
    assert make() == law() and make(eps=1e-6) == law.create(eps=1e-6)
    with pytest.raises(lbw_jax.KnobError, match=rf"{law.name}: unknown knob\(s\) \['nope'\]"):
        make(nope=1)


def test_a_knob_error_says_what_to_change():
    with pytest.raises(lbw_jax.KnobError) as bad:
        lbw_jax.governor(tolerance=-1)
    assert isinstance(bad.value, ValueError)            # except ValueError still catches it
    assert (bad.value.owner, bad.value.name, bad.value.value, bad.value.allowed) == (
        "governor", "tolerance", -1.0, "a real number in (0.0, inf)")
    assert str(bad.value) == ("governor: knob tolerance=-1.0 is invalid; "
                              "allowed: a real number in (0.0, inf).")
    with pytest.raises(lbw_jax.KnobError) as unknown:
        lbw_jax.reflex(window=50, zeta=1)
    assert (unknown.value.owner, unknown.value.name, unknown.value.value) == ("reflex", "window", 50)
    assert unknown.value.allowed == f"one of {sorted(lbw_jax.knobs.defaults(lbw_jax.Reflex))}"
    with pytest.raises(lbw_jax.KnobError) as order:
        lbw_jax.reflex(stress_threshold=2.0)
    assert (order.value.name, order.value.allowed) == ("stress_threshold", "at most spike_threshold=1.5")
    with pytest.raises(lbw_jax.KnobError) as baseline:
        lbw_jax.zclip(alpha=1.0)
    assert (baseline.value.owner, baseline.value.name) == ("zclip", "alpha")


@pytest.mark.parametrize("make", [lbw_jax.governor, lbw_jax.Governor.create])
def test_a_former_knob_name_still_works_for_one_release(make):
    assert lbw_jax.Governor.renamed_knobs == {"over_cut": "brake_above", "over_recover": "recover_below"}
    with pytest.warns(DeprecationWarning, match="knob over_cut is now called brake_above"):
        assert make(over_cut=1.5) == lbw_jax.governor(brake_above=1.5)
    with pytest.warns(DeprecationWarning, match="knob over_recover is now called recover_below"):
        assert make(over_recover=1.05).recover_below == 1.05
    with pytest.raises(lbw_jax.KnobError, match="over_cut=1.5 is the former name of brake_above"):
        make(over_cut=1.5, brake_above=1.4)
    # Beside its new name at the default (a harness passes every knob of its config), it is taken.
    with pytest.warns(DeprecationWarning, match="over_cut"):
        assert lbw_jax.Governor.create(over_cut=1.5, brake_above=1.3).brake_above == 1.5


def test_one_registry_of_policies_by_name():
    assert lbw_jax.POLICIES == {"reflex": lbw_jax.Reflex, "reflex_pro": lbw_jax.ReflexPro,
                                "governor": lbw_jax.Governor}
    assert lbw_jax.LAWS is lbw_jax.POLICIES                  # its former name, for one release
    assert lbw_jax.POLICIES["governor"].create(tolerance=0.05) == lbw_jax.governor(tolerance=0.05)
