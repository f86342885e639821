"""The governor's rules restated in plain Python floats, one step at a time, for
the step-by-step replay in test_governor.py. Written from the docstring of
lbw_jax/policies/governor.py, not from its code."""

import math

REASONS = ("none", "loss_spike", "grad_spike", "spike_cluster", "step_limit", "regression",
           "accepted_shift", "disagreement")


class GovernorModel:
    def __init__(self, min_scale=0.01, warmup_steps=10, stat_decay=0.95, use_skip=True, skip_z=6.0,
                 max_skips=24, cluster_cut=0.7, use_trust=True, trust_ratio=2.0, trust_decay=0.9,
                 trust_growth=1.02, use_trend=True, fast_decay=0.9, slow_decay=0.98,
                 regress_tolerance=0.005, regress_z=2.0, regress_cut=0.9, backoff=0.5,
                 recover=1.005, recover_fast=1.05, use_agreement=True, agree_decay=0.95,
                 agree_target=0.0, agree_z=2.0, agree_cut=0.93, eps=1e-12):
        self.__dict__.update(locals())
        del self.__dict__["self"]
        self.n = 0
        self.control = 1.0
        self.losses, self.norms, self.cosines = [], [], []   # warmup samples
        self.agree_mean = self.agree_var = 0.0
        self.loss_mean = self.loss_var = self.grad_mean = self.grad_var = 0.0
        self.fast = self.slow = 0.0
        self.ceiling = 1.0
        self.regressing = self.disagreeing = False
        self.run = 0
        self.step_mean = 0.0
        self.reason = "none"

    def step(self, loss, grad_norm, step_norm, cosine=0.0):
        """One finite step: returns (skipped, applied scale, regime). ``cosine`` is the
        cosine between the gradient and the optimizer's momentum before this step."""
        log_norm = math.log(grad_norm + self.eps)
        warming = self.n < self.warmup_steps
        skip = cluster = outlier = False
        loss_out = False
        if not warming and self.use_skip:
            loss_z = (loss - self.loss_mean) / math.sqrt(self.loss_var + self.eps)
            grad_z = (log_norm - self.grad_mean) / math.sqrt(self.grad_var + self.eps)
            loss_out = loss_z > self.skip_z
            outlier = loss_out or grad_z > self.skip_z
            skip = outlier and self.run < self.max_skips
            cluster = skip and self.run >= 1
        if skip:
            if cluster:
                self.control = max(self.min_scale, self.control * self.cluster_cut)
            self.reason = "spike_cluster" if cluster else ("loss_spike" if loss_out else "grad_spike")
            self.run += 1
            return True, self.control, "spike_cluster" if cluster else "skip"

        # Applied: statistics, trend and control.
        self.n += 1
        if warming:
            self.losses.append(loss)
            self.norms.append(log_norm)
            self.cosines.append(cosine)
            mean = lambda xs: sum(xs) / len(xs)
            self.loss_mean, self.grad_mean = mean(self.losses), mean(self.norms)
            self.agree_mean = mean(self.cosines)
            if self.n == self.warmup_steps:
                self.loss_var = sum((x - self.loss_mean) ** 2 for x in self.losses) / self.n
                self.grad_var = sum((x - self.grad_mean) ** 2 for x in self.norms) / self.n
                self.agree_var = sum((x - self.agree_mean) ** 2 for x in self.cosines) / self.n
        else:
            d = self.stat_decay
            self.loss_mean = d * self.loss_mean + (1 - d) * loss
            self.loss_var = d * self.loss_var + (1 - d) * (loss - self.loss_mean) ** 2
            self.grad_mean = d * self.grad_mean + (1 - d) * log_norm
            self.grad_var = d * self.grad_var + (1 - d) * (log_norm - self.grad_mean) ** 2
            a = self.agree_decay
            self.agree_mean = a * self.agree_mean + (1 - a) * cosine
            self.agree_var = a * self.agree_var + (1 - a) * (cosine - self.agree_mean) ** 2
        disagreeing, agreeing = False, True
        if self.use_agreement:
            a = self.agree_decay
            noise = math.sqrt(self.agree_var * (1 - a) / (1 + a))
            z = (self.agree_mean - self.agree_target) / (noise + self.eps)
            disagreeing = not warming and z < -self.agree_z
            agreeing = z > 0
        if self.n == 1:
            self.fast = self.slow = loss
        else:
            self.fast = self.fast_decay * self.fast + (1 - self.fast_decay) * loss
            self.slow = self.slow_decay * self.slow + (1 - self.slow_decay) * loss
        if self.n == self.warmup_steps:
            self.fast = self.slow = self.loss_mean
        noise = math.sqrt(self.loss_var * (1 - self.fast_decay) / (1 + self.fast_decay))
        margin = max(self.regress_tolerance * abs(self.slow), self.regress_z * noise)
        gap = self.fast - self.slow
        regressing = (self.use_trend and not warming
                      and (gap > 0.5 * margin if self.regressing else gap > margin))
        if (regressing and not self.regressing) or (disagreeing and not self.disagreeing):
            self.ceiling = self.control * self.backoff    # remember where it hurt
        self.regressing, self.disagreeing = regressing, disagreeing
        if outlier:
            self.reason = "accepted_shift"
        elif regressing:
            self.reason = "regression"
        elif disagreeing:
            self.reason = "disagreement"
        if not warming:
            if regressing:
                self.control *= self.regress_cut
            elif disagreeing:
                self.control *= self.agree_cut
            elif not agreeing:
                pass                                      # hold
            elif self.control < self.ceiling:
                self.control = min(self.ceiling, self.control * self.recover_fast)
            else:
                self.control *= self.recover
            self.control = min(1.0, max(self.min_scale, self.control))
        if not (regressing or disagreeing):
            self.ceiling = max(self.ceiling, self.control)
        self.ceiling = min(1.0, max(self.min_scale, self.ceiling))
        self.run = 0
        regime = "regression" if regressing else ("oscillation" if disagreeing else "calm")

        # Trust region on the applied step (measured at scale 1).
        scale = self.control
        if self.n == 1:
            self.step_mean = step_norm
        else:
            bound = self.trust_ratio * self.step_mean
            clamp = self.use_trust and self.n > self.warmup_steps and step_norm > bound
            if clamp:
                scale = self.control * bound / step_norm
                self.reason = "step_limit"
                regime = "step_limit" if regime == "calm" else regime
            kept = self.trust_growth * self.step_mean if clamp else step_norm
            self.step_mean = self.trust_decay * self.step_mean + (1 - self.trust_decay) * kept
        return False, scale, regime
