"""The room left along the step: the critical step of the loss along the update (governor v4).

Along the update u proposed at scale 1, the loss of the step's own batch is locally a parabola
(Mutschler & Zell, PAL, 2020):

    f(a) = f(0) + a s + c a^2 / 2,     s = g . u (the train step already has it), c = u' H u.

One forward pass at a probe point ``at`` gives c = 2 (f(at) - f(0) - at s) / at^2, and the
parabola's second root, the *critical multiplier*

    a_c = -2 s / c,

is the smallest multiple of u that no longer lowers the loss: Kalra et al.'s (2026) critical
step eta_c along the update, in units of the proposal, without a Hessian-vector product. The
greedy optimum is a_c / 2; Roulet et al. (2024) show that a tuner taking it loses to a constant
LR, while holding the step at a fixed fraction of the edge wins: the governor holds its
multiplier at ``room_fraction`` x a_c (docs/signals.md, part (d), measured the fraction).

A reading exists only for a descent direction (s < 0). A parabola that curves down (c <= 0)
has no second root: the room is unbounded there, so the reading is ``ROOM_CAP``. ``critical3``
fits the same parabola from three forward passes (0, at, 2 at), for a batch whose gradient the
step does not have (the study's held batch).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lbw_jax.policies.governor_state import GovernorReason, GovernorRegime, relative_excess
from lbw_jax.policies.overshoot import slope

ROOM_CAP = 1e6   # a reading where the loss curves down along u: no finite critical step


def moved(params, updates, at):
    """``params + at * updates``, each leaf in its parameter's dtype: the probed point. A
    temporary inside the probe's branch, so XLA can reuse its memory after the forward."""
    at = jnp.asarray(at, jnp.float32)
    return jax.tree.map(lambda p, u: (p.astype(jnp.float32) + at * u.astype(jnp.float32)).astype(p.dtype),
                        params, updates)


def critical(value, slope_, probed, at, eps: float = 1e-12) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The critical multiplier a_c of the parabola through f(0) = ``value`` with slope ``slope_``
    and f(``at``) = ``probed``; its curvature c; whether it is a reading (a descent direction
    and finite values). ``ROOM_CAP`` where the parabola curves down."""
    value, slope_, probed = (jnp.asarray(x, jnp.float32) for x in (value, slope_, probed))
    at = jnp.asarray(at, jnp.float32)
    curv = 2.0 * (probed - value - at * slope_) / jnp.maximum(at * at, eps)
    valid = (slope_ < 0) & jnp.isfinite(curv) & (at > 0)
    crit = jnp.where(curv > 0, -2.0 * slope_ / jnp.where(curv > 0, curv, 1.0), ROOM_CAP)
    return jnp.where(valid, jnp.minimum(crit, ROOM_CAP), 0.0).astype(jnp.float32), curv, valid


def critical3(f0, f1, f2, at) -> tuple[jax.Array, jax.Array, jax.Array]:
    """a_c from the loss at 0, ``at`` and 2 ``at`` along u (a batch without its gradient): the
    parabola's slope s = (4 f1 - 3 f0 - f2) / (2 at), then as ``critical``."""
    s = (4.0 * f1 - 3.0 * f0 - f2) / (2.0 * at)
    return critical(f0, s, f1, at)


def probe(value_fn: Callable, params, updates, value, slope_, at) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One forward pass of ``value_fn`` at ``params + at * updates``: ``critical``'s reading
    along ``updates`` (the proposal at scale 1), with ``value`` = f(params) and ``slope_`` its
    gradient's inner product with ``updates``."""
    return critical(value, slope_, value_fn(moved(params, updates, at)), at)



def _level(policy, room_len, peak):
    """The room level: ``room_fraction`` x the pooled critical step length over the largest step
    the schedule has proposed (``peak``), in [min_scale, 1] (the user's LR stays the ceiling).

    Against the peak, not this step: the critical step stays about level while a schedule decays
    (docs/signals.md, part (d)), so a level read against each step would undo the decay the user
    asked for; read against the peak it is a constant multiple of the user's schedule, as a
    tuned LR is."""
    return jnp.clip(policy.room_fraction * jnp.exp(room_len) / (peak + policy.eps), policy.min_scale, 1.0)


