"""The governor: lbw-jax's own control law, deciding on every step from the loss
and the step itself rather than from the sign of the mean gradient.

Four mechanisms, each one knob away from off (for ablations):

1. Calibrated warmup. The first ``warmup_steps`` finite steps only measure: the mean
   and variance of the loss and of the log gradient norm, and the size of the step.
   Every threshold below is a z-score against these statistics, not a fixed ratio.
2. Skip, don't cut (``use_skip``). A loss or gradient norm more than ``skip_z``
   standard deviations above its running mean is one pathological step: it is
   skipped exactly (Adam's moments never see it) and the scale is left alone. A
   second outlier in a row is a cluster: each further one also cuts the scale by
   ``cluster_cut``. After ``max_skips`` in a row the new level is accepted, so a
   lasting shift cannot stall training.
3. Trust region on the step (``use_trust``). An applied step whose norm exceeds
   ``trust_ratio`` times its running mean is shrunk to that bound for this step only.
   This is what catches a learning-rate spike before it does damage: the loss only
   shows it one step later.
4. Loss regression control with a remembered ceiling (``use_trend``). A fast EMA
   of the loss is compared with a slow one. When the fast one is above by more than
   ``regress_tolerance`` of the level and ``regress_z`` of its own noise, training is
   going backwards: the scale is cut by ``regress_cut`` per step until it is back
   within half that margin (hysteresis). The scale at the onset of each regression,
   times ``backoff``, becomes a ceiling: below it the scale recovers quickly
   (``recover_fast`` per step), above it it only probes (``recover`` per step), so the
   governor settles just under the largest scale that did not hurt, instead of
   cycling between full speed and its floor.

5. Step agreement (``use_agreement``). The cosine between this step's gradient and
   the optimizer's momentum (Adam's ``mu``, read from the inner state) tells whether
   steps still agree: at too large a learning rate each step overshoots and the new
   gradient turns against the momentum, so the cosine goes negative (measured on the
   stress model by bench/agreement_signal.py: about -0.004 at the best LR, -0.02 at 10x,
   -0.045 at 100x). When
   its EMA is more than ``agree_z`` of its own noise below ``agree_target``, the
   scale is cut by ``agree_cut`` per step; it recovers only while the steps agree
   (EMA above the target), with the same remembered ceiling as (4). This is the signal that says "too large a step" while
   the loss itself only plateaus. It needs an inner optimizer with a first moment
   named ``mu`` (the Adam family); otherwise pass ``use_agreement=False``.

The scale the guard applies is the control scale times the trust-region clamp;
the control scale lives in the governor's state. Everything is arrays and
``jnp.where``: it vmaps, shards and compiles into the step.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lbw_jax import _knobs, _stats
from lbw_jax import regimes
from lbw_jax.policies.base import Decision

# Why the governor's last intervention happened (``reason`` in the telemetry).
REASONS: tuple[str, ...] = ("none", "loss_spike", "grad_spike", "spike_cluster", "step_limit",
                            "regression", "accepted_shift", "disagreement")
(NONE, LOSS_SPIKE, GRAD_SPIKE, SPIKE_CLUSTER, STEP_LIMIT, REGRESSION,
 ACCEPTED_SHIFT, DISAGREEMENT) = range(len(REASONS))


class GovernorState(NamedTuple):
    """Signals and memory of the governor.

    Attributes:
      count: finite, not skipped steps measured so far.
      control: the persistent control scale in [min_scale, 1] (before the trust clamp).
      loss_mean, loss_var: running mean and variance of the loss (Welford during
        warmup, then EMAs with ``stat_decay``).
      grad_mean, grad_var: the same for the log of the global gradient norm.
      step_mean: running mean of the applied inner step's norm (at scale 1).
      fast, slow: fast and slow EMAs of the loss (both restart at the warmup mean).
      ceiling: the scale above which recovery only probes (set at the onset of a
        regression or a disagreement).
      regressing: whether the loss is in regression (with hysteresis).
      disagreeing: whether the steps disagree with the momentum (the last step).
      run: consecutive skipped steps.
      agree_mean, agree_var: running mean and variance of the gradient-momentum cosine.
      agreement: the last step's cosine.
      loss_z, grad_z: z-scores of the last step's loss and log gradient norm.
      step_ratio: the last inner step's norm over ``step_mean``.
      reason: code into ``REASONS`` of the last intervention.
      skips, cuts, limits: how many steps were skipped, cut by the regression
        control or by a cluster, and clamped by the trust region.
    """

    count: jax.Array
    control: jax.Array
    loss_mean: jax.Array
    loss_var: jax.Array
    grad_mean: jax.Array
    grad_var: jax.Array
    step_mean: jax.Array
    fast: jax.Array
    slow: jax.Array
    ceiling: jax.Array
    regressing: jax.Array
    disagreeing: jax.Array
    run: jax.Array
    agree_mean: jax.Array
    agree_var: jax.Array
    agreement: jax.Array
    loss_z: jax.Array
    grad_z: jax.Array
    step_ratio: jax.Array
    reason: jax.Array
    skips: jax.Array
    cuts: jax.Array
    limits: jax.Array

    def telemetry(self) -> dict[str, jax.Array]:
        """The fields, and ``trend``: (fast - slow) / |slow|, the loss's relative drift."""
        return {**self._asdict(), "trend": (self.fast - self.slow) / (jnp.abs(self.slow) + 1e-12)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Governor:
    min_scale: float = 0.01
    warmup_steps: int = 10
    stat_decay: float = 0.95
    use_skip: bool = True
    skip_z: float = 6.0
    max_skips: int = 24
    cluster_cut: float = 0.7
    use_trust: bool = True
    trust_ratio: float = 2.0
    trust_decay: float = 0.9
    trust_growth: float = 1.02
    use_trend: bool = True
    fast_decay: float = 0.9
    slow_decay: float = 0.98
    regress_tolerance: float = 0.005
    regress_z: float = 2.0
    regress_cut: float = 0.9
    backoff: float = 0.5
    recover: float = 1.005
    recover_fast: float = 1.05
    use_agreement: bool = True
    agree_decay: float = 0.95
    agree_target: float = 0.0
    agree_z: float = 2.0
    agree_cut: float = 0.93
    eps: float = 1e-12

    name = "governor"
    reads_inner_state = True

    def __post_init__(self):
        o, r, i, b = self.name, _knobs.real, _knobs.integer, _knobs.boolean
        checked = dict(
            min_scale=r(o, "min_scale", self.min_scale, low=0.0, high=1.0, low_open=True),
            warmup_steps=i(o, "warmup_steps", self.warmup_steps, low=2),
            stat_decay=r(o, "stat_decay", self.stat_decay, low=0.0, high=1.0, high_open=True),
            use_skip=b(o, "use_skip", self.use_skip),
            skip_z=r(o, "skip_z", self.skip_z, low=0.0, low_open=True),
            max_skips=i(o, "max_skips", self.max_skips, low=1),
            cluster_cut=r(o, "cluster_cut", self.cluster_cut, low=0.0, high=1.0, low_open=True),
            use_trust=b(o, "use_trust", self.use_trust),
            trust_ratio=r(o, "trust_ratio", self.trust_ratio, low=1.0),
            trust_decay=r(o, "trust_decay", self.trust_decay, low=0.0, high=1.0, high_open=True),
            trust_growth=r(o, "trust_growth", self.trust_growth, low=1.0),
            use_trend=b(o, "use_trend", self.use_trend),
            fast_decay=r(o, "fast_decay", self.fast_decay, low=0.0, high=1.0, high_open=True),
            slow_decay=r(o, "slow_decay", self.slow_decay, low=0.0, high=1.0, high_open=True),
            regress_tolerance=r(o, "regress_tolerance", self.regress_tolerance, low=0.0),
            regress_z=r(o, "regress_z", self.regress_z, low=0.0),
            regress_cut=r(o, "regress_cut", self.regress_cut, low=0.0, high=1.0, low_open=True),
            backoff=r(o, "backoff", self.backoff, low=0.0, high=1.0, low_open=True),
            recover=r(o, "recover", self.recover, low=1.0),
            recover_fast=r(o, "recover_fast", self.recover_fast, low=1.0),
            use_agreement=b(o, "use_agreement", self.use_agreement),
            agree_decay=r(o, "agree_decay", self.agree_decay, low=0.0, high=1.0, high_open=True),
            agree_target=r(o, "agree_target", self.agree_target, low=-1.0, high=1.0),
            agree_z=r(o, "agree_z", self.agree_z, low=0.0),
            agree_cut=r(o, "agree_cut", self.agree_cut, low=0.0, high=1.0, low_open=True),
            eps=r(o, "eps", self.eps, low=0.0, low_open=True),
        )
        _knobs.ordered(o, "fast_decay", checked["fast_decay"], "slow_decay", checked["slow_decay"])
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def init(self, params) -> GovernorState:
        del params
        f = lambda v=0.0: jnp.full([], v, jnp.float32)
        n = lambda: jnp.zeros([], jnp.int32)
        return GovernorState(
            count=n(), control=f(1.0), loss_mean=f(), loss_var=f(), grad_mean=f(), grad_var=f(),
            step_mean=f(), fast=f(), slow=f(), ceiling=f(1.0), regressing=jnp.array(False),
            disagreeing=jnp.array(False),
            run=n(), agree_mean=f(), agree_var=f(), agreement=f(), loss_z=f(), grad_z=f(), step_ratio=f(1.0), reason=n(),
            skips=n(), cuts=n(), limits=n())

    def _agreement(self, grads, inner_state):
        """Cosine between the gradient and the inner optimizer's momentum ``mu``."""
        if not self.use_agreement:
            return jnp.zeros([], jnp.float32)
        mu = optax.tree_utils.tree_get(inner_state, "mu")
        if mu is None:
            raise ValueError("governor: use_agreement reads the inner optimizer's first moment "
                             "'mu' (the Adam family); this inner optimizer has none. Pass "
                             "use_agreement=False.")
        dot = sum(jnp.sum(g.astype(jnp.float32) * m.astype(jnp.float32))
                  for g, m in zip(jax.tree.leaves(grads), jax.tree.leaves(mu)))
        norms = optax.tree.norm(grads).astype(jnp.float32) * optax.tree.norm(mu).astype(jnp.float32)
        return jnp.where(norms > 0, dot / (norms + self.eps), 0.0)

    def decide(self, grads, state: GovernorState, *, step, scale, regime, value, inner_state=None):
        del step, scale, regime  # the governor keeps its own control scale and count
        if value is None:
            raise ValueError("governor: the guard's update needs the loss, as value=loss.")
        cosine = self._agreement(grads, inner_state)
        loss = jnp.asarray(value, jnp.float32)
        log_norm = jnp.log(optax.tree.norm(grads).astype(jnp.float32) + self.eps)
        warming = state.count < self.warmup_steps
        n = (state.count + 1).astype(jnp.float32)

        # Outliers against the calibrated statistics (none during warmup).
        loss_z = (loss - state.loss_mean) / jnp.sqrt(state.loss_var + self.eps)
        grad_z = (log_norm - state.grad_mean) / jnp.sqrt(state.grad_var + self.eps)
        loss_out, grad_out = loss_z > self.skip_z, grad_z > self.skip_z
        outlier = self.use_skip & ~warming & (loss_out | grad_out)
        skip = outlier & (state.run < self.max_skips)
        cluster = skip & (state.run >= 1)

        # Statistics move only on steps that are applied.
        w_loss = _stats.welford(state.loss_mean, state.loss_var, loss, n)
        w_grad = _stats.welford(state.grad_mean, state.grad_var, log_norm, n)
        e_loss = _stats.ema(state.loss_mean, state.loss_var, loss, self.stat_decay)
        e_grad = _stats.ema(state.grad_mean, state.grad_var, log_norm, self.stat_decay)
        handover = state.count + 1 == self.warmup_steps  # sums of squares become variances
        pick = lambda w, e: (jnp.where(warming, w[0], e[0]),
                             jnp.where(warming, jnp.where(handover, w[1] / n, w[1]), e[1]))
        loss_mean, loss_var = pick(w_loss, e_loss)
        grad_mean, grad_var = pick(w_grad, e_grad)
        agree_mean, agree_var = pick(_stats.welford(state.agree_mean, state.agree_var, cosine, n),
                                     _stats.ema(state.agree_mean, state.agree_var, cosine, self.agree_decay))
        # Is the EMA of the cosine clearly below the target, or above it?
        agree_noise = jnp.sqrt(agree_var * (1 - self.agree_decay) / (1 + self.agree_decay))
        agree_z = (agree_mean - self.agree_target) / (agree_noise + self.eps)
        disagreeing = self.use_agreement & ~warming & (agree_z < -self.agree_z)
        agreeing = (agree_z > 0) if self.use_agreement else jnp.array(True)

        first = state.count == 0
        fast = jnp.where(first, loss, self.fast_decay * state.fast + (1 - self.fast_decay) * loss)
        slow = jnp.where(first, loss, self.slow_decay * state.slow + (1 - self.slow_decay) * loss)
        fast = jnp.where(handover, loss_mean, fast)   # both EMAs restart from the calibrated mean
        slow = jnp.where(handover, loss_mean, slow)
        # The margin: a fraction of the level, and clear of the fast EMA's own noise.
        noise = jnp.sqrt(loss_var * (1 - self.fast_decay) / (1 + self.fast_decay))
        margin = jnp.maximum(self.regress_tolerance * jnp.abs(slow), self.regress_z * noise)
        gap = fast - slow
        regressing = self.use_trend & ~warming & jnp.where(state.regressing, gap > 0.5 * margin,
                                                           gap > margin)
        onset = (regressing & ~state.regressing) | (disagreeing & ~state.disagreeing)
        ceiling = jnp.where(onset, state.control * self.backoff, state.ceiling)
        below = state.control < ceiling
        recovered = jnp.where(below, jnp.minimum(ceiling, state.control * self.recover_fast),
                              state.control * self.recover)
        control = jnp.where(regressing, state.control * self.regress_cut,
                            jnp.where(disagreeing, state.control * self.agree_cut,
                                      jnp.where(agreeing, recovered, state.control)))
        control = jnp.where(warming, state.control, control)
        control = jnp.where(skip, jnp.where(cluster, state.control * self.cluster_cut, state.control),
                            control)
        control = jnp.clip(control, self.min_scale, 1.0).astype(jnp.float32)
        ceiling = jnp.clip(jnp.where(regressing | skip | disagreeing, ceiling,
                                     jnp.maximum(ceiling, control)),
                           self.min_scale, 1.0)

        accepted_shift = outlier & ~skip
        reason = jnp.select(
            [cluster, skip & loss_out, skip, accepted_shift, regressing, disagreeing],
            [SPIKE_CLUSTER, LOSS_SPIKE, GRAD_SPIKE, ACCEPTED_SHIFT, REGRESSION, DISAGREEMENT],
            state.reason)
        regime = jnp.select([cluster, skip, regressing, disagreeing],
                            [regimes.SPIKE_CLUSTER, regimes.SKIP, regimes.REGRESSION,
                             regimes.OSCILLATION], regimes.CALM)

        applied = GovernorState(
            count=state.count + 1, control=control, loss_mean=loss_mean, loss_var=loss_var,
            grad_mean=grad_mean, grad_var=grad_var, step_mean=state.step_mean,
            fast=fast, slow=slow, ceiling=ceiling.astype(jnp.float32), regressing=regressing,
            disagreeing=disagreeing,
            run=jnp.zeros([], jnp.int32), agree_mean=agree_mean, agree_var=agree_var,
            agreement=cosine,
            loss_z=loss_z, grad_z=grad_z, step_ratio=state.step_ratio,
            reason=reason.astype(jnp.int32), skips=state.skips,
            cuts=state.cuts + ((regressing | disagreeing) & (control < state.control)).astype(jnp.int32),
            limits=state.limits)
        skipped = state._replace(
            control=control, run=state.run + 1, loss_z=loss_z, grad_z=grad_z, agreement=cosine,
            reason=reason.astype(jnp.int32), skips=state.skips + 1,
            cuts=state.cuts + cluster.astype(jnp.int32))
        new_state = jax.tree.map(lambda a, b: jnp.where(skip, a, b), skipped, applied)
        return Decision(control, regime.astype(jnp.int32), jnp.array(True), skip), new_state

    def limit(self, updates, state: GovernorState, *, scale, regime):
        """The trust region: this step's norm may be at most ``trust_ratio`` times
        the running mean of past steps (measured at scale 1, after warmup)."""
        size = optax.tree.norm(updates).astype(jnp.float32)
        warming = state.count <= self.warmup_steps  # count already includes this step
        bound = self.trust_ratio * state.step_mean
        clamp = self.use_trust & ~warming & (size > bound)
        factor = jnp.where(clamp, bound / (size + self.eps), 1.0)
        # A clamped step feeds the mean only a slow growth: a spike does not inflate the
        # mean it is judged by, while a lasting change of step size is accepted in time.
        kept = jnp.where(clamp, self.trust_growth * state.step_mean, size)
        first = state.count <= 1
        step_mean = jnp.where(first, size,
                              self.trust_decay * state.step_mean + (1 - self.trust_decay) * kept)
        new_state = state._replace(
            step_mean=step_mean,
            step_ratio=size / (state.step_mean + self.eps),
            limits=state.limits + clamp.astype(jnp.int32),
            reason=jnp.where(clamp, STEP_LIMIT, state.reason).astype(jnp.int32))
        regime = jnp.where(clamp & (regime == regimes.CALM), regimes.STEP_LIMIT, regime)
        return (scale * factor).astype(jnp.float32), regime.astype(jnp.int32), new_state


def governor(**knobs) -> Governor:
    """lbw-jax's own control law for ``lbw_guard``; needs ``value=loss`` in ``update``.

    Knobs (defaults): min_scale 0.01, warmup_steps 10, stat_decay 0.95; use_skip
    True, skip_z 6, max_skips 24, cluster_cut 0.7; use_trust True, trust_ratio 2,
    trust_decay 0.9, trust_growth 1.02; use_trend True, fast_decay 0.9, slow_decay
    0.98, regress_tolerance 0.005, regress_z 2, regress_cut 0.9, backoff 0.5,
    recover 1.005, recover_fast 1.05; use_agreement True, agree_decay 0.95,
    agree_target 0, agree_z 2, agree_cut 0.93; eps 1e-12. See the module docstring for what each does.
    A bad value raises ``ValueError`` naming the knob.
    """
    return _knobs.construct(Governor, knobs)
