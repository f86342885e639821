"""The room probe (lbw_jax.policies.room) and the governor's mechanism 5 (``use_room``): the
probe against the closed form on a quadratic, the law replayed step by step against the
plain-Python rules (tests/reference_governor.py), the probe's cadence, its state through a
checkpoint, and the law without ``value_fn`` (v3.0, exactly)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lbw_jax
from lbw_jax.policies import room
from lbw_jax.policies.governor_state import GovernorRoomState, GovernorState
from reference_governor import GovernorModel
from test_governor import DIM, _inner, _oscillating_signs, _script


def _quadratic(seed=0, dim=6):
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    a = q @ np.diag(np.linspace(0.5, 20.0, dim)) @ q.T
    b = rng.standard_normal(dim)
    f = lambda w: 0.5 * w @ jnp.asarray(a, jnp.float32) @ w - jnp.asarray(b, jnp.float32) @ w
    return a, b, f


@pytest.mark.parametrize("at", [0.05, 1.0, 7.0])
def test_the_probe_is_the_closed_form_on_a_quadratic(at):
    a, b, f = _quadratic()
    w = np.random.default_rng(1).standard_normal(6)
    g = a @ w - b
    u = -0.05 * g + 0.01 * np.random.default_rng(2).standard_normal(6)   # a descent direction
    expected = -2.0 * (g @ u) / (u @ a @ u)            # f(w + a_c u) = f(w)
    params, upd = {"w": jnp.asarray(w, jnp.float32)}, {"w": jnp.asarray(u, jnp.float32)}
    value_fn = lambda p: f(p["w"])
    crit, curv, valid = room.probe(value_fn, params, upd, value_fn(params), float(g @ u), at)
    assert bool(valid)
    np.testing.assert_allclose(float(curv), u @ a @ u, rtol=2e-3)
    np.testing.assert_allclose(float(crit), expected, rtol=2e-3)
    # At the critical multiplier the loss is back where it started (the definition of eta_c).
    np.testing.assert_allclose(float(f(jnp.asarray(w + expected * u, jnp.float32))), float(f(jnp.asarray(w))),
                               atol=2e-4 * abs(float(f(jnp.asarray(w)))) + 1e-5)
    # Three forward passes without the gradient give the same parabola.
    f0, f1, f2 = (float(f(jnp.asarray(w + k * at * u, jnp.float32))) for k in (0, 1, 2))
    np.testing.assert_allclose(float(room.critical3(f0, f1, f2, at)[0]), expected, rtol=2e-2)


def test_no_reading_uphill_and_unbounded_room_where_the_loss_curves_down():
    crit, _, valid = room.critical(1.0, 0.5, 2.0, 1.0)              # an ascent direction
    assert not bool(valid) and float(crit) == 0.0
    crit, curv, valid = room.critical(1.0, -0.5, 0.2, 1.0)          # f(1) below the tangent
    assert bool(valid) and float(curv) < 0 and float(crit) == room.ROOM_CAP


def _curvatures(n):
    """The parabola's curvature per step: calm (the level is 1), then a stretch where the room
    is a 64th (the level cuts the step), then calm again (a straight recovery)."""
    c = np.full(n, 2.5, np.float32)
    c[220:260] = 160.0
    return c


class RoomReplayTest(chex.TestCase):

    @chex.variants(with_jit=True)
    def test_the_capped_form_matches_the_plain_python_rules_at_every_step(self):
        """``room_cap``: the governor's replay script (every mechanism, the brake's oscillation
        included) with a loss parabola along each step whose curvature the script sets: every
        step's multiplier, scale, regime, reason and probe count equal the plain-Python rules."""
        model, scales, regimes, info = self._replay(dict(max_skips=3, use_room=True))   # room_cap: the default
        assert {"room", "harm", "overshoot", "skip"} <= regimes, regimes
        assert int(info["room_cuts"]) == model.room_cuts > 0
        # A 64th of the room: held at a quarter of the critical step once a probe sees it
        # (at most probe_every steps in), then back within a few readings of its end
        # (at x1.02 a step, 0.06 -> 1 would take 140 steps).
        assert max(scales[246:260]) < 0.1 and min(scales[261:266]) > 0.25 and scales[270] == 1.0
        # Bursts after the start and every cut, once every 25 steps otherwise.
        assert 10 < model.probes < 420 / 2

    @chex.variants(with_jit=True)
    def test_without_bursts_on_its_own_cuts_the_capped_form_matches_the_rules_with_fewer_probes(self):
        """``burst_on_cap=False``: a cut of the room's own starts no burst; every step still
        equals the plain-Python rules, and the probes are fewer than with the bursts."""
        model, scales, regimes, info = self._replay(dict(max_skips=3, burst_on_cap=False))
        assert "room" in regimes and int(info["room_cuts"]) == model.room_cuts > 0
        bursting = self._replay(dict(max_skips=3))[0]
        assert model.probes < bursting.probes, (model.probes, bursting.probes)

    @chex.variants(with_jit=True)
    def test_the_evidence_form_matches_the_plain_python_rules_at_every_step(self):
        """Evidence only (``room_cap=False``): the same script, every step equal to the plain-Python
        rules. Until the 64th of the room (step 220) every proposal lies within its critical
        step, so the law is v3.0's, the brake's oscillation (steps 112-131) included; the 64th
        puts the proposal past it (the level acts from then on), and alone cuts nothing."""
        model, scales, regimes, info = self._replay(dict(max_skips=3, use_room=True, room_cap=False))
        assert "room" not in regimes and int(info["room_cuts"]) == 0
        v3 = self._replay(dict(max_skips=3), probes=False)[1]
        np.testing.assert_allclose(scales[:220], v3[:220], rtol=1e-6)
        assert min(v3[112:134]) == 0.01 and model.peak > 0 and float(info["peak"]) > 0

    def _replay(self, knobs, probes=True):
        losses, grads, lr_mult = _script()
        losses, grads, lr_mult = _script()
        signs, curv = _oscillating_signs(), _curvatures(len(losses))
        direction = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
        direction /= np.linalg.norm(direction)
        tx = lbw_jax.lbw_guard(_inner(lr_mult), policy=lbw_jax.governor(**knobs))
        params = {"w": jnp.zeros(DIM)}

        def update(g, s, p, v, c):
            # The loss along any point q of this step's parabola: f(0) + g . q + c |q|^2 / 2.
            value_fn = lambda q: v + jnp.sum(g["w"] * q["w"]) + 0.5 * c * jnp.sum(q["w"] ** 2)
            return tx.update(g, s, p, value=v, value_fn=value_fn)

        state, update = tx.init(params), self.variant(update)
        model, applied, regimes, scales = GovernorModel(**knobs), 0, set(), []
        if not probes:   # the same script without value_fn: v3.0
            update = self.variant(lambda g, s, p, v, c: tx.update(g, s, p, value=v))
        for t in range(len(losses)):
            g = {"w": jnp.asarray(direction * grads[t] * signs[t])}
            lr = 0.1 * float(lr_mult[min(applied, len(lr_mult) - 1)])
            grad_vec = np.asarray(g["w"], np.float64)
            step_vec = -lr * grad_vec
            probe = lambda a: float(losses[t]) + a * grad_vec @ step_vec + 0.5 * float(curv[t]) * a * a * step_vec @ step_vec
            skipped, multiplier, regime = model.step(float(losses[t]), float(grads[t]), lr * float(grads[t]),
                                                     list(grad_vec), list(step_vec), probe=probe if probes else None)
            out, state = update(g, state, params, losses[t], curv[t])
            info, where = lbw_jax.telemetry(state), f"step {t}"
            if not skipped:
                applied += 1
                np.testing.assert_allclose(float(info["multiplier"]), multiplier, rtol=2e-3, err_msg=where)
                np.testing.assert_allclose(np.asarray(out["w"]), multiplier * step_vec, rtol=2e-3, atol=1e-9,
                                           err_msg=where)
            np.testing.assert_allclose(float(info["scale"]), model.scale, rtol=2e-3, err_msg=where)
            if "probes" in info:
                assert int(info["probes"]) == model.probes, where
            assert lbw_jax.regime_name(state) == regime, where
            assert lbw_jax.reason_name(state) == model.reason, where
            regimes.add(regime)
            scales.append(model.scale)
        return model, scales, regimes, info


