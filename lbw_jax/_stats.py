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


def calibrated(mean, var, x, count, warmup_steps: int, decay: float):
    """Mean and variance after adding ``x`` to ``count`` earlier values: Welford over the first
    ``warmup_steps`` values (its sum of squares becomes a variance at the last of them), then
    EMAs with ``decay`` (the governor's statistics)."""
    calibrating = count < warmup_steps
    n = (count + 1).astype(jnp.float32)
    handover = count + 1 == warmup_steps  # sums of squares become variances
    w_mean, w_m2 = welford(mean, var, x, n)
    e_mean, e_var = ema(mean, var, x, decay)
    return (jnp.where(calibrating, w_mean, e_mean),
            jnp.where(calibrating, jnp.where(handover, w_m2 / n, w_m2), e_var))
