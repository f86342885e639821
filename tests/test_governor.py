"""The governor: replayed step by step against the plain-Python statement of its
rules, plus the behaviour it promises (no harm when calm, a schedule's warmup passes
the trust region, cuts that scale with the loss's excess over its recent best, a
pathological step skipped exactly) and its knob checks."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax
from lbw_jax.knobs import defaults as knob_defaults
from lbw_jax.policies.governor import Governor
from reference_governor import DEFAULTS, REASONS, GovernorModel


DIM = 16


def _script(n=420, seed=0):
    """Losses, gradient magnitudes and an LR multiplier exercising every mechanism:
    a warmup ramp (passes the trust region), calibration, a gradient spike, a loss
    spike, a run of bad batches longer than max_skips (accepted), an LR spike (the step
    grows while the gradient does not), a loss that loses ground, and recovery."""
    rng = np.random.default_rng(seed)
    loss = 3.0 - 0.002 * np.arange(n) + 0.03 * rng.standard_normal(n)
    grad = np.exp(0.05 * rng.standard_normal(n))
    lr_mult = np.minimum(1.0, (np.arange(n) + 2) / 20)   # a schedule's warmup
    grad[40] *= 100.0                    # one pathological gradient
    loss[60] += 3.0                      # one pathological batch
    loss[80:86] += 0.5                   # a shift: three skipped, then accepted (and cut)
    lr_mult[100:105] = 30.0              # an LR spike
    loss[140:200] += np.linspace(0.0, 0.8, 60)   # training loses ground ...
    loss[200:] += 0.8 - np.linspace(0.0, 1.6, n - 200).clip(0, 1.2)  # ... then improves
    return loss.astype(np.float32), grad.astype(np.float32), lr_mult.astype(np.float32)


def _inner(lr_mult):
    # SGD whose step is multiplied by a schedule over *applied* steps (skips leave its count).
    table = jnp.asarray(lr_mult)
    return optax.chain(optax.sgd(0.1), optax.scale_by_schedule(
        lambda count: table[jnp.minimum(count, table.shape[0] - 1)]))


def _oscillating_signs(n=420, start=112, stop=132):
    """+1 except from ``start`` to ``stop``, where the gradient's direction flips every step
    (as across a valley too steep for the step): each reading of the overshoot is about 2,
    the gradient norm, the loss and the step's size stay as they were, so only the brake sees it."""
    signs = np.ones(n, np.float32)
    signs[start:stop] = (-1.0) ** np.arange(stop - start)
    return signs


class GovernorReplayTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_the_plain_python_rules_at_every_step(self):
        self._replay(dict(max_skips=3))

    @chex.variants(with_jit=True)
    def test_level_cuts_match_the_plain_python_rules_at_every_step(self):
        scales = self._replay(dict(max_skips=3, level_cuts=True), check_coverage=False)
        # The same script's stretch of harm, cut to a level instead of compounding.
        assert 0.1 < min(scales[140:200]) < 0.9 and scales[-1] == 1.0

    @chex.variants(with_jit=True)
    def test_the_brake_matches_the_plain_python_rules_at_every_step(self):
        """The same script with the default law (the brake on), its gradient flipping
        direction every step over steps 112-131: the brake cuts the scale there (the
        library's ``brakes`` count and ``overshoot`` regime say so), and every step, of
        every mechanism, equals the plain-Python rules."""
        scales = self._replay(dict(max_skips=3), signs=_oscillating_signs(), check_coverage=False)
        # Recovering from the earlier cuts before the oscillation; cut to the floor in it.
        assert scales[111] > 0.3 and min(scales[112:134]) == 0.01

    def _replay(self, knobs, check_coverage=True, signs=None):
        losses, grads, lr_mult = _script()
        brake_script = signs is not None
        signs = np.ones(len(losses), np.float32) if signs is None else signs
        direction = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
        direction /= np.linalg.norm(direction)
        tx = lbw_jax.lbw_guard(_inner(lr_mult), policy=lbw_jax.governor(**knobs))
        params = {"w": jnp.zeros(DIM)}
        state, update = tx.init(params), self.variant(
            lambda g, s, p, v: tx.update(g, s, p, value=v))
        model, applied = GovernorModel(**knobs), 0
        n = len(losses) if self.variant.type == chex.ChexVariantType.WITH_JIT else 110
        seen, reasons, scales = set(), set(), []
        # float32 against float64: the scale compounds hundreds of multiplicative steps.
        rtol = 5e-4
        for t in range(n):
            g = {"w": jnp.asarray(direction * grads[t] * signs[t])}
            lr = 0.1 * float(lr_mult[min(applied, len(lr_mult) - 1)])
            grad_vec = np.asarray(g["w"], np.float64)
            skipped, multiplier, regime = model.step(float(losses[t]), float(grads[t]), lr * float(grads[t]),
                                                     list(grad_vec), list(-lr * grad_vec))
            out, state = update(g, state, params, losses[t])
            info = lbw_jax.telemetry(state)
            where = f"step {t}"
            assert int(info["skipped"]) - (t - applied) == int(skipped), where
            if skipped:
                chex.assert_trees_all_equal(out, {"w": jnp.zeros(DIM)})
            else:
                applied += 1
                np.testing.assert_allclose(np.asarray(out["w"]), -lr * multiplier * grad_vec,
                                           rtol=rtol, atol=1e-9, err_msg=where)
                np.testing.assert_allclose(float(info["multiplier"]), multiplier, rtol=rtol, err_msg=where)
            np.testing.assert_allclose(float(info["scale"]), model.scale, rtol=rtol, err_msg=where)
            np.testing.assert_allclose(float(info["over_ema"]), model.over_ema, rtol=rtol, atol=1e-5,
                                       err_msg=where)
            assert int(info["brakes"]) == model.brakes, where
            assert lbw_jax.regime_name(state) == regime, where
            assert lbw_jax.reason_name(state) == model.reason, where
            seen.add(regime)
            reasons.add(model.reason)
            scales.append(model.scale)
        if self.variant.type == chex.ChexVariantType.WITH_JIT and brake_script:
            # Every regime and every reason, the brake's included, and the brake acted.
            assert seen == {"calm", "skip", "step_limit", "harm", "overshoot"}, seen
            assert reasons == set(REASONS) - {"room"}, reasons
            assert int(info["brakes"]) == model.brakes > 0
        elif self.variant.type == chex.ChexVariantType.WITH_JIT and check_coverage:
            assert seen == {"calm", "skip", "step_limit", "harm"}, seen
            assert reasons == set(REASONS) - {"overshoot", "room"}, reasons
            # A direction that never turns back reads under 1: the brake (on) never acts.
            assert int(info["brakes"]) == 0
            assert min(scales[:83]) == 1.0               # skipped faults cost no scale
            assert min(scales[83:90]) < 0.5              # an accepted shift is harm: cut
            assert min(scales[140:200]) < 0.1            # cut while the loss lost ground
            assert scales[-1] == 1.0                     # and recovered once it improved
            assert int(info["skipped"]) == 5 and int(info["limits"]) == model.limits >= 5
        return scales


def test_the_reference_rules_default_to_the_librarys_knobs():
    """tests/reference_governor.py restates the law with every knob at the library's
    default (the brake on): a replay with default knobs compares like with like."""
    assert DEFAULTS == knob_defaults(Governor)
    law = lbw_jax.governor()
    assert {name: getattr(law, name) for name in DEFAULTS} == DEFAULTS
    model = GovernorModel()
    assert {name: getattr(model, name) for name in DEFAULTS} == DEFAULTS