def control(policy, updates, state, grads, params, value, value_fn, factor):
    """Mechanism 5 of the governor (``use_room``), on an applied step after the trust region.

    Probes when due (``lax.cond``, no host sync): on each of the ``probe_burst`` steps after
    the start, a cut or a skip (the level's own cuts too, with ``burst_on_cap``); every
    ``probe_held`` applied steps while the scale is below 1; every ``probe_every`` applied steps
    otherwise. A reading a_c along the proposal ``updates``
    (at scale 1, probed at the last critical step, within [the multiplier about to be applied,
    1]) is pooled as the log of the critical step's length a_c |u|. The level acts from the
    first step whose proposal (let through whole by the trust region) is longer than that
    length, past its edge; until then the law is v3.0's. Then L = room_fraction x length / peak,
    in [min_scale, 1], where peak is the largest |u| the schedule has proposed since (``_level``
    says why); ``follow`` sets the scale from it. Returns the factor for this step and the state."""
    norm = optax.tree.norm(updates).astype(jnp.float32)
    # g . u: the brake has just taken it (limit stores it as prev_slope); without the brake, here.
    s = state.prev_slope if policy.use_overshoot else slope(grads, updates)
    # The probe point: the last critical step (where the parabola's curvature term is as large
    # as its slope term, so float32 rounding is smallest against it), at least the multiplier in
    # use and at most 1, the user's step; before any reading, the multiplier in use.
    last = jnp.exp(state.room_len) / (norm + policy.eps)
    at = jnp.maximum(state.scale * factor, jnp.where(state.probes > 0, jnp.minimum(last, 1.0), policy.min_scale))
    # Often where things change (the burst), every probe_held steps while the step is held below
    # the user's, every probe_every at full speed. Both default to 25: a probe every 5 held steps
    # ended every setting measured where 25 did (docs/governor.md).
    every = jnp.where(state.scale < 1.0, policy.probe_held, policy.probe_every)
    due = (state.burst > 0) | (state.since_probe + 1 >= every) | (state.probes == 0)
    none = (jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32), jnp.zeros([], jnp.bool_))
    crit, _, valid = jax.lax.cond(due, lambda: probe(value_fn, params, updates, value, s, at), lambda: none)
    read = due & valid
    log_len = jnp.log(jnp.maximum(crit * norm, policy.eps))
    d = policy.room_decay
    room_len = jnp.where(read, jnp.where(state.probes == 0, log_len, d * state.room_len + (1 - d) * log_len),
                         state.room_len)
    probes = state.probes + read.astype(jnp.int32)
    # Past the edge: the pooled critical step is shorter than the proposal, so the user's step
    # would raise its own batch's loss. Only from then on does the level act (``peak`` > 0 marks
    # it): a run whose proposals stay within their critical step keeps v3.0's law exactly. A model
    # trained from scratch runs there (the edge of stability: it sharpens to meet its step, and
    # Adam's proposal shrinks well below its first steps', so a level read against those would
    # hold it far below its healthy step); a fine-tune at a high LR proposes past it.
    # (A proposal the trust region clamped is a spike, not the schedule: it is the trust region's.)
    past = (probes > 0) & (factor >= 1.0) & (room_len < jnp.log(jnp.maximum(norm, policy.eps)))
    has = (state.peak > 0) | past
    # The schedule's peak step since then: the largest proposal the trust region let through
    # whole (a clamped LR spike does not raise it).
    peak = jnp.where(has & (factor >= 1.0), jnp.maximum(state.peak, norm), state.peak)
    level = jnp.where(has, _level(policy, room_len, peak), 1.0)
    scale, capped, below = follow(policy, state, level, factor)
    scale = jnp.where(has, scale, state.scale).astype(jnp.float32)
    below = has & below
    new_state = state._replace(
        scale=scale, room=jnp.where(read, crit, state.room), room_len=room_len.astype(jnp.float32),
        room_level=level.astype(jnp.float32), probes=probes, peak=peak.astype(jnp.float32),
        # A cut of the room's own starts a burst only with burst_on_cap: capping each recovery's
        # proposal (x recover a step) or a lower reading then restarts it, so the bursts sustain
        # themselves (most steps probed at 10-30x the tuned LR, docs/governor.md).
        burst=jnp.where(below & policy.burst_on_cap, policy.probe_burst,
                        jnp.where(due, jnp.maximum(state.burst - 1, 0), state.burst)),
        since_probe=jnp.where(due, 0, state.since_probe + 1), room_cuts=state.room_cuts + below.astype(jnp.int32),
        regime=jnp.where(below, GovernorRegime.ROOM, state.regime).astype(jnp.int32),
        reason=jnp.where(below, GovernorReason.ROOM, state.reason).astype(jnp.int32))
    return jnp.where(has, capped, factor).astype(jnp.float32), new_state


