"""ZClip and spike skipping, the baselines of the stress suite: replayed step by step
against plain-Python statements of their rules."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax


def _zclip_reference(norms, alpha=0.97, z_t=2.5, warmup=25, eps=1e-6):
    """The ZClip rule in plain Python: the factor applied to each gradient."""
    factors, seen, mean, var = [], [], 0.0, 0.0
    for g in norms:
        if len(seen) < warmup:
            seen.append(g)
            if len(seen) == warmup:
                mean = sum(seen) / warmup
                var = sum((x - mean) ** 2 for x in seen) / warmup
            factors.append(1.0)
            continue
        std = math.sqrt(var)
        z = (g - mean) / (std + eps)
        kept = mean + z_t ** 2 / z * std if z > z_t else g
        factors.append(kept / g)
        mean = alpha * mean + (1 - alpha) * kept
        var = alpha * var + (1 - alpha) * (kept - mean) ** 2
    return factors


class ZClipTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_the_rule_step_by_step(self):
        rng = np.random.default_rng(0)
        norms = list(1.0 + 0.1 * rng.standard_normal(60))
        norms[30], norms[31], norms[45] = 8.0, 5.0, 0.2   # spikes and a dip (dips are kept)
        direction = jnp.asarray(rng.standard_normal(5), jnp.float32)
        direction = direction / jnp.linalg.norm(direction)
        tx = lbw_jax.zclip()
        update = self.variant(tx.update)
        state = tx.init({"g": direction})
        expected = _zclip_reference(norms)
        for t, (g, factor) in enumerate(zip(norms, expected)):
            out, state = update({"g": direction * g}, state)
            np.testing.assert_allclose(float(jnp.linalg.norm(out["g"])), g * factor, rtol=2e-5,
                                       err_msg=f"step {t}")
        assert int(state.clipped) == sum(f < 1 for f in expected) >= 2
        assert expected[30] < 0.5 and expected[45] == 1.0


def test_zclip_passes_non_finite_through_without_touching_its_statistics():
    tx = lbw_jax.zclip(warmup_steps=2)
    state = tx.init({"g": jnp.zeros(3)})
    for g in (1.0, 1.1, 0.9):
        _, state = tx.update({"g": jnp.full(3, g)}, state)
    out, after = tx.update({"g": jnp.array([jnp.nan, 1.0, 1.0])}, state)
    assert np.isnan(out["g"][0])
    chex.assert_trees_all_equal((after.count, after.mean, after.var), (state.count, state.mean, state.var))


@pytest.mark.parametrize("kwargs, knob", [({"alpha": 1.0}, "alpha"), ({"z_threshold": 0}, "z_threshold"),
                                          ({"warmup_steps": 0}, "warmup_steps")])
def test_zclip_rejects_bad_knobs_by_name(kwargs, knob):
    with pytest.raises(ValueError, match=f"zclip: knob {knob}="):
        lbw_jax.zclip(**kwargs)


def _spike_reference(losses, norms, window, threshold, warmup):
    """The skip rule in plain Python: which steps are skipped."""
    hist_l, hist_n, skipped = [], [], []
    for loss, norm in zip(losses, norms):
        if not (math.isfinite(loss) and math.isfinite(norm)):
            skipped.append(True)
            continue
        def out(x, hist):
            m = np.mean(hist)
            return x > m + threshold * np.std(hist)
        skip = len(hist_l) >= warmup and (out(loss, hist_l[-window:]) or out(norm, hist_n[-window:]))
        skipped.append(bool(skip))
        hist_l.append(loss)
        hist_n.append(norm)
    return skipped


class SpikeSkipTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_skips_exactly_the_outliers_and_leaves_the_inner_state(self):
        rng = np.random.default_rng(1)
        n = 70
        losses = list(3.0 + 0.05 * rng.standard_normal(n))
        norms = list(1.0 + 0.05 * rng.standard_normal(n))
        losses[40] = 9.0            # a loss spike
        norms[50] = 30.0            # a gradient-norm spike
        losses[60] = float("nan")   # a non-finite step
        losses[65] = 3.0 + 1e-3     # ordinary
        expected = _spike_reference(losses, norms, window=16, threshold=6.0, warmup=8)
        assert [t for t, s in enumerate(expected) if s] == [40, 50, 60]

        sgd = optax.sgd(0.1, momentum=0.9)
        tx = lbw_jax.skip_spikes(sgd, window=16, threshold=6.0, warmup=8)
        params = {"w": jnp.ones(4)}
        state, update = tx.init(params), self.variant(tx.update)
        direction = jnp.full(4, 0.5)   # norm 1
        for t in range(n):
            before = state.inner_state
            out, state = update({"w": direction * norms[t]}, state, params, value=losses[t])
            if expected[t]:
                chex.assert_trees_all_equal(out, {"w": jnp.zeros(4)})
                chex.assert_trees_all_equal(state.inner_state, before)
            else:
                assert float(jnp.abs(out["w"]).sum()) > 0, t
        assert int(state.skipped) == 3
        assert int(state.recorded) == n - 1   # the non-finite step is never recorded


def test_skip_spikes_needs_the_loss():
    tx = lbw_jax.skip_spikes(optax.sgd(0.1))
    with pytest.raises(ValueError, match="value=loss"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_skip_spikes_checks_its_knobs():
    with pytest.raises(ValueError, match="warmup"):
        lbw_jax.skip_spikes(optax.sgd(0.1), window=8, warmup=9)


def test_baselines_vmap_over_runs():
    """One program, many runs: each run skips its own spike only."""
    tx = lbw_jax.skip_spikes(optax.sgd(1.0), window=8, threshold=3.0, warmup=4)
    params = {"w": jnp.zeros((2, 3))}
    state = jax.vmap(tx.init)(params)
    update = jax.jit(jax.vmap(lambda g, s, p, v: tx.update(g, s, p, value=v)))
    for t in range(8):
        loss = jnp.array([1.0 + 0.01 * (t % 2), 1.0 + 0.01 * (t % 2) + (5.0 if t == 6 else 0.0)])
        out, state = update({"w": jnp.ones((2, 3))}, state, params, loss)
    np.testing.assert_array_equal(state.skipped, [0, 1])
