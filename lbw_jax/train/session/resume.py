"""What a run folder that already holds checkpoints allows: the config it began with
(checked against this session's by ``resume_rules``), a run that already finished (left
as it is), and the restore of the newest good checkpoint with its data and schedule checks."""

from __future__ import annotations

import json

from lbw_jax.train.data import fingerprint as data_fingerprint
from lbw_jax.train.errors import ConfigError, InputError
from lbw_jax.train.session.position import Position
from lbw_jax.train.session.resume_rules import schedule_change


def saved_config(out, checkpoints) -> str | None:
    """The config the run began with: its ``config.json``, else (deleted) the one the
    newest checkpoint recorded; raises if neither exists."""
    if (out / "config.json").exists():
        return (out / "config.json").read_text()
    step = checkpoints.latest_step()
    saved = checkpoints.read_meta(step).get("config")
    if saved is None:
        raise InputError(f"{out} holds checkpoints but no config.json, and checkpoint {step} "
                         f"predates recorded configs: a resume cannot be checked. Restore "
                         f"config.json, or choose a new output_dir")
    print(f"{out}/config.json is missing; checking the resume against the config checkpoint "
          f"{step} recorded", flush=True)
    return saved


def finished_summary(out, cfg, checkpoints) -> dict | None:
    """The saved summary of a run that already reached ``train.steps``, left intact."""
    latest, summary = checkpoints.latest_step(), out / "summary.json"
    if latest is None or latest < cfg.train.steps or not summary.exists():
        return None
    saved = json.loads(summary.read_text())
    if saved.get("status", "finished") != "finished":
        return None
    print(f"{out} already finished at step {latest} (train.steps={cfg.train.steps}); "
          f"summary.json is unchanged. Raise train.steps to train further.", flush=True)
    return {**saved, "already_finished": True}


def restore(cfg, out, checkpoints, trainer, watchdog, data, config_at_start: str):
    """Loads the newest good checkpoint into ``trainer`` and ``watchdog`` after checking
    that the data and the LR schedule are the run's; returns the run's ``Position`` and
    whether the data's fingerprint file is to be rewritten (accepted changes)."""
    step, state, meta = checkpoints.restore(trainer.checkpoint_state(),
                                            is_finite=trainer.state_is_finite)
    rewrite = data_fingerprint.check_data(out, data.fingerprint, meta.get("data_digest"),
                                          cfg.data.accept_changes)
    change = schedule_change(meta.get("config") or config_at_start, cfg, step)
    if change and not cfg.optimizer.accept_schedule_change:
        raise ConfigError(change)
    if change:
        print(f"optimizer.accept_schedule_change=True: {change.split(' To ')[0]}", flush=True)
    trainer.load_checkpoint_state(state)
    watchdog.load_state(meta.get("watchdog"))
    print(f"resumed {out} at step {step}", flush=True)
    return Position.from_meta(meta), rewrite
