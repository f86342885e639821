"""Both reference laws replayed step for step against plain-Python models of them,
over 1,000 steps of spikes, drifts and sign flips; every governed update equals
adamw with learning rate lr * scale."""

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lbw_jax
from gradient_sequences import SHAPES, stressful_sequence
from reference_laws import ReflexModel, ReflexProModel

LR = 1e-2
# Eager lax.cond retraces its branches on every call (~0.25 s a step here), so the
# without-jit variant replays a prefix; the jitted one replays all 1,000 steps.
EAGER_STEPS = 60
CASES = (
    ("reflex", lbw_jax.reflex, ReflexModel, {}, {"calm", "oscillation", "spike"}),
    ("reflex_pro", lbw_jax.reflex_pro, ReflexProModel, {},
     {"calm", "oscillation", "spike", "spike_cluster", "nuclear"}),
    ("reflex_pro_window12", lbw_jax.reflex_pro, ReflexProModel, {"window": 12},
     {"calm", "oscillation", "spike", "spike_cluster", "nuclear"}),
)


def _params():
    rng = np.random.default_rng(1)
    return {f"leaf{i}": jnp.asarray(rng.standard_normal(s), jnp.float32)
            for i, s in enumerate(SHAPES)}


class ReferenceParityTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_replay_matches_model_and_adamw(self, make_policy, make_model, knobs, regimes_seen):
        policy = make_policy(**knobs)
        model = make_model(**knobs)
        guard = lbw_jax.lbw_guard(optax.adamw(LR, weight_decay=0.1), policy=policy)
        reference = optax.inject_hyperparams(optax.adamw)(learning_rate=LR, weight_decay=0.1)
        params = _params()
        state, ref_state = guard.init(params), reference.init(params)
        update = self.variant(guard.update)
        ref_update = jax.jit(reference.update)
        jitted = self.variant.type == chex.ChexVariantType.WITH_JIT
        sequence = stressful_sequence()
        seen = set()
        for t, leaves in enumerate(sequence if jitted else sequence[:EAGER_STEPS], start=1):
            grads = {f"leaf{i}": jnp.asarray(g) for i, g in enumerate(leaves)}
            updates, state = update(grads, state, params)
            model_scale, model_regime = model.step(leaves)
            info = lbw_jax.telemetry(state)

            self.assertEqual(int(info["step"]), t)
            np.testing.assert_allclose(float(info["scale"]), model_scale, rtol=1e-5,
                                       err_msg=f"scale at step {t}")
            if model_regime is not None:
                self.assertEqual(lbw_jax.regime_name(state), model_regime,
                                 msg=f"regime at step {t}")
                np.testing.assert_allclose(float(info["ratio"]), model.ratio, rtol=1e-4)
                seen.add(model_regime)

            ref_state.hyperparams["learning_rate"] = LR * info["scale"]
            ref_updates, ref_state = ref_update(grads, ref_state, params)
            # Separately compiled adamw programs differ by FMA contraction: ~1e-6 of lr.
            chex.assert_trees_all_close(updates, ref_updates, rtol=1e-5, atol=1e-5 * LR)
            params = optax.apply_updates(params, updates)

        if not jitted:
            return
        # The replay must have exercised the law, not just held a calm scale.
        self.assertEqual(seen, regimes_seen)
        self.assertGreater(int(info["interventions"]), 10)
        self.assertEqual(int(info["skipped"]), 0)


def test_reflex_pro_cluster_factor_is_inert():
    """A faithful port keeps the reference's ``cluster_factor``, but a cluster pins the
    scale at max(min_scale, min_scale * cluster_factor) = min_scale for every allowed
    value (<= 1): over the stressful sequence, which clusters spikes, the extremes of its
    range give the same scales bit for bit."""
    params = _params()
    sequence = stressful_sequence()[:400]

    def scales(cluster_factor):
        policy = lbw_jax.reflex_pro(cluster_factor=cluster_factor)
        opt = lbw_jax.lbw_guard(optax.adamw(LR), policy=policy)

        @jax.jit
        def run(state):
            def body(state, leaves):
                grads = {f"leaf{i}": g for i, g in enumerate(leaves)}
                _, state = opt.update(grads, state, params)
                info = lbw_jax.telemetry(state)
                return state, (info["scale"], info["regime"])
            return jax.lax.scan(body, state, stacked)[1]

        return run(opt.init(params))

    stacked = [jnp.asarray(np.stack([leaves[i] for leaves in sequence])) for i in range(len(SHAPES))]
    tiny, one = scales(1e-6), scales(1.0)
    np.testing.assert_array_equal(np.asarray(tiny[0]), np.asarray(one[0]))
    cluster = int(lbw_jax.policies.ReflexProRegime.SPIKE_CLUSTER)
    assert (np.asarray(one[1]) == cluster).any(), "the sequence must cluster spikes"