def test_a_schedule_warmup_passes_the_trust_region_and_a_spike_does_not():
    """AdamW on a linear warmup from 0 over 20 steps: no step is clamped. The same run
    with the LR x30 at step 60: that step is clamped."""
    def run(spike):
        lr = lambda count: 1e-2 * jnp.minimum(1.0, count / 20) * jnp.where(count == 60, spike, 1.0)
        tx = lbw_jax.lbw_guard(optax.adamw(lr), policy=lbw_jax.governor(use_harm=False, use_skip=False))
        params = {"w": jnp.zeros((8, 8))}
        state, rng, limits = tx.init(params), np.random.default_rng(0), []
        update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=1.0))
        descent = rng.standard_normal((8, 8))
        for _ in range(80):
            g = {"w": jnp.asarray(0.5 * descent + rng.standard_normal((8, 8)), jnp.float32)}
            _, state = update(g, state, params)
            limits.append(int(lbw_jax.telemetry(state)["limits"]))
        return limits
    assert run(1.0)[-1] == 0
    limits = run(30.0)
    assert limits[59] == 0 and limits[60] == 1


@pytest.mark.parametrize("trust_from", [2, 5, None])
def test_trust_from_lets_a_lora_start_pass_and_still_catches_a_spike(trust_from):
    """A LoRA start: the step triples at applied step 2 (the A factors start moving), then
    a warmup grows it x2, x1.5, x1.11 to its peak. With trust_from=2 the jump is
    clamped and the clamp compounds (the reference grows by 1.02 a step while the warmup
    grows the step faster); from step 5 on (or the default 11), the jump passes unclamped,
    and the 30x LR spike at step 40 is clamped either way. Each step equals the
    plain-Python model's."""
    n = 60
    lr_mult = np.minimum(1.0, np.concatenate([[0.1], 0.3 * np.arange(1, n)])).astype(np.float32)
    lr_mult[40] = 30.0
    knobs = dict(use_skip=False, use_harm=False)
    if trust_from is not None:      # None: the default
        knobs["trust_from"] = trust_from
    tx = lbw_jax.lbw_guard(_inner(lr_mult), policy=lbw_jax.governor(**knobs))
    params, model = {"w": jnp.zeros(DIM)}, GovernorModel(**knobs)
    state, update = tx.init(params), jax.jit(lambda g, s, p: tx.update(g, s, p, value=1.0))
    g = {"w": jnp.full(DIM, 0.25, jnp.float32)}       # norm 1
    multipliers = []
    for t in range(n):
        out, state = update(g, state, params)
        step = 0.1 * float(lr_mult[t]) * np.full(DIM, 0.25)
        _, multiplier, _ = model.step(1.0, 1.0, float(np.linalg.norm(step)), [0.25] * DIM, list(-step))
        np.testing.assert_allclose(float(jnp.linalg.norm(out["w"])), 0.1 * lr_mult[t] * multiplier,
                                   rtol=1e-5, err_msg=f"step {t}")
        multipliers.append(multiplier)
    limits = int(lbw_jax.telemetry(state)["limits"])
    assert limits == model.limits
    assert multipliers[40] < 0.1                        # the spike is caught on its first step
    if trust_from == 2:
        assert multipliers[1] < 1 and min(multipliers[1:8]) < 0.5 and limits > 10
    else:
        assert multipliers[:40] == [1.0] * 40 and limits >= 1


def test_a_cut_scales_with_the_excess():
    """One step of a loss ``jump`` above a flat 2.0: the fast EMA moves by 0.2 jump and
    its best forgets upward by 0.1 of that, so excess = 0.18 jump / (2 + 0.02 jump),
    and the scale is cut to tolerance / excess: a cut proportional to the excess."""
    def cut_after(jump):
        tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(use_skip=False, max_cut=0.01))
        params = {"w": jnp.zeros(4)}
        state = tx.init(params)
        for loss in [2.0] * 12 + [2.0 + jump]:
            _, state = tx.update({"w": jnp.full(4, 0.1)}, state, params, value=loss)
        info = lbw_jax.telemetry(state)
        return float(info["scale"]), float(info["excess"])
    for jump in (0.6, 1.2):
        scale, excess = cut_after(jump)
        np.testing.assert_allclose(excess, 0.18 * jump / (2 + 0.02 * jump), rtol=1e-5)
        np.testing.assert_allclose(scale, 0.03 / excess, rtol=1e-5)


