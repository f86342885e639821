"""The governor's rules restated in plain Python floats, one step at a time, for
the step-by-step replay in test_governor.py. Written from the docstring of
lbw_jax/policies/governor.py, not from its code. Its defaults are the library's
(test_governor.py checks that they stay equal), the overshoot brake included."""

import math

REASONS = ("none", "loss_spike", "grad_spike", "step_limit", "harm", "accepted_shift", "overshoot", "room")

DEFAULTS = dict(min_scale=0.01, use_skip=True, warmup_steps=10, stat_decay=0.95, min_noise=0.01,
                grad_noise=0.25, skip_z=6.0, skip_widen=1.15, max_skips=20,
                use_trust=True, trust_ratio=2.0, trust_from=11, trust_decay=0.0, trust_growth=1.02,
                use_harm=True, fast_decay=0.8, forget=0.1, tolerance=0.03, cut_power=1.0,
                max_cut=0.5, level_cuts=False, recover=1.02, recover_band=0.5,
                use_overshoot=True, over_decay=0.8, brake_above=1.3, over_gain=2.0, recover_below=1.1,
                over_clip=4.0, use_room=True, room_cap=True, room_fraction=0.25, room_decay=0.5, probe_every=25,
                probe_burst=10, probe_held=25, burst_on_cap=True, eps=1e-12)
ROOM_CAP = 1e6


