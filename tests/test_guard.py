"""The guard's contract: where its scale acts, skipping non-finite steps,
extra arguments, vmap, checkpoints, dtypes and bad arguments."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import lbw_jax
from policies_for_tests import ScheduledScale


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.standard_normal((8, 4)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal((4,)), jnp.float32)}


def _grads(rng, params, magnitude=1.0):
    return jax.tree.map(lambda p: jnp.asarray(magnitude * rng.standard_normal(p.shape), p.dtype), params)


def _run(opt, grads_seq, params):
    """Returns the per-step updates of ``opt`` on a fixed point (no weight decay)."""
    state, update, out = opt.init(params), jax.jit(opt.update), []
    for grads in grads_seq:
        updates, state = update(grads, state, params)
        out.append(updates)
    return out, state


def _size_ratio(updates, reference, steps):
    """Mean update norm over ``steps`` relative to the reference's."""
    norm = lambda trees: sum(float(optax.tree.norm(trees[t])) for t in steps)
    return norm(updates) / norm(reference)


def test_scale_before_adam_is_undone_but_the_wrapper_scale_is_exact():
    params, rng = _params(), np.random.default_rng(3)
    grads_seq = [_grads(rng, params) for _ in range(600)]
    adam = lambda: optax.adamw(1e-3, b2=0.99, weight_decay=0.0)
    plain, _ = _run(adam(), grads_seq, params)

    # A constant scale ahead of Adam leaves every step unchanged ...
    pre_const, _ = _run(optax.chain(optax.scale(0.3), adam()), grads_seq, params)
    for a, b in zip(plain, pre_const):
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-10)

    # ... and a cut ahead of Adam at step 100 fades as the second moment adapts,
    # while the wrapper's cut holds exactly.
    cut = lambda count: jnp.where(count < 100, 1.0, 0.3)
    pre_cut, _ = _run(optax.chain(optax.scale_by_schedule(cut), adam()), grads_seq, params)
    wrapped, state = _run(lbw_jax.lbw_guard(adam(), policy=ScheduledScale(schedule=lambda t: cut(t - 1))),
                          grads_seq, params)
    assert _size_ratio(pre_cut, plain, range(115, 135)) < 0.5     # the cut bites at first
    assert _size_ratio(pre_cut, plain, range(560, 600)) > 0.95    # and is gone 500 steps later
    for t, (a, w) in enumerate(zip(plain, wrapped)):
        chex.assert_trees_all_close(w, jax.tree.map(lambda u: u * float(cut(t)), a),
                                    rtol=1e-6, atol=1e-12)
    assert int(lbw_jax.telemetry(state)["interventions"]) == 500   # Decision.intervened, counted
    assert lbw_jax.regime_name(state) == "held_down"                # in the policy's own words


def test_each_policy_names_its_codes_in_its_own_vocabulary():
    params = _params()
    for law, names in ((lbw_jax.reflex(), ("calm", "oscillation", "spike")),
                       (lbw_jax.governor(), ("calm", "skip", "harm", "step_limit", "overshoot", "room")),
                       (lbw_jax.governor(use_room=True), ("calm", "skip", "harm", "step_limit", "overshoot", "room")),
                       (ScheduledScale(schedule=lambda t: 1.0), ("calm", "held_down"))):
        state = lbw_jax.lbw_guard(optax.adamw(1e-3), policy=law).init(params)
        assert lbw_jax.regime_name(state) == "calm"                 # CALM is 0 in every table
        assert tuple(lbw_jax.regime_name(law, c) for c in range(len(names))) == names
        assert lbw_jax.regime_name(state.policy_state, len(names) - 1) == names[-1]
    assert lbw_jax.reason_name(lbw_jax.governor(), 4) == "harm"
    assert lbw_jax.reason_name(lbw_jax.governor(), 7) == "room"
    with pytest.raises(ValueError, match="governor: unknown regime code 6"):
        lbw_jax.regime_name(lbw_jax.governor(), 6)


def test_a_vocabulary_without_calm_at_zero_is_refused():
    import enum

    class Backwards(enum.IntEnum):
        SPIKE = 0
        CALM = 1

    with pytest.raises(TypeError, match="must be an enum.IntEnum with CALM = 0"):
        class BadLaw(lbw_jax.Policy):  # noqa: F841 - refused as it is declared
            Regime = Backwards


def _nan_like(tree):
    return jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), tree)