def test_level_cuts_hold_a_persisting_excess_where_compounding_floors_it():
    """The loss steps up by 0.3 above a flat 2.0 and stays there for 30 steps. The excess
    rises and then decays as the recent best forgets upward, staying above the tolerance
    for many steps: compounding cuts on each of them, to the floor; level cuts go to
    tolerance / (the largest excess) of the scale where the harm began, and hold there."""
    def run(**knobs):
        tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(use_skip=False, **knobs))
        params = {"w": jnp.zeros(4)}
        state, update = tx.init(params), jax.jit(lambda s, v: tx.update({"w": jnp.full(4, 0.1)}, s, params, value=v))
        scales, excess = [], []
        for loss in [2.0] * 12 + [2.3] * 30:
            _, state = update(state, loss)
            info = lbw_jax.telemetry(state)
            scales.append(float(info["scale"]))
            excess.append(float(info["excess"]))
        return np.array(scales), np.array(excess)
    compounding, _ = run()
    level, excess = run(level_cuts=True)
    harmful = excess > 0.03
    assert harmful.sum() >= 5                          # a stretch of harm, not one step
    assert compounding.min() < 0.05                    # cut on every harmful step
    np.testing.assert_allclose(level.min(), 0.03 / excess.max(), rtol=1e-5)
    assert level.min() > 0.2 and (np.diff(level[harmful]) <= 0).all()   # a level, never up


def _train_like(losses, noise_seed=0, **knobs):
    """Runs the governed AdamW with the given losses on noisy gradients around a steady
    descent direction (what a healthy step sees); returns the applied multipliers."""
    tx = lbw_jax.lbw_guard(optax.adamw(1e-3), policy=lbw_jax.governor(**knobs))
    params = {"w": jnp.zeros((8, 8))}
    state = tx.init(params)
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    rng, scales = np.random.default_rng(noise_seed), []
    descent = rng.standard_normal((8, 8))
    for loss in losses:
        g = {"w": jnp.asarray(0.5 * descent + rng.standard_normal((8, 8)), jnp.float32)}
        _, state = update(g, state, params, loss)
        scales.append(float(lbw_jax.telemetry(state)["multiplier"]))
    return np.array(scales), lbw_jax.telemetry(state)