class GovernorModel:
    def __init__(self, **knobs):
        unknown = set(knobs) - set(DEFAULTS)
        assert not unknown, unknown
        self.__dict__.update({**DEFAULTS, **knobs})
        self.n = 0                      # applied (not skipped) finite steps
        self.scale = 1.0
        self.losses, self.norms = [], []
        self.loss_mean = self.loss_var = self.grad_mean = self.grad_var = 0.0
        self.fast = self.best = 0.0
        self.step_ref = 0.0
        self.run = 0
        self.reason = "none"
        self.anchor = 0.0               # the scale when the current stretch of harm began
        self.prev, self.prev_slope = None, 0.0   # the last applied step at scale 1, and g . u
        self.over_ema = 1.0
        self.brakes = 0                 # applied steps whose scale the brake cut
        self.limits = 0                 # applied steps the trust region clamped
        # Mechanism 5, the room probe: the pooled log critical step length, the readings, the
        # probes left on every step, the steps since the last probe.
        self.room_len, self.probes, self.burst, self.since_probe = 0.0, 0, self.probe_burst, 0
        self.room, self.room_cuts, self.level, self.peak = 0.0, 0, 1.0, 0.0

    def step(self, loss, grad_norm, step_norm, grad_vec=None, step_vec=None, probe=None):
        """One finite update: returns (skipped, applied multiplier, regime). ``step_norm``
        is the inner optimizer's step at scale 1; with ``use_overshoot``, ``grad_vec`` and
        ``step_vec`` are the gradient and that step as lists of floats. ``probe(a)``: the
        loss at a times that step (the room probe's forward pass; None: no value_fn)."""
        if self.use_overshoot and (grad_vec is None or step_vec is None):
            raise TypeError("use_overshoot: pass grad_vec and step_vec (the brake reads them)")
        log_norm = math.log(grad_norm + self.eps)
        warming = self.n < self.warmup_steps
        loss_sd = max(math.sqrt(self.loss_var), self.min_noise * abs(self.loss_mean))
        grad_sd = max(math.sqrt(self.grad_var), self.grad_noise)
        loss_out = (loss - self.loss_mean) / (loss_sd + self.eps) > self.skip_z
        grad_out = (log_norm - self.grad_mean) / (grad_sd + self.eps) > self.skip_z
        outlier = self.use_skip and not warming and (loss_out or grad_out)
        if outlier and self.run < self.max_skips:
            # One pathological step: skipped exactly, nothing learnt from it, scale kept;
            # the variance (as floored) of each signal that was out grows.
            if loss_out:
                self.loss_var = loss_sd ** 2 * self.skip_widen
            if grad_out:
                self.grad_var = grad_sd ** 2 * self.skip_widen
            self.run += 1
            self.reason = "loss_spike" if loss_out else "grad_spike"
            if self.use_room:   # a skip starts a burst of probes
                self.burst = max(self.burst, self.probe_burst)
            return True, self.scale, "skip"
        self.run = 0

        # Applied: statistics (Welford while calibrating, then EMAs).
        self.n += 1
        if warming:
            self.losses.append(loss)
            self.norms.append(log_norm)
            self.loss_mean = sum(self.losses) / self.n
            self.grad_mean = sum(self.norms) / self.n
            if self.n == self.warmup_steps:
                self.loss_var = sum((x - self.loss_mean) ** 2 for x in self.losses) / self.n
                self.grad_var = sum((x - self.grad_mean) ** 2 for x in self.norms) / self.n
        else:
            d = self.stat_decay
            self.loss_mean = d * self.loss_mean + (1 - d) * loss
            self.loss_var = d * self.loss_var + (1 - d) * (loss - self.loss_mean) ** 2
            self.grad_mean = d * self.grad_mean + (1 - d) * log_norm
            self.grad_var = d * self.grad_var + (1 - d) * (log_norm - self.grad_mean) ** 2

        # Harm: the fast loss average above its recent best by more than the tolerance.
        if self.n == 1:
            self.fast = self.best = loss
        else:
            self.fast = self.fast_decay * self.fast + (1 - self.fast_decay) * loss
            self.best = min(self.fast, self.best + self.forget * (self.fast - self.best))
        excess = (self.fast - self.best) / (abs(self.best) + self.eps)
        # Harm control acts from the second applied step on; it needs no calibration.
        harm = self.use_harm and self.n > 1 and excess > self.tolerance
        # Overshoot: 1 - g . u_prev / g_prev . u_prev, read only after a downhill step.
        brake, stable = False, True
        if self.use_overshoot:
            if self.prev_slope < 0:
                reading = 1.0 - sum(g * u for g, u in zip(grad_vec, self.prev)) / self.prev_slope
                reading = min(self.over_clip, max(-self.over_clip, reading))
                self.over_ema = self.over_decay * self.over_ema + (1 - self.over_decay) * reading
            brake, stable = self.over_ema > self.brake_above, self.over_ema < self.recover_below
        if outlier:
            self.reason = "accepted_shift"
        elif harm:
            self.reason = "harm"
        elif brake:
            self.reason = "overshoot"
        before_harm = self.scale
        if self.n > 1:
            if harm and self.anchor == 0.0:
                self.anchor = self.scale
            elif not harm:
                self.anchor = 0.0
            if harm and self.level_cuts:
                # To the level the excess sets, from the scale where this harm began; never up.
                self.scale = min(self.scale, self.anchor * (excess / self.tolerance) ** -self.cut_power)
            elif harm:
                self.scale *= max(self.max_cut, (excess / self.tolerance) ** -self.cut_power)
            if brake:   # the deeper of the two cuts, each from the scale before this step
                brake_cut = max(self.max_cut, (self.brake_above / self.over_ema) ** self.over_gain)
                self.scale = min(self.scale, before_harm * brake_cut)
            if not harm and not brake and excess <= self.recover_band * self.tolerance and stable:
                self.scale *= self.recover
            self.scale = min(1.0, max(self.min_scale, self.scale))
            self.brakes += brake and self.scale < before_harm
        regime = "harm" if harm else ("overshoot" if brake else "calm")
        if self.use_room and (harm or brake):
            self.burst = max(self.burst, self.probe_burst)
        gate = self.n > 1 and excess <= self.recover_band * self.tolerance and stable

        # Trust region on the step, measured at scale 1.
        multiplier = self.scale
        if self.n == 1:
            self.step_ref = step_norm
        else:
            bound = self.trust_ratio * self.step_ref
            # From applied step trust_from on (self.n counts this step).
            clamp = self.use_trust and self.n >= self.trust_from and self.step_ref > 0 and step_norm > bound
            if clamp:
                multiplier = self.scale * bound / step_norm
                self.reason = "step_limit"
                self.limits += 1
                regime = "step_limit" if regime == "calm" else regime
            kept = self.trust_growth * self.step_ref if clamp else step_norm
            self.step_ref = self.trust_decay * self.step_ref + (1 - self.trust_decay) * kept
        if self.use_overshoot:   # the step at scale 1 and its slope, for the next reading
            self.prev = list(step_vec)
            self.prev_slope = sum(g * u for g, u in zip(grad_vec, step_vec))
        if self.use_room and probe is not None:
            multiplier, regime = self._room(loss, step_norm, grad_vec, step_vec, probe, multiplier,
                                            before_harm, regime, gate)
        return False, multiplier, regime

    def _room(self, loss, step_norm, grad_vec, step_vec, probe, multiplier, held, regime, gate):
        """Mechanism 5 after the trust region: probe when due, then the scale follows the level."""
        decided = self.scale
        every = self.probe_held if decided < 1.0 else self.probe_every
        if self.burst > 0 or self.since_probe + 1 >= every or self.probes == 0:
            # At the last critical step, within [the multiplier in use, 1] (before any: the multiplier).
            last = math.exp(self.room_len) / (step_norm + self.eps)
            at = max(multiplier, min(last, 1.0) if self.probes else self.min_scale)
            s = sum(g * u for g, u in zip(grad_vec, step_vec))
            curv = 2.0 * (probe(at) - loss - at * s) / (at * at)
            if s < 0 and math.isfinite(curv):   # a reading: the parabola's second root
                self.room = min(-2.0 * s / curv, ROOM_CAP) if curv > 0 else ROOM_CAP
                log_len = math.log(max(self.room * step_norm, self.eps))
                d = self.room_decay
                self.room_len = log_len if self.probes == 0 else d * self.room_len + (1 - d) * log_len
                self.probes += 1
            self.burst, self.since_probe = max(self.burst - 1, 0), 0
        else:
            self.since_probe += 1
        # The level acts only from the first step whose proposal is past its pooled critical
        # step (peak > 0 marks it); the peak is the largest step let through whole since then.
        if self.peak > 0 and multiplier >= self.scale:
            self.peak = max(self.peak, step_norm)
        elif self.peak == 0 and self.probes and multiplier >= self.scale and \
                self.room_len < math.log(max(step_norm, self.eps)):
            self.peak = step_norm
        if self.peak == 0:
            self.level = 1.0
            return multiplier, regime
        # Against the schedule's peak step, so a decaying schedule keeps its shape.
        level = min(1.0, max(self.min_scale, self.room_fraction * math.exp(self.room_len) / (self.peak + self.eps)))
        cut = regime in ("harm", "overshoot")
        self.level = level
        if not self.room_cap:   # evidence only: cuts stop at the level, recoveries jump to it
            if cut:
                self.scale = max(decided, min(level, held))
            elif gate:
                self.scale = max(decided, level)
            return multiplier, regime
        if cut:    # lands at the level, at most one max_cut below it
            self.scale = min(level, max(decided, self.max_cut * min(held, level)))
        elif gate:  # straight to the level
            self.scale = level
        else:
            self.scale = min(decided, level)
        if level < multiplier and not cut:   # a cut of its own: a burst of probes follows
            regime, self.reason = "room", "room"
            self.room_cuts += 1
            if self.burst_on_cap:
                self.burst = self.probe_burst
        return min(multiplier, level), regime
