"""Plain-Python models of the two reference laws, written from their published
description and independent of the library, for step-for-step parity tests.

Regime names follow each law's ``Regime`` (``lbw_jax.regime_name``); a step with no collection returns None.
"""

import numpy as np


class ReflexModel:
    def __init__(self, stress_threshold=1.1, spike_threshold=1.5, min_scale=0.1,
                 recovery=0.01, use_max=True, stats_every=10, ema_decay=0.85):
        self.k = dict(stress=stress_threshold, spike=spike_threshold, min=min_scale,
                      rec=recovery, use_max=use_max, every=stats_every, decay=ema_decay)
        self.t = 0
        self.scale = 1.0
        self.ema = None
        self.prev_mean = None
        self.ratio = None

    def sense(self, leaves):
        ms = [float(np.mean(np.square(g.astype(np.float64)))) for g in leaves]
        grad_ms = max(ms) if self.k["use_max"] else sum(ms) / len(ms)
        total = sum(float(np.sum(g.astype(np.float64))) for g in leaves)
        signed_mean = total / sum(g.size for g in leaves)
        if self.ema is None:
            self.ema = grad_ms
        else:
            self.ema = self.k["decay"] * self.ema + (1 - self.k["decay"]) * grad_ms
        self.ratio = grad_ms / (self.ema + 1e-12)
        prev, self.prev_mean = self.prev_mean, signed_mean
        flip = prev is not None and ((prev > 0 > signed_mean) or (prev < 0 < signed_mean))
        return self.ratio, flip

    def step(self, leaves):
        """Feeds one gradient (a list of arrays); returns (scale, regime or None)."""
        self.t += 1
        if not (self.t == 1 or self.t % self.k["every"] == 0):
            return self.scale, None
        ratio, flip = self.sense(leaves)
        regime = self.decide(ratio, flip)
        return self.scale, regime

    def decide(self, ratio, flip):
        k = self.k
        if ratio > k["spike"]:
            self.scale = max(k["min"], 0.7 * self.scale)
            return "spike"
        if ratio > k["stress"] or flip:
            self.scale = max(k["min"], 0.85 * self.scale)
            return "oscillation"
        self.scale = min(1.0, self.scale + k["rec"])
        return "calm"


class ReflexProModel(ReflexModel):
    def __init__(self, window=50, **knobs):
        super().__init__(**knobs)
        self.window = window
        self.spikes = []
        self.ratios = []
        self.spike_streak = 0
        self.calm_streak = 0

    def decide(self, ratio, flip):
        k = self.k
        is_spike = ratio > k["spike"]
        is_stress = not is_spike and (ratio > k["stress"] or flip)
        self.spikes = (self.spikes + [is_spike])[-self.window:]
        self.ratios = (self.ratios + [ratio])[-self.window:]
        if is_spike:
            self.spike_streak, self.calm_streak = self.spike_streak + 1, 0
        elif is_stress:
            self.spike_streak, self.calm_streak = 0, 0
        else:
            self.spike_streak, self.calm_streak = 0, self.calm_streak + 1
        spike_count = sum(self.spikes)
        n = len(self.ratios)
        variance = max(0.0, sum(r * r for r in self.ratios) / n - (sum(self.ratios) / n) ** 2)
        oscillating = spike_count >= 3
        unstable = (variance > 0.5 and n >= 20) or self.spike_streak >= 2
        old = self.scale
        if oscillating or unstable:
            self.scale = max(k["min"] * 0.5, min(1.0, k["min"] * 0.5))
            return "nuclear"
        if spike_count >= 2:
            new, regime = max(k["min"], k["min"] * 0.8), "spike_cluster"
        elif is_spike:
            new, regime = max(k["min"], 0.65 * old), "spike"
        elif is_stress:
            new, regime = max(k["min"], 0.80 * old), "oscillation"
        elif self.calm_streak >= 10:
            new, regime = min(1.0, old + 4 * k["rec"]), "calm"
        elif self.calm_streak >= 5:
            new, regime = min(1.0, old + 2 * k["rec"]), "calm"
        else:
            new, regime = min(1.0, old + k["rec"]), "calm"
        new = min(old + 0.3, max(old - 0.3, new))
        self.scale = min(1.0, max(k["min"] * 0.5, new))
        return regime