def follow(policy, state, level, factor):
    """The scale after this step given the level L, this step's factor, and whether L cut a step
    no other mechanism cut. ``state.scale`` is the harm control's and the brake's decision,
    ``state.held`` the scale before it.

    With ``room_cap=False`` (evidence only, as the other mechanisms act; measured worse than
    v3.0 at 30x the tuned LR, docs/governor.md):

    - a cut of the harm control or the brake stops at L: the scale goes no lower than
      min(L, the scale before the cut), where v3.0's cuts compound to the floor; a cut of a
      step already within L is not taken (the probe says the step is not too large);
    - with the recovery gate open (the loss near its recent best, the overshoot low) a scale
      below L goes straight to L; above it, the recovery is v3.0's (x ``recover`` a step);
    - otherwise it holds; a calm step is never capped.

    With ``room_cap`` (the default) the level also caps every step: a cut lands at L, never below ``max_cut``
    x L; an open gate sets the scale to L, up or down; otherwise it holds at most at L; and this
    step's multiplier is at most L (the probe read this very step)."""
    decided, held = state.scale, state.held
    cut = (state.regime == GovernorRegime.HARM) | (state.regime == GovernorRegime.OVERSHOOT)
    gate = recovery_gate(policy, relative_excess(state.fast, state.best, policy.eps), state.over_ema,
                         state.count <= 1)
    if not policy.room_cap:
        scale = jnp.select([cut, gate], [jnp.maximum(decided, jnp.minimum(level, held)),
                                         jnp.maximum(decided, level)], decided)
        return scale, factor, jnp.zeros([], jnp.bool_)
    scale = jnp.select([cut, gate],
                       [jnp.minimum(level, jnp.maximum(decided, policy.max_cut * jnp.minimum(held, level))), level],
                       jnp.minimum(decided, level))
    capped = jnp.minimum(factor, level / jnp.maximum(decided, policy.eps))
    return scale, capped, (level < decided * factor) & ~cut


def decided(policy, state, applied, skipped, cut):
    """The room's fields after ``decide``: an applied step keeps the scale before the decision
    (``held``); a cut (``cut``) or a skip starts a burst of ``probe_burst`` probes."""
    burst = jnp.maximum(state.burst, policy.probe_burst)
    return (applied._replace(held=state.scale, burst=jnp.where(cut, burst, state.burst).astype(jnp.int32)),
            skipped._replace(burst=burst.astype(jnp.int32)))


def recovery_gate(policy, excess, over_ema, first) -> jax.Array:
    """Whether the scale may recover (the governor's decide, and mechanism 5's jump to the
    level): not the first applied step, the loss EMA within the recovery band of its recent best
    (``excess``), and, with the brake, the smoothed overshoot below ``recover_below``."""
    stable = over_ema < policy.recover_below if policy.use_overshoot else True
    return (excess <= policy.recover_band * policy.tolerance) & stable & ~first
