"""The governor: replayed step by step against the plain-Python statement of its
rules, plus the behaviour it promises (no harm when calm, cuts when the loss
regresses, a pathological step skipped exactly) and its knob checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax
from lbw_jax import regimes
from reference_governor import REASONS, GovernorModel

DIM = 16


def _script(n=340, seed=0):
    """Losses, gradient magnitudes and an LR multiplier exercising every mechanism:
    warmup, a gradient spike, a loss spike, a cluster of bad batches, an LR spike
    (the step grows while the gradient does not), a regression, and recovery."""
    rng = np.random.default_rng(seed)
    loss = 3.0 - 0.002 * np.arange(n) + 0.03 * rng.standard_normal(n)
    grad = np.exp(0.05 * rng.standard_normal(n))
    lr_mult = np.ones(n)
    grad[40] *= 100.0                    # one pathological gradient
    loss[60] += 3.0                      # one pathological batch
    loss[80:84] += 4.0                   # a cluster of bad batches
    lr_mult[100:105] = 30.0              # an LR spike
    loss[140:200] += np.linspace(0.0, 0.6, 60)   # training goes backwards ...
    loss[200:] += 0.6 - np.linspace(0.0, 1.2, n - 200).clip(0, 0.9)  # ... then improves
    return loss.astype(np.float32), grad.astype(np.float32), lr_mult.astype(np.float32)


def _inner(lr_mult):
    # SGD whose step is multiplied by a schedule over *applied* steps (skips leave its count).
    table = jnp.asarray(lr_mult)
    return optax.chain(optax.sgd(0.1), optax.scale_by_schedule(
        lambda count: table[jnp.minimum(count, table.shape[0] - 1)]))


class GovernorReplayTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_the_plain_python_rules_at_every_step(self):
        losses, grads, lr_mult = _script()
        direction = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
        direction /= np.linalg.norm(direction)
        # SGD has no momentum to agree with: this replay covers the other four mechanisms.
        tx = lbw_jax.lbw_guard(_inner(lr_mult), policy=lbw_jax.governor(use_agreement=False))
        params = {"w": jnp.zeros(DIM)}
        state, update = tx.init(params), self.variant(
            lambda g, s, p, v: tx.update(g, s, p, value=v))
        model, applied = GovernorModel(use_agreement=False), 0
        n = len(losses) if self.variant.type == chex.ChexVariantType.WITH_JIT else 120
        seen = set()
        for t in range(n):
            g = {"w": jnp.asarray(direction * grads[t])}
            step_norm = 0.1 * float(grads[t]) * float(lr_mult[min(applied, len(lr_mult) - 1)])
            skipped, scale, regime = model.step(float(losses[t]), float(grads[t]), step_norm)
            out, state = update(g, state, params, losses[t])
            info = lbw_jax.telemetry(state)
            where = f"step {t}"
            assert int(info["skipped"]) - (t - applied) == int(skipped), where
            if skipped:
                chex.assert_trees_all_equal(out, {"w": jnp.zeros(DIM)})
            else:
                applied += 1
                np.testing.assert_allclose(float(jnp.linalg.norm(out["w"])), step_norm * scale,
                                           rtol=1e-4, err_msg=where)
            np.testing.assert_allclose(float(info["scale"]), scale, rtol=1e-4, err_msg=where)
            assert regimes.regime_name(info["regime"]) == regime, where
            assert REASONS[int(info["reason"])] == model.reason, where
            seen.add(regime)
        if self.variant.type == chex.ChexVariantType.WITH_JIT:
            assert seen == {"calm", "skip", "spike_cluster", "step_limit", "regression"}, seen
            # Recovered once the loss improved: back to the ceiling, and probing above it.
            assert float(info["scale"]) >= float(info["ceiling"]) > 0.3


class AgreementReplayTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_the_momentum_cosine_rule_step_by_step(self):
        """Adam inner: gradients that agree, then flip sign every step (overshooting),
        then agree again. The cosine with Adam's mu is computed here in numpy."""
        rng = np.random.default_rng(4)
        n = 140 if self.variant.type == chex.ChexVariantType.WITH_JIT else 60
        base = rng.standard_normal(DIM)
        b1 = 0.9
        tx = lbw_jax.lbw_guard(optax.adam(1e-2, b1=b1),
                               policy=lbw_jax.governor(use_trust=False, warmup_steps=10))
        params = {"w": jnp.zeros(DIM)}
        state, update = tx.init(params), self.variant(lambda g, s, p, v: tx.update(g, s, p, value=v))
        model, mu, seen = GovernorModel(use_trust=False, warmup_steps=10), np.zeros(DIM), set()
        for t in range(n):
            sign = -1.0 if 40 <= t < 90 and t % 2 else 1.0
            g = (sign * base + 0.3 * rng.standard_normal(DIM)).astype(np.float32)
            norm_mu = np.linalg.norm(mu)
            cosine = float(g @ mu / (np.linalg.norm(g) * norm_mu)) if norm_mu > 0 else 0.0
            _, scale, regime = model.step(2.0, float(np.linalg.norm(g)), 1.0, cosine)
            _, state = update({"w": jnp.asarray(g)}, state, params, 2.0)
            mu = b1 * mu + (1 - b1) * g.astype(np.float64)
            info = lbw_jax.telemetry(state)
            np.testing.assert_allclose(float(info["agreement"]), cosine, atol=1e-5, err_msg=f"step {t}")
            np.testing.assert_allclose(float(info["scale"]), scale, rtol=1e-4, err_msg=f"step {t}")
            assert regimes.regime_name(info["regime"]) == regime, t
            seen.add(regime)
        if self.variant.type == chex.ChexVariantType.WITH_JIT:
            assert seen == {"calm", "oscillation"}
            assert REASONS[int(info["reason"])] == "disagreement"