def _descent(seed, relative_noise, n=400):
    rng = np.random.default_rng(seed)
    return 4.0 * np.exp(-np.arange(n) / 300) * (1 + relative_noise * rng.standard_normal(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_healthy_run_is_left_at_full_speed(seed):
    # Per-step loss noise of 2% of the level (the stress model's batches: about 0.1 at 4.9).
    scales, info = _train_like(_descent(seed, 0.02))
    assert scales.min() == 1.0 and int(info["skipped"]) == 0 and int(info["interventions"]) == 0


def test_noise_near_the_tolerance_makes_false_cuts_and_a_larger_tolerance_removes_them():
    """The documented limit: the tolerance is relative to the loss, so loss noise of 5% of
    the level (a fast-EMA noise near the 3% tolerance) cuts a healthy run now and then;
    tolerance=0.08 leaves it alone."""
    cuts = [int(_train_like(_descent(seed, 0.05))[1]["cuts"]) for seed in range(3)]
    assert sum(cuts) > 0
    for seed in range(3):
        scales, info = _train_like(_descent(seed, 0.05), tolerance=0.08)
        assert scales.min() == 1.0 and int(info["interventions"]) == 0


def test_a_loss_losing_ground_drives_the_scale_down_and_it_recovers():
    rng = np.random.default_rng(3)
    losses = np.concatenate([np.full(60, 3.0), np.linspace(3.0, 4.0, 30), np.linspace(4.0, 2.5, 300)])
    scales, info = _train_like(losses + 0.02 * rng.standard_normal(len(losses)))
    assert scales[:60].min() == 1.0
    assert scales[89] < 0.05                # cut while the loss climbed
    assert scales[-1] == 1.0                # and recovered (x1.02 a step) once it improved
    assert int(info["cuts"]) > 5


# A loss alternating 3.0 +- 0.03: its standard deviation is 0.03, so +0.03 z is +1 sd.
_FLAT = 3.0 + 0.03 * (-1.0) ** np.arange(160)


def skip_runs(losses, **knobs) -> list[int]:
    """The lengths of the runs of skipped steps of a governor fed ``losses`` and a steady
    gradient (the measurement of experiments/skip_shift/, quoted in docs/governor.md)."""
    tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(**knobs))
    params = {"w": jnp.zeros(4)}
    state = tx.init(params)
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    skipped = []
    for loss in losses:
        _, state = update({"w": jnp.full(4, 0.1)}, state, params, loss)
        skipped.append(int(lbw_jax.telemetry(state)["skipped"]))
    flags = np.diff(skipped, prepend=0) > 0
    return [len(list(group)) for flag, group in itertools.groupby(flags) if flag]


def test_a_modest_level_shift_is_accepted_in_a_few_skips_a_burst_is_skipped_whole():
    """A lasting shift of 8 sd (a new level in healthy training) is skipped only while the
    widened variance says it is implausible: a few steps, not max_skips, and well under
    the watchdog's limit. Without the widening (skip_widen=1) it costs all max_skips.
    A 20-step burst at 40 sd (garbage batches) is skipped whole either way."""
    shift = _FLAT + np.where(np.arange(160) >= 60, 8 * 0.03, 0.0)
    (run,) = skip_runs(shift)
    assert 3 <= run <= 8, run
    assert skip_runs(shift, skip_widen=1.0) == [20]
    burst = _FLAT + np.where((np.arange(160) >= 60) & (np.arange(160) < 80), 40 * 0.03, 0.0)
    assert skip_runs(burst) == [20] and skip_runs(burst, skip_widen=1.0) == [20]


def test_a_nan_step_is_skipped_and_leaves_the_governor_untouched():
    tx = lbw_jax.lbw_guard(optax.adamw(1e-3), policy=lbw_jax.governor())
    params = {"w": jnp.zeros(4)}
    state = tx.init(params)
    for t in range(30):
        _, state = tx.update({"w": jnp.full(4, 0.1)}, state, params, value=1.0 + 0.01 * (t % 3))
    out, after = tx.update({"w": jnp.array([jnp.nan, 0, 0, 0])}, state, params, value=1.0)
    chex.assert_trees_all_equal(out, {"w": jnp.zeros(4)})
    chex.assert_trees_all_equal(after._replace(skipped=state.skipped), state)
    assert int(after.skipped) == 1


def test_vmapped_governors_are_independent():
    tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(warmup_steps=5))
    params = {"w": jnp.zeros((2, 4))}
    state = jax.vmap(tx.init)(params)
    update = jax.jit(jax.vmap(lambda g, s, p, v: tx.update(g, s, p, value=v)))
    for t in range(12):
        spike = 50.0 if t == 9 else 1.0
        g = {"w": jnp.stack([jnp.full(4, 0.1 + 0.01 * (t % 3)), jnp.full(4, 0.1 + 0.01 * (t % 3)) * spike])}
        _, state = update(g, state, params, jnp.array([1.0, 1.0]) + 0.01 * (t % 2))
    np.testing.assert_array_equal(lbw_jax.telemetry(state)["skipped"], [0, 1])


def test_the_governor_needs_the_loss():
    tx = lbw_jax.lbw_guard(optax.adam(0.1), policy=lbw_jax.governor())
    with pytest.raises(ValueError, match="value=loss"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


@pytest.mark.parametrize("knobs, name", [
    ({"min_scale": 0.0}, "min_scale"), ({"skip_z": -1}, "skip_z"), ({"max_skips": 0}, "max_skips"),
    ({"trust_ratio": 0.5}, "trust_ratio"), ({"trust_from": 1}, "trust_from"), ({"max_cut": 1.5}, "max_cut"),
    ({"recover": 0.9}, "recover"), ({"use_harm": 1}, "use_harm"), ({"warmup_steps": 1}, "warmup_steps"),
    ({"fast_decay": 1.0}, "fast_decay"), ({"tolerance": 0.0}, "tolerance"),
    ({"recover_band": 2.0}, "recover_band"), ({"speed": 2}, "unknown knob"),
])
def test_bad_knobs_are_named(knobs, name):
    with pytest.raises(ValueError, match=name):
        lbw_jax.governor(**knobs)
