"""lbw_guard in thirty lines: a small regression net trained with AdamW at an
aggressive learning rate, with a corrupted batch every 40 steps: plain, guarded by the
default law (the governor) and by the reference law reflex.

    python examples/quickstart.py
"""

import jax
import jax.numpy as jnp
import optax

import lbw_jax


def loss_fn(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] - y) ** 2)


def train(opt, steps=400, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {"w1": jax.random.normal(k1, (16, 64)) / 4, "b1": jnp.zeros(64),
              "w2": jax.random.normal(k2, (64, 1)) / 8}
    teacher = jax.random.normal(k3, (16, 1))
    state = opt.init(params)

    @jax.jit
    def step(params, state, t):
        x = jax.random.normal(jax.random.fold_in(k3, t), (128, 16))
        y = jnp.sin(x @ teacher) * jnp.where(t % 40 == 39, 100.0, 1.0)  # corrupted batch
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        # value_fn: the loss on this batch as a function of the parameters, for the default
        # law's room probe (governor v4); the inner optimizer ignores it.
        updates, state = opt.update(grads, state, params, value=loss,
                                    value_fn=lambda p: loss_fn(p, x, y))
        return optax.apply_updates(params, updates), state, loss

    for t in range(steps):
        params, state, loss = step(params, state, t)
    x = jax.random.normal(jax.random.key(99), (4096, 16))
    return float(loss_fn(params, x, jnp.sin(x @ teacher))), state


if __name__ == "__main__":
    lr = 1e-1
    plain_loss, _ = train(optax.adamw(lr))
    guarded_loss, state = train(lbw_jax.lbw_guard(optax.adamw(lr)))   # the governor, the default
    reflex_loss, _ = train(lbw_jax.lbw_guard(optax.adamw(lr), policy=lbw_jax.reflex()))
    info = lbw_jax.telemetry(state)
    print(f"held-out loss  adamw: {plain_loss:.4f}   lbw_guard(adamw): {guarded_loss:.4f}   "
          f"lbw_guard(adamw, reflex): {reflex_loss:.4f}")
    print(f"governor: step {int(info['step'])}, scale {float(info['scale']):.3f}, "
          f"regime {lbw_jax.regime_name(state)}, "
          f"interventions {int(info['interventions'])}, skipped {int(info['skipped'])}")
