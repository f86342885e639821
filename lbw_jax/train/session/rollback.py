"""What the run does when the watchdog finds it diverged: stop with the last good
checkpoint named (``train.on_divergence=stop``, or the rollbacks used up), or go back to
the last good checkpoint before the divergence began, skip the batches that led to it and
lower the LR (``train.watchdog.lr_factor``, recovering over ``lr_recovery_steps``)."""

from __future__ import annotations

import dataclasses

from lbw_jax.train.errors import DivergenceError
from lbw_jax.train.records.metrics import plot_run
from lbw_jax.train.session.position import Position


def handle_divergence(run, event, bar) -> None:
    """Stops (raising ``DivergenceError``) or rolls ``run`` back to its last good
    checkpoint before ``event.onset``."""
    w = run.cfg.train.watchdog
    if run.cfg.train.on_divergence == "stop" or run.pos.rollbacks >= w.max_rollbacks:
        why = ("train.on_divergence=stop" if run.cfg.train.on_divergence == "stop"
               else f"{run.pos.rollbacks} rollback(s) used, train.watchdog.max_rollbacks="
                    f"{w.max_rollbacks}")
        _stop(run, event, bar, why)
    _roll_back(run, event, bar)


def _stop(run, event, bar, why: str) -> None:
    last_good = max([s for s in run.checkpoints.steps() if s < event.onset], default=None)
    run.event_record(event, "stop")
    run.writer.close()
    run.write_summary({"status": "diverged", "steps": run.cfg.train.steps,
                       "stopped_at": event.step, "rollbacks": run.pos.rollbacks,
                       "events": run.pos.events, "last_good_checkpoint": last_good})
    bar.close()
    if run.lead:
        plot_run(run.out)
    raise DivergenceError(
        f"{event.describe()}; stopped ({why}). Nothing was saved after it; the last "
        f"good checkpoint is step {last_good} in {run.checkpoints.directory}.")


def _roll_back(run, event, bar) -> None:
    w = run.cfg.train.watchdog
    consumed, trained_to = run.pos.batches, run.pos.step
    step, state, meta = run.checkpoints.restore(
        run.trainer.checkpoint_state(), is_finite=run.trainer.state_is_finite,
        before=event.onset, say=bar.write)
    # The batches that trained steps step..trained_to are not replayed.
    window = [consumed - (trained_to - step), consumed]
    run.trainer.load_checkpoint_state(state)
    run.watchdog.load_state(meta.get("watchdog"))
    # Lower the LR factor that was in effect when the divergence began.
    at_onset = dataclasses.replace(run.pos, step=event.onset - 1)
    lr = at_onset.lr_factor_at(w.lr_recovery_steps) * w.lr_factor
    record = run.event_record(event, "rollback", to_step=step,
                              skipped_batches=window, lr_factor=lr)
    run.pos = Position(step=step, batches=consumed, lr_factor=lr, rollback_step=step,
                       rollbacks=run.pos.rollbacks + 1, events=run.pos.events)
    run.writer.truncate(step)
    bar.write(f"watchdog: {event.describe()}; rolled back to step {step}, skipping batches "
              f"{record['skipped_batches'][0]}-{consumed - 1}, LR x{lr:g}"
              f"{f' back to x1 over {w.lr_recovery_steps} steps' if w.lr_recovery_steps else ''} "
              f"(rollback {run.pos.rollbacks} of {w.max_rollbacks})")
    bar.n = step
    bar.refresh()
