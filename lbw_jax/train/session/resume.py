"""What a run folder that already holds checkpoints allows: the config it began with
(checked against this session's by ``resume_rules``), a run that already finished (left
as it is), and the restore of the newest good checkpoint with its data and schedule checks."""

from __future__ import annotations


from lbw_jax.train.data import fingerprint as data_fingerprint
from lbw_jax.train.errors import CheckpointError, ConfigError, InputError
from lbw_jax.train.records.repair import read_json, set_aside
from lbw_jax.train.session.position import Position
from lbw_jax.train.session.resume_rules import schedule_change


def saved_config(out, checkpoints) -> str | None:
    """The config the run began with: its ``config.json``; else (deleted, or damaged: it
    is then set aside) the one the newest readable checkpoint recorded; raises if neither
    can be read."""
    path, damaged = out / "config.json", False
    if path.exists():
        try:
            if isinstance(read_json(path), dict):
                return path.read_text()
        except ValueError:  # truncated, zeros, random bytes
            pass
        damaged = True
    step, saved = _recorded_config(checkpoints)
    if saved is None:
        raise InputError(f"{out} holds checkpoints but {path} is "
                         f"{'damaged' if damaged else 'missing'}, and no checkpoint records "
                         f"a readable config: a resume cannot be checked. Restore "
                         f"config.json, or choose a new output_dir")
    instead = f"checking the resume against the config checkpoint {step} recorded"
    if damaged:
        set_aside(path, instead)
    else:
        print(f"{path} is missing; {instead}", flush=True)
    return saved


def _recorded_config(checkpoints) -> tuple[int | None, str | None]:
    """The newest checkpoint whose record can be read and holds a config, and that config."""
    for step in reversed(checkpoints.steps()):
        try:
            saved = checkpoints.read_meta(step).get("config")
        except CheckpointError:  # its record is damaged: the restore will say so
            continue
        if saved is not None:
            return step, saved
    return None, None


def finished_summary(out, cfg, checkpoints) -> dict | None:
    """The saved summary of a run that already reached ``train.steps``, left intact (a
    damaged one is set aside: the run then evaluates its last checkpoint again)."""
    latest, summary = checkpoints.latest_step(), out / "summary.json"
    if latest is None or latest < cfg.train.steps:
        return None
    if not summary.exists():
        print(f"{summary} is missing; evaluating the last checkpoint again to write it",
              flush=True)
        return None
    try:
        saved = read_json(summary)
    except ValueError:
        set_aside(summary, "evaluating the last checkpoint again to write a new summary")
        return None
    if not isinstance(saved, dict) or saved.get("status", "finished") != "finished":
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
