"""The guard on parameters sharded over 8 CPU devices equals the unsharded guard:
its telemetry reductions are global, and its state needs no gathering."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import lbw_jax
from gradient_sequences import stressful_sequence

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (see conftest)")


@pytest.mark.slow
@pytest.mark.parametrize("make_policy", [lbw_jax.reflex, lbw_jax.reflex_pro])
def test_sharded_equals_unsharded(make_policy):
    steps = 300
    seq = stressful_sequence(steps, seed=5)
    # Leaves as in gradient_sequences.SHAPES: (16, 8) and (8,); add a replicated scalar leaf.
    grads = {"w": jnp.stack([g[0] for g in seq]), "b": jnp.stack([g[1] for g in seq]),
             "s": jnp.asarray(np.random.default_rng(0).standard_normal(steps), jnp.float32)}
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.standard_normal((16, 8)), jnp.float32),
              "b": jnp.asarray(rng.standard_normal(8), jnp.float32), "s": jnp.float32(0.5)}
    opt = lbw_jax.lbw_guard(optax.adamw(1e-2), policy=make_policy(stats_every=3))

    def train(params, grads):
        def body(carry, g):
            state, params = carry
            updates, state = opt.update(g, state, params)
            return (state, optax.apply_updates(params, updates)), lbw_jax.telemetry(state)
        (state, params), info = jax.lax.scan(body, (opt.init(params), params), grads)
        return params, info

    expected_params, expected_info = jax.jit(train)(params, grads)

    mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "fsdp"))
    specs = {"w": P("data", "fsdp"), "b": P("fsdp"), "s": P()}
    sharding = {k: NamedSharding(mesh, s) for k, s in specs.items()}
    seq_sharding = {k: NamedSharding(mesh, P(None, *s)) for k, s in specs.items()}
    sharded_params = jax.device_put(params, sharding)
    sharded_grads = jax.device_put(grads, seq_sharding)
    got_params, got_info = jax.jit(train, out_shardings=(sharding, None))(sharded_params, sharded_grads)

    assert got_params["w"].sharding.is_equivalent_to(sharding["w"], 2)
    assert len(got_params["w"].addressable_shards) == 8
    np.testing.assert_array_equal(got_info["regime"], expected_info["regime"])
    chex.assert_trees_all_close(got_info, expected_info, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(got_params, expected_params, rtol=1e-5, atol=1e-6)
    assert int(expected_info["interventions"][-1]) > 5
