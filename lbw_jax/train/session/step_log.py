"""Each step's record: the metrics the jitted step returned, fetched in one device sync
per logging interval, with the LR as applied, speed, perplexity and the guard's regime
named; written to the metrics, shown on the progress bar and read by the watchdog."""

from __future__ import annotations

import jax
import numpy as np

import lbw_jax


def step_record(metrics, lr: float, speed: dict, policy) -> dict:
    record = {k: float(v) for k, v in metrics.items()}
    record["lr"] = lr  # as applied: the schedule's, times the watchdog's (and a fault's)
    if "multiplier" in record:   # the guard's: what it multiplied the optimizer's update by
        record["effective_lr"] = lr * record["multiplier"]
    record.update(speed)
    record["ppl"] = float(np.exp(min(record["loss"], 50.0)))
    if "regime" in record:
        record["regime_name"] = lbw_jax.regime_name(policy, record["regime"])
    if "reason" in record:  # the policy's last intervention: why a step was skipped or cut
        record["reason_name"] = lbw_jax.reason_name(policy, record["reason"])
    return record


def bar_postfix(record: dict, speed: dict, rollbacks: int) -> dict:
    postfix = {"loss": f"{record['loss']:.3f}", "ppl": f"{record['ppl']:.1f}"}
    if "multiplier" in record:
        postfix.update(multiplier=f"{record['multiplier']:.2f}", regime=record["regime_name"])
    if speed:
        postfix["tok/s/dev"] = f"{speed['tokens_per_s_per_device']:,.0f}"
        if "mfu" in speed:
            postfix["MFU"] = f"{100 * speed['mfu']:.1f}%"
    if rollbacks:
        postfix.update(rollbacks=rollbacks)
    return postfix


def flush(pending: list, *, meter, writer, watchdog, policy, bar, rollbacks: int):
    """Fetches the pending ``(step, metrics, lr)`` (one device sync), logs them and runs
    the watchdog over them in order; empties ``pending`` and returns the first divergence."""
    event, record = None, None
    fetched = jax.device_get(pending)
    speed = meter.interval(len(fetched))
    for step, metrics, lr in fetched:
        record = step_record(metrics, lr, speed, policy)
        writer.write(step, "train", record)
        if event is None:
            event = watchdog.observe(step, record)
    pending.clear()
    if record is not None:
        bar.set_postfix(bar_postfix(record, speed, rollbacks))
    return event