@pytest.mark.parametrize("bad", ["nan_grad", "inf_grad", "nan_value"])
def test_non_finite_step_is_skipped_and_counted(bad):
    params, rng = _params(), np.random.default_rng(0)
    opt = lbw_jax.lbw_guard(optax.adamw(1e-2), policy=lbw_jax.reflex(stats_every=2))
    update = jax.jit(opt.update)
    state = opt.init(params)
    for _ in range(5):
        _, state = update(_grads(rng, params), state, params, value=jnp.float32(2.0))
    before = state

    grads, value = _grads(rng, params), jnp.float32(2.0)
    if bad == "nan_grad":
        grads = {"w": grads["w"].at[3, 1].set(jnp.nan), "b": grads["b"]}
    elif bad == "inf_grad":
        grads = {"w": grads["w"], "b": grads["b"].at[0].set(-jnp.inf)}
    else:
        value = jnp.float32(jnp.nan)
    updates, state = update(grads, state, params, value=value)

    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
    chex.assert_trees_all_equal(state._replace(skipped=before.skipped), before)
    assert int(state.skipped) == 1

    # Training goes on from exactly where it was.
    grads = _grads(rng, params)
    after_skip, _ = update(grads, state, params, value=jnp.float32(2.0))
    without_skip, _ = update(grads, before, params, value=jnp.float32(2.0))
    chex.assert_trees_all_equal(after_skip, without_skip)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(after_skip))


def test_extra_args_reach_inner():
    # reduce_on_plateau needs value=; it fails unless the guard forwards it.
    inner = optax.chain(optax.adamw(1e-2), optax.contrib.reduce_on_plateau(patience=1, factor=0.5))
    opt = lbw_jax.lbw_guard(inner, policy=lbw_jax.reflex())
    params, rng = _params(), np.random.default_rng(1)
    state, update = opt.init(params), jax.jit(opt.update)
    for loss in (1.0, 1.0, 1.0, 1.0):
        _, state = update(_grads(rng, params), state, params, value=jnp.float32(loss))
    plateau = state.inner_state[1]
    assert float(plateau.scale) < 1.0

    with pytest.raises(TypeError):  # and it is absent when the caller gives none
        opt.update(_grads(rng, params), state, params)


@pytest.mark.slow
def test_vmap_runs_equal_separate_runs():
    lrs = jnp.array([1e-3, 3e-3, 1e-2, 3e-2], jnp.float32)
    policy = lbw_jax.reflex_pro(stats_every=2, window=8)
    opt = lbw_jax.lbw_guard(optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3), policy=policy)

    def init(lr, params):
        state = opt.init(params)
        state.inner_state.hyperparams["learning_rate"] = lr
        return state

    def train(state, params, grads_seq):
        def body(carry, grads):
            state, params = carry
            updates, state = opt.update(grads, state, params)
            return (state, optax.apply_updates(params, updates)), lbw_jax.telemetry(state)
        return jax.lax.scan(body, (state, params), grads_seq)

    params = [_params(seed) for seed in range(4)]
    rng = np.random.default_rng(7)
    steps = 60
    magnitudes = np.where(np.arange(steps) % 13 == 0, 6.0, 1.0)
    seqs = [jax.tree.map(lambda *g: jnp.stack(g),
                         *[_grads(rng, params[0], m) for m in magnitudes]) for _ in range(4)]
    # One run meets a NaN gradient: only that run skips it.
    seqs[2]["w"] = seqs[2]["w"].at[30, 0, 0].set(jnp.nan)

    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
    batched = jax.jit(jax.vmap(lambda lr, p, g: train(init(lr, p), p, g)))(
        lrs, stack(params), stack(seqs))
    single = jax.jit(lambda lr, p, g: train(init(lr, p), p, g))
    for i in range(4):
        expected = single(lrs[i], params[i], seqs[i])
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), expected,
                                    rtol=1e-5, atol=1e-6)
    (_, _), info = batched
    assert info["skipped"][:, -1].tolist() == [0, 0, 1, 0]
    assert int(info["interventions"][:, -1].min()) > 0


def test_orbax_checkpoint_round_trip(tmp_path):
    params, rng = _params(), np.random.default_rng(2)
    opt = lbw_jax.lbw_guard(optax.adamw(1e-2), policy=lbw_jax.reflex_pro(stats_every=3))
    state, update = opt.init(params), jax.jit(opt.update)
    for m in (1, 1, 5, 1, 1, 8, 1):
        _, state = update(_grads(rng, params, m), state, params)

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "guard", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "guard", jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
    chex.assert_trees_all_equal(restored, state)
    assert type(restored) is lbw_jax.GuardState

    grads = _grads(rng, params, 9.0)
    chex.assert_trees_all_equal(update(grads, restored, params), update(grads, state, params))


