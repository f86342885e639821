"""A deterministic 1,000-step gradient sequence that exercises every regime:
calm stretches, a slow drift in magnitude, isolated and clustered spikes (on
and off telemetry steps), and a stretch whose mean flips sign each collection."""

import numpy as np

SHAPES = ((16, 8), (8,))


def stressful_sequence(steps: int = 1000, seed: int = 0):
    """Returns a list of per-step gradients, each a list of float32 arrays."""
    rng = np.random.default_rng(seed)
    sequence = []
    for t in range(1, steps + 1):
        magnitude, offset = 1.0, 0.3
        if 200 <= t < 400:                      # slow drift upwards, then back
            magnitude = 1.0 + 2.0 * (t - 200) / 200
        if 400 <= t < 450:
            magnitude = 3.0
        if 450 <= t < 560:                      # the mean flips sign every collection
            offset = 0.5 if (t // 10) % 2 else -0.5
        if t in (300, 305, 480, 620, 640, 655, 700, 710, 720, 905):  # spikes, some off-schedule
            magnitude *= 3.0
        if 760 <= t < 880:                      # noisy magnitudes: high ratio variance
            magnitude = float(rng.choice([0.5, 1.0, 2.5]))
        grads = [(magnitude * (rng.standard_normal(s) + offset)).astype(np.float32) for s in SHAPES]
        sequence.append(grads)
    return sequence