def _sgd_problem():
    a, b, f = _quadratic(3)
    tx = lbw_jax.lbw_guard(optax.sgd(0.5), policy=lbw_jax.governor(use_room=True))   # far above 2/20
    params = {"w": jnp.ones(6, jnp.float32)}
    value_fn = lambda p: f(p["w"])

    @jax.jit
    def step(p, s):
        v, g = jax.value_and_grad(value_fn)(p)
        u, s = tx.update(g, s, p, value=v, value_fn=value_fn)
        return optax.apply_updates(p, u), s
    return tx, params, step, value_fn


def test_capped_a_step_far_above_the_edge_is_cut_to_the_fraction_of_the_critical_step_at_once():
    tx, params, step, value_fn = _sgd_problem()
    state = tx.init(params)
    v, g = jax.value_and_grad(value_fn)(params)
    u = jax.tree.map(lambda x: -0.5 * x, g)
    crit, _, _ = room.probe(value_fn, params, u, v, float(jnp.sum(g["w"] * u["w"])), 1.0)
    params, state = step(params, state)
    info = lbw_jax.telemetry(state)
    np.testing.assert_allclose(float(info["multiplier"]), 0.25 * float(crit), rtol=1e-4)
    assert lbw_jax.regime_name(state) == "room" and float(value_fn(params)) < float(v)
    for _ in range(60):
        params, state = step(params, state)
    assert np.isfinite(float(value_fn(params))) and float(value_fn(params)) < float(v)


