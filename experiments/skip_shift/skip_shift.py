"""How many steps the governor skips before it accepts a lasting level shift, by the
shift's size, with and without the variance widening of a skip (``skip_widen``).

A loss alternating 3.0 +- 0.03 (standard deviation 0.03) for 60 steps, then shifted up by
z standard deviations for good; the gradient is steady. Each row is the length of the
run of skipped steps. A 20-step burst of z = 40 (garbage batches) is the last row: it
should stay skipped whole.

    python experiments/skip_shift/skip_shift.py
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lbw_jax


def skip_runs(losses, **knobs) -> list[int]:
    """The lengths of the runs of skipped steps, all steps in one scanned program."""
    tx = lbw_jax.lbw_guard(optax.sgd(0.1), policy=lbw_jax.governor(**knobs))
    params, grads = {"w": jnp.zeros(4)}, {"w": jnp.full(4, 0.1)}

    def step(state, loss):
        _, state = tx.update(grads, state, params, value=loss)
        return state, lbw_jax.telemetry(state)["skipped"]

    _, skipped = jax.lax.scan(step, tx.init(params), jnp.asarray(losses, jnp.float32))
    flags = np.diff(np.asarray(skipped), prepend=0) > 0
    return [len(list(group)) for flag, group in itertools.groupby(flags) if flag]


def main():
    n, at = 160, 60
    flat = 3.0 + 0.03 * (-1.0) ** np.arange(n)
    default = lbw_jax.knobs.defaults(lbw_jax.Governor)
    print(f"governor defaults: skip_z={default['skip_z']}, skip_widen={default['skip_widen']}, "
          f"max_skips={default['max_skips']}\n")
    print(f"| shift | skipped (skip_widen={default['skip_widen']}) | skipped (skip_widen=1, v2) |")
    print("|---|---|---|")
    rows = [(f"lasting, z = {z}", flat + np.where(np.arange(n) >= at, z * 0.03, 0.0))
            for z in (7, 8, 10, 12, 16, 24, 40)]
    rows.append(("20-step burst, z = 40",
                 flat + np.where((np.arange(n) >= at) & (np.arange(n) < at + 20), 40 * 0.03, 0.0)))
    for name, losses in rows:
        print(f"| {name} | {skip_runs(losses)} | {skip_runs(losses, skip_widen=1.0)} |", flush=True)


if __name__ == "__main__":
    main()