def test_agreement_needs_a_momentum():
    tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor())
    with pytest.raises(ValueError, match="use_agreement=False"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), value=1.0)


def _train_like(losses, noise_seed=0):
    """Runs the governed AdamW with the given losses on noisy gradients around a steady
    descent direction (what a healthy step sees); returns the scales."""
    tx = lbw_jax.lbw_guard(optax.adamw(1e-3), policy=lbw_jax.governor())
    params = {"w": jnp.zeros((8, 8))}
    state = tx.init(params)
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    rng, scales = np.random.default_rng(noise_seed), []
    descent = rng.standard_normal((8, 8))
    for loss in losses:
        g = {"w": jnp.asarray(0.5 * descent + rng.standard_normal((8, 8)), jnp.float32)}
        _, state = update(g, state, params, loss)
        scales.append(float(lbw_jax.telemetry(state)["scale"]))
    return np.array(scales), lbw_jax.telemetry(state)


def test_a_healthy_run_is_left_at_full_speed():
    rng = np.random.default_rng(2)
    losses = 4.0 * np.exp(-np.arange(400) / 300) + 0.08 * rng.standard_normal(400)
    scales, info = _train_like(losses)
    assert scales.min() == 1.0 and int(info["skipped"]) == 0 and int(info["interventions"]) == 0


def test_a_regressing_loss_drives_the_scale_down_and_it_recovers():
    rng = np.random.default_rng(3)
    losses = np.concatenate([np.full(60, 3.0), np.linspace(3.0, 4.0, 60), np.linspace(4.0, 2.5, 200)])
    scales, info = _train_like(losses + 0.02 * rng.standard_normal(len(losses)))
    assert scales[:60].min() == 1.0
    assert scales[119] < 0.1                # cut while the loss climbed
    assert scales[-1] > 0.5                 # and recovered once it improved
    assert int(info["cuts"]) > 20


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
    tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(warmup_steps=5, use_agreement=False))
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
    ({"trust_ratio": 0.5}, "trust_ratio"), ({"regress_cut": 1.5}, "regress_cut"),
    ({"recover": 0.9}, "recover"), ({"use_trend": 1}, "use_trend"), ({"warmup_steps": 1}, "warmup_steps"),
    ({"fast_decay": 0.99}, "fast_decay"), ({"speed": 2}, "unknown knob"),
])
def test_bad_knobs_are_named(knobs, name):
    with pytest.raises(ValueError, match=name):
        lbw_jax.governor(**knobs)