def test_the_probes_state_checkpoints_and_resumes_bit_identically(tmp_path):
    import orbax.checkpoint as ocp
    tx, params, step, _ = _sgd_problem()
    state = tx.init(params)
    for _ in range(7):
        params, state = step(params, state)
    assert isinstance(state.policy_state, GovernorRoomState)
    with ocp.CheckpointManager(tmp_path) as mgr:
        mgr.save(7, args=ocp.args.StandardSave({"p": params, "s": state}))
        mgr.wait_until_finished()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"p": params, "s": state})
        back = mgr.restore(7, args=ocp.args.StandardRestore(abstract))
    chex.assert_trees_all_equal(back, {"p": params, "s": state})
    a, b = (params, state), (back["p"], back["s"])
    for _ in range(5):
        a, b = step(*a), step(*b)
    chex.assert_trees_all_equal(a, b)


def test_without_value_fn_the_law_is_v3_exactly():
    """The default law (``use_room``, v4) with no ``value_fn``: every update and every field
    v3.0 has are v3.0's; and with ``use_room=False`` the state keeps v3.0's exact fields."""
    losses, grads, lr_mult = _script(200)
    v3 = lbw_jax.lbw_guard(_inner(lr_mult), policy=lbw_jax.governor(use_room=False))
    v4 = lbw_jax.lbw_guard(_inner(lr_mult), policy=lbw_jax.governor())
    params = {"w": jnp.zeros(DIM)}
    s3, s4 = v3.init(params), v4.init(params)
    assert type(s3.policy_state) is GovernorState
    up3, up4 = jax.jit(v3.update), jax.jit(v4.update)
    for t in range(len(losses)):
        g = {"w": jnp.full(DIM, grads[t] / 4.0)}
        o3, s3 = up3(g, s3, params, value=losses[t])
        o4, s4 = up4(g, s4, params, value=losses[t])
        chex.assert_trees_all_equal(o3, o4)
        chex.assert_trees_all_equal(s3.policy_state, GovernorState(*s4.policy_state[:len(GovernorState._fields)]))
    assert int(s4.policy_state.probes) == 0
