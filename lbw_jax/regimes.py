"""Regime codes: what the control law decided at its most recent decision.

The regime is kept in the guard state as an int32 so that it can live inside
jit, vmap and checkpoints; ``REGIMES[code]`` gives its name for logs.
"""

REGIMES: tuple[str, ...] = (
    "calm",           # no stress sensed: the scale recovers towards 1
    "oscillation",    # gradient energy above the stress threshold, or a sign flip
    "spike",          # gradient energy above the spike threshold
    "spike_cluster",  # reflex_pro: two or more spikes inside its window
    "nuclear",        # reflex_pro: oscillating or unstable, scale dropped to its floor
    "skip",           # governor: one pathological step (loss or gradient outlier) skipped
    "regression",     # governor: the loss lost ground against its best level: scale cut
    "step_limit",     # governor: the step was larger than the trust region allows: clamped
)

(CALM, OSCILLATION, SPIKE, SPIKE_CLUSTER, NUCLEAR, SKIP, REGRESSION,
 STEP_LIMIT) = range(len(REGIMES))


def regime_name(code) -> str:
    """Name of a regime code (an int or a scalar array)."""
    code = int(code)
    if not 0 <= code < len(REGIMES):
        raise ValueError(f"unknown regime code {code}; known: {dict(enumerate(REGIMES))}")
    return REGIMES[code]
