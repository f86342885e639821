"""StableAdamW-style update clipping (``lbw_jax.update_clip``), replayed step by step
against a plain-Python AdamW that divides each tensor's step by max(1, RMS)."""

import math

import chex
from absl.testing import parameterized
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax

LR, B1, B2, EPS, WD = 0.1, 0.9, 0.95, 1e-8, 0.01


def _reference(grads, params, include_current=False):
    """Plain Python (float64) AdamW with StableAdamW's per-tensor clip, where v_hat is
    the bias-corrected second moment from before the step. Returns every step's
    parameters and per-tensor factors."""
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(x) for k, x in params.items()}
    p = {k: x.copy() for k, x in params.items()}
    history = []
    for t, g in enumerate(grads, start=1):
        factors = {}
        for k in p:
            m[k] = B1 * m[k] + (1 - B1) * g[k]
            v_before, v[k] = v[k], B2 * v[k] + (1 - B2) * g[k] ** 2
            if include_current:     # the estimate that already holds g
                v_hat = v[k] / (1 - B2 ** t)
            elif t > 1:             # the estimate from before this step
                v_hat = v_before / (1 - B2 ** (t - 1))
            rms = math.sqrt(np.mean(g[k] ** 2 / np.maximum(v_hat, 1e-16))) if include_current or t > 1 else 0.0
            factors[k] = 1.0 / max(1.0, rms)
            m_hat, v_hat = m[k] / (1 - B1 ** t), v[k] / (1 - B2 ** t)
            step = m_hat / (np.sqrt(v_hat) + EPS) + WD * p[k]
            p[k] = p[k] - LR * factors[k] * step
        history.append(({k: x.copy() for k, x in p.items()}, factors))
    return history


class UpdateClipTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(False, True)
    def test_matches_stable_adamw_step_by_step(self, include_current):
        rng = np.random.default_rng(0)
        params = {"a": rng.standard_normal(6), "b": rng.standard_normal((2, 3))}
        grads = [{k: 0.1 * rng.standard_normal(x.shape) for k, x in params.items()} for _ in range(30)]
        grads[12]["a"] = grads[12]["a"] * 40.0     # a spike in one tensor only
        grads[20] = {k: g * 10.0 for k, g in grads[20].items()}
        expected = _reference(grads, params, include_current)

        tx = lbw_jax.update_clip(optax.adamw(LR, b1=B1, b2=B2, eps=EPS, weight_decay=WD), b2=B2,
                                 include_current=include_current)
        p = {k: jnp.asarray(x, jnp.float32) for k, x in params.items()}
        state, update = tx.init(p), self.variant(tx.update)
        clipped_steps = borderline = 0
        for t, (g, (want, factors)) in enumerate(zip(grads, expected)):
            u, state = update({k: jnp.asarray(x, jnp.float32) for k, x in g.items()}, state, p)
            p = optax.apply_updates(p, u)
            for k in p:
                np.testing.assert_allclose(p[k], want[k], rtol=1e-5, atol=1e-6, err_msg=f"step {t} {k}")
            np.testing.assert_allclose(float(state.last_factor), min(factors.values()), rtol=1e-5)
            clipped_steps += min(factors.values()) < 1.0 - 1e-6
            borderline += abs(min(factors.values()) - 1.0) <= 1e-6   # RMS == 1 up to rounding
        assert clipped_steps <= int(state.clipped) <= clipped_steps + borderline
        # The spike in tensor "a" shrinks "a" hard and "b" no more than noise does (g**2 / v_hat
        # of a fresh sample of stationary noise averages about 1); the all-tensor spike shrinks both.
        # With this step's gradient in the estimate, RMS is at most 1/sqrt(1 - b2): milder clips.
        hard = 0.5 if include_current else 0.1
        assert expected[12][1]["a"] < hard and expected[12][1]["b"] > 0.5
        assert max(expected[20][1].values()) < (0.6 if include_current else 0.5)
        assert min(min(f.values()) for _, f in expected) >= (math.sqrt(1 - B2) if include_current else 0)


def test_update_clip_needs_an_adam_family_inner():
    with pytest.raises(ValueError, match="no optax.ScaleByAdamState"):
        lbw_jax.update_clip(optax.sgd(0.1)).init({"w": jnp.ones(2)})


def test_update_clip_checks_its_knobs():
    with pytest.raises(ValueError, match="update_clip: knob b2="):
        lbw_jax.update_clip(optax.adamw(0.1), b2=1.0)
