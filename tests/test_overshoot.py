"""The governor's overshoot brake (mechanism 4), replayed step by step against the plain-Python
statement of its rules (tests/reference_governor.py), plus its reading on a quadratic."""

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax
from lbw_jax.policies import overshoot
from reference_governor import GovernorModel

DIM = 8


def _script(n=260, seed=0):
    """Gradients and losses: steady descent (readings near 0), an oscillation along one
    direction (readings near 2: the brake cuts), a stretch of lost ground (the harm control
    cuts), an oscillation that reads 2, 0, 2, 0 (an EMA between 0.89 and 1.11: under the brake,
    across the recovery gate), then calm."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(DIM)
    d /= np.linalg.norm(d)
    coef = np.ones(n)
    coef[60:80] = 1.6 * (-1.0) ** np.arange(20)            # g_t . g_{t-1} < 0: overshoot ~2
    coef[150:190] = (-1.0) ** ((np.arange(40) + 1) // 2)    # 1, -1, -1, 1, 1: reads 2, 0, 2, 0
    grads = coef[:, None] * d + 0.02 * rng.standard_normal((n, DIM))
    loss = 3.0 - 0.002 * np.arange(n) + 0.01 * rng.standard_normal(n)
    loss[110:140] += np.linspace(0.0, 0.6, 30)              # training loses ground ...
    loss[140:] += 0.6 - np.linspace(0.0, 1.2, n - 140).clip(0, 0.9)   # ... then improves
    return loss.astype(np.float32), grads.astype(np.float32)


class OvershootReplayTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_the_plain_python_rules_at_every_step(self):
        self._replay(recover_below=1.2)

    @chex.variants(with_jit=True)
    def test_the_gate_holds_the_recovery_while_the_reading_is_above_it(self):
        held = self._replay(recover_below=0.8)
        free = self._replay(recover_below=1.2)
        assert held[189] <= held[175] and free[175] < free[189]
        assert held[-1] > held[200]                                      # calm again: it recovers

    def _replay(self, **extra):
        knobs = dict(use_overshoot=True, use_skip=False, use_trust=False, **extra)
        losses, grads = _script()
        tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(**knobs))
        params = {"w": jnp.zeros(DIM)}
        state, update = tx.init(params), self.variant(lambda g, s, p, v: tx.update(g, s, p, value=v))
        model, regimes, reasons, scales, emas = GovernorModel(**knobs), set(), set(), [], []
        n = len(losses) if self.variant.type == chex.ChexVariantType.WITH_JIT else 90
        for t in range(n):
            g = grads[t].astype(np.float64)
            _, multiplier, regime = model.step(float(losses[t]), float(np.linalg.norm(g)),
                                               0.1 * float(np.linalg.norm(g)), list(g), list(-0.1 * g))
            out, state = update({"w": jnp.asarray(grads[t])}, state, params, losses[t])
            info, where = lbw_jax.telemetry(state), f"step {t}"
            np.testing.assert_allclose(np.asarray(out["w"]), -0.1 * multiplier * grads[t], rtol=2e-3,
                                       atol=1e-7, err_msg=where)
            np.testing.assert_allclose(float(info["over_ema"]), model.over_ema, rtol=2e-4, atol=1e-4,
                                       err_msg=where)
            np.testing.assert_allclose(float(info["scale"]), model.scale, rtol=2e-3, err_msg=where)
            assert lbw_jax.regime_name(state) == regime, where
            assert lbw_jax.reason_name(state) == model.reason, where
            regimes.add(regime)
            reasons.add(model.reason)
            scales.append(model.scale)
            emas.append(model.over_ema)
        assert regimes >= {"calm", "overshoot"}, regimes
        if self.variant.type == chex.ChexVariantType.WITH_JIT:
            assert regimes == {"calm", "overshoot", "harm"}, regimes
            assert min(scales[:60]) == 1.0 and min(scales[60:80]) < 0.5   # the brake cut
            assert 0.85 < min(emas[175:190]) and max(emas[175:190]) < 1.15  # under the brake
        return scales


def test_the_reading_is_the_steps_size_against_the_1d_optimum_on_a_quadratic():
    # f(x) = h/2 x^2; a step u from x: the next gradient is h (x + u). The optimum along u is
    # u* = -x, and the reading is |u| / |u*|: 1 at the optimum, 2 at the edge of stability.
    h, x = 3.0, 2.0
    g = {"w": jnp.asarray([h * x])}
    for size in (0.5, 1.0, 2.0):
        u = {"w": jnp.asarray([-size * x])}
        reading, valid = overshoot.read({"w": jnp.asarray([h * (x - size * x)])}, u,
                                        overshoot.slope(g, u), clip=4.0)
        assert bool(valid)
        np.testing.assert_allclose(float(reading), size, rtol=1e-6)
    # An uphill step gives no reading.
    u = {"w": jnp.asarray([1.0])}
    _, valid = overshoot.read(g, u, overshoot.slope(g, u), clip=4.0)
    assert not bool(valid)


def test_on_by_default_with_one_buffer_and_none_when_off():
    law = lbw_jax.governor()
    assert law.use_overshoot and law.limit_reads_grads
    assert law.init({"w": jnp.zeros(3)}).prev["w"].shape == (3,)
    off = lbw_jax.governor(use_overshoot=False, use_room=False)   # the room probe reads the grads too
    assert not off.limit_reads_grads and off.init({"w": jnp.zeros(3)}).prev == ()
    with pytest.raises(lbw_jax.KnobError, match="brake_above"):
        lbw_jax.governor(brake_above=0.0)
