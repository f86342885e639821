"""The signal study's instrument (lbw_jax/train/study/signals.py): exact values step by step on a
quadratic, where every signal has a closed form, and the wrapped optimizer untouched."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lbw_jax.train.study.signals import SIGNALS, traced

A = 3.0  # f(x) = A/2 * |x|^2: g = A x, SGD's step u = -lr A x, x_t = (1 - lr A) x_{t-1}


def _run(lr, steps, x0=(1.0, -2.0), **kw):
    tx = traced(optax.sgd(lr), **kw)
    x = jnp.asarray(x0, jnp.float32)
    state = tx.init(x)
    out = []
    for _ in range(steps):
        g = A * x
        u, state = tx.update(g, state, x, value=0.5 * A * jnp.sum(x * x))
        x = optax.apply_updates(x, u)
        out.append({k: float(v) for k, v in state.signals.items()})
    return out


@pytest.mark.parametrize("lr", [0.1, 0.5, 0.7])   # lr*A: 0.3 (stable), 1.5, 2.1 (past the edge)
def test_every_signal_has_its_closed_form_on_a_quadratic(lr):
    h = lr * A
    trace = _run(lr, 6)
    assert all(np.isnan(trace[0][k]) for k in ("align", "overshoot", "acceptance", "update_growth"))
    assert trace[0]["polyak"] == pytest.approx(1 / (2 * h), rel=1e-5)
    for s in trace[1:]:
        assert s["align"] == pytest.approx(1 - h, rel=1e-4, abs=1e-6)
        assert s["overshoot"] == pytest.approx(h, rel=1e-4)          # > 2: past the edge
        assert s["acceptance"] == pytest.approx(1 - h / 2, rel=1e-4, abs=1e-6)
        assert s["polyak"] == pytest.approx(1 / (2 * h), rel=1e-4)   # the Polyak step / lr
        assert s["pred"] == pytest.approx(-2 * h * s["update_norm"] ** 2 / (2 * lr * lr * A), rel=1e-4)
    # |u_t| = |1 - h| |u_{t-1}|: against an EMA that starts at |u_1|, step 2 grows by |1 - h|.
    assert trace[1]["update_growth"] == pytest.approx(abs(1 - h), rel=1e-4)


def test_update_growth_is_against_an_ema_of_the_earlier_norms():
    h, d = 0.1 * A, 0.5
    trace = _run(0.1, 4, growth_decay=d)
    norms = [abs(1 - h) ** t for t in range(4)]           # relative to |u_1|
    ema = norms[0]
    for t in range(1, 4):
        assert trace[t]["update_growth"] == pytest.approx(norms[t] / ema, rel=1e-4)
        ema = d * ema + (1 - d) * norms[t]


def test_the_optimizer_steps_exactly_as_it_would_alone():
    params = {"w": jnp.arange(4.0), "b": jnp.ones(())}
    alone, wrapped = optax.adamw(1e-2), traced(optax.adamw(1e-2))
    s1, s2 = alone.init(params), wrapped.init(params)
    for t in range(5):
        g = jax.tree.map(lambda p: jnp.sin(p + t), params)
        u1, s1 = alone.update(g, s1, params)
        u2, s2 = wrapped.update(g, s2, params, value=1.0 / (t + 1))
        chex.assert_trees_all_equal(u1, u2)
        params = optax.apply_updates(params, u1)
    chex.assert_trees_all_equal(s1, s2.inner_state)
    assert set(s2.signals) == set(SIGNALS)


def test_a_zero_denominator_is_no_signal_not_a_false_zero():
    tx = traced(optax.sgd(0.1))
    x = jnp.ones(2)
    state = tx.init(x)
    for _ in range(2):   # a zero gradient: every prediction g.u is 0
        _, state = tx.update(jnp.zeros(2), state, x, value=1.0)
    ratios = {k: float(v) for k, v in state.signals.items() if k not in ("update_norm", "pred")}
    assert all(np.isnan(v) for k, v in ratios.items() if k != "update_growth"), ratios
    assert float(state.signals["update_norm"]) == 0.0 == float(state.signals["pred"])   # measured, not ratios


def test_it_traces_under_jit_and_vmap():
    tx = traced(optax.adam(1e-2))
    x = jnp.stack([jnp.ones(3), 2 * jnp.ones(3)])
    step = jax.jit(jax.vmap(lambda g, s, p, v: tx.update(g, s, p, value=v)))
    state = jax.vmap(tx.init)(x)
    for _ in range(3):
        _, state = step(x, state, x, jnp.sum(x * x, axis=1))
    assert state.signals["align"].shape == (2,)
    assert np.all(np.isfinite(np.asarray(state.signals["align"])))


def test_a_bad_decay_is_refused():
    with pytest.raises(ValueError, match="growth_decay"):
        traced(optax.sgd(0.1), growth_decay=1.0)


@pytest.mark.parametrize("lr", [0.1, 0.5, 0.7])
def test_the_room_probes_read_the_critical_step_on_a_quadratic(lr):
    """On f = A/2 |x|^2 the loss along SGD's step returns to f at twice the optimum: the critical
    step is 2 / A, so the room over the step in use is 2 / (lr A), from the step's own batch (one
    forward pass) and from a held batch (three), here the same function."""
    f = lambda x: 0.5 * A * jnp.sum(x * x)
    tx = traced(optax.sgd(lr))
    x = jnp.asarray((1.0, -2.0), jnp.float32)
    state = tx.init(x)
    for _ in range(3):
        u, state = tx.update(A * x, state, x, value=f(x), value_fn=f, held_value_fn=f)
        x = optax.apply_updates(x, u)
        assert float(state.signals["room"]) == pytest.approx(2 / (lr * A), rel=1e-3)
        assert float(state.signals["room_held"]) == pytest.approx(2 / (lr * A), rel=1e-2)
        assert float(state.signals["curv"]) == pytest.approx(A * float(jnp.sum(u * u)), rel=1e-3)
    # Without those extra arguments: no reading, never a false one.
    _, state = traced(optax.sgd(lr)).update(A * x, traced(optax.sgd(lr)).init(x), x, value=f(x))
    assert np.isnan(float(state.signals["room"])) and np.isnan(float(state.signals["room_held"]))
