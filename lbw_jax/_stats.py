"""Running statistics of scalar signals, shared by the governor and ZClip: Welford
during a calibration warmup, then exponential moving averages."""

from __future__ import annotations

import jax.numpy as jnp


def welford(mean, m2, x, n):
    """Running mean and sum of squared deviations after adding x as the n-th value."""
    delta = x - mean
    mean = mean + delta / n
    return mean, m2 + delta * (x - mean)


def ema(mean, var, x, decay):
    """EMA of the mean, and of the squared deviation from the updated mean."""
    mean_new = decay * mean + (1 - decay) * x
    return mean_new, decay * var + (1 - decay) * jnp.square(x - mean_new)