def test_bf16_params_keep_their_dtype():
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _params())
    opt = lbw_jax.lbw_guard(optax.adamw(1e-2), policy=lbw_jax.reflex())
    rng = np.random.default_rng(0)
    updates, state = jax.jit(opt.update)(_grads(rng, params), opt.init(params), params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    assert state.multiplier.dtype == jnp.float32 and state.policy_state.scale.dtype == jnp.float32
    updates, state = jax.jit(opt.update)(_nan_like(params), state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    assert int(state.skipped) == 1


def test_telemetry_finds_the_guard_inside_a_chain():
    params = _params()
    opt = optax.chain(optax.clip_by_global_norm(1.0), lbw_jax.lbw_guard(optax.adamw(1e-2), policy=lbw_jax.reflex()))
    state = opt.init(params)
    info = lbw_jax.telemetry(state)
    for key in ("step", "multiplier", "scale", "ratio", "grad_ms", "ema", "sign_flip", "regime",
                "interventions", "skipped"):
        assert key in info, key
    guard = state[1]   # each key reads the state field of its name
    assert info["multiplier"] is guard.multiplier and info["scale"] is guard.policy_state.scale
    assert lbw_jax.regime_name(state) == "calm"
    with pytest.raises(ValueError, match="exactly one lbw_guard state"):
        lbw_jax.telemetry(optax.adamw(1e-2).init(params))


def test_default_policy_is_the_governor():
    params = _params()
    state = lbw_jax.lbw_guard(optax.adamw(1e-2)).init(params)
    assert isinstance(state.policy_state, lbw_jax.policies.GovernorRoomState)   # v4: the room probe on


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="inner must be an optax.GradientTransformation"):
        lbw_jax.lbw_guard(1e-3)
    with pytest.raises(TypeError, match="policy must be a lbw_jax.Policy"):
        lbw_jax.lbw_guard(optax.adamw(1e-3), policy="reflex")


def test_the_chain_form_fails_at_once_and_shows_the_wrapper_form():
    # The reference card writes optax.chain(lbw_guard(...), optax.adamw(lr)): a scale
    # ahead of Adam is divided out, so the guard refuses to be built without its inner.
    for call in (lambda: lbw_jax.lbw_guard(policy=lbw_jax.governor()), lambda: lbw_jax.lbw_guard()):
        with pytest.raises(TypeError, match="missing 1 required positional argument: 'inner'"):
            call()   # inner is required: Python names it
    for call in (lambda: lbw_jax.lbw_guard(None, policy=lbw_jax.governor()),
                 lambda: lbw_jax.lbw_guard(lbw_jax.reflex())):
        with pytest.raises(TypeError) as error:
            call()
        message = str(error.value)
        assert "lbw_guard(optax.adamw(lr), policy=...)" in message
        assert "divided out" in message
    with pytest.raises(ValueError, match="reflex: unknown regime code 9"):
        lbw_jax.regime_name(lbw_jax.reflex(), 9)


@pytest.mark.parametrize("make_policy", [lbw_jax.reflex, lbw_jax.reflex_pro, lbw_jax.governor])
def test_state_can_be_donated(make_policy):
    # Training steps donate the optimizer state; no two state leaves may share a buffer.
    params = _params()
    opt = lbw_jax.lbw_guard(optax.adamw(1e-2), policy=make_policy())

    @jax.jit
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params, value=jnp.sum(grads["b"]))
        return optax.apply_updates(params, updates), state

    step = jax.jit(step, donate_argnums=(0, 1))
    state, rng = opt.init(params), np.random.default_rng(0)
    for _ in range(3):
        params, state = step(params, state, _grads(rng, params))
    assert int(state.step) == 3


def test_skip_non_finite_off_leaves_the_check_to_the_caller():
    params = _params()
    opt = lbw_jax.lbw_guard(optax.adamw(1e-2), policy=lbw_jax.reflex(), skip_non_finite=False)
    updates, state = jax.jit(opt.update)(_nan_like(params), opt.init(params), params)
    assert not np.isfinite(updates["w"]).any()   # no check: the caller's job now
    assert int(state.skipped) == 0
    # The documented way to keep the protection: optax.apply_if_finite around the guard.
    safe = optax.apply_if_finite(opt, max_consecutive_errors=10**6)
    updates, _ = jax.jit(safe.update)(_nan_like(params), safe.init(params), params)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
    with pytest.raises(TypeError, match="skip_non_finite must be True or False"):
        lbw_jax.lbw_guard(optax.adamw(1e-2), skip_non_finite="yes")
