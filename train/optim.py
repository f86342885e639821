"""The optimizer from config: AdamW with its schedule, governed by lbw_guard or plain."""

from __future__ import annotations

import optax

import lbw_jax

GUARDS = lbw_jax.POLICIES


def schedule(cfg, steps: int, peak: float | None = None) -> optax.Schedule:
    """The config's schedule peaking at ``peak`` (``optimizer.lr`` when omitted)."""
    opt = cfg.optimizer
    peak = opt.lr if peak is None else peak
    if opt.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif opt.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(1, steps - opt.warmup_steps), alpha=0.1)
    else:
        raise ValueError(f"optimizer.schedule={opt.schedule!r}; choose constant or cosine")
    if opt.warmup_steps <= 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, opt.warmup_steps)
    return optax.join_schedules([warmup, main], [opt.warmup_steps])


def build_optimizer(cfg) -> optax.GradientTransformationExtraArgs:
    opt = cfg.optimizer
    if opt.lr <= 0:
        raise ValueError(f"optimizer.lr={opt.lr} must be positive")
    adamw = optax.adamw(schedule(cfg, cfg.train.steps), b1=opt.b1, b2=opt.b2,
                        weight_decay=opt.weight_decay)
    if opt.guard == "none":
        return optax.with_extra_args_support(adamw)
    if opt.guard not in GUARDS:
        raise ValueError(f"optimizer.guard={opt.guard!r}; choose none or one of {sorted(GUARDS)}")
    return lbw_jax.lbw_guard(adamw, policy=GUARDS[opt.guard](**opt.policy_kwargs.to_dict()),
                             skip_non_finite=opt.skip_non_finite)
