"""The training loop of ``train.run``: resume rules, the divergence watchdog with
rollback, checkpoints that are only kept when good, and the run's records."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time

import jax
import numpy as np
from tqdm import tqdm

import lbw_jax
from train import optim
from train.data import fingerprint as data_fingerprint
from train.records import machine
from train.session.checkpoint import Checkpoints
from train.errors import ConfigError, DivergenceError, InputError, RunError
from train.session.resume_rules import check_resume, schedule_change
from train.records.metrics import MetricsWriter, plot_run
from train.session.run_lock import lock_run_folder
from train.data.build import build_data
from train.trainer import Trainer
from train.validate import check_config
from train.values import plain_json
from train.session.watchdog import Event, Watchdog


@dataclasses.dataclass
class Position:
    """Where the run is: optimizer steps done, batches consumed (ahead of the steps once
    a rollback has skipped batches), the LR multiplier the rollbacks left, and the
    watchdog's events so far. Saved with every checkpoint."""

    step: int = 0
    batches: int = 0
    lr_multiplier: float = 1.0   # right after the last rollback (lr_factor ** rollbacks)
    rollback_step: int = 0       # the step the last rollback went back to
    rollbacks: int = 0
    events: list = dataclasses.field(default_factory=list)

    def multiplier(self, recovery_steps: int) -> float:
        """The LR multiplier now: back from ``lr_multiplier`` to 1 linearly over
        ``recovery_steps`` steps after the last rollback (0: it stays lowered)."""
        if recovery_steps <= 0 or self.lr_multiplier >= 1.0:
            return self.lr_multiplier
        progress = min(1.0, (self.step - self.rollback_step) / recovery_steps)
        return self.lr_multiplier + (1.0 - self.lr_multiplier) * progress

    def meta(self, seed: int, watchdog: Watchdog, **records) -> dict:
        """The checkpoint's record; ``records``: what else defines the run (the config
        of the session saving it, the data's digest)."""
        return {"step": self.step, "batches_consumed": self.batches, "seed": seed,
                "lr_multiplier": self.lr_multiplier, "rollback_step": self.rollback_step,
                "rollbacks": self.rollbacks, "events": self.events, "watchdog": watchdog.state(),
                **records}

    @classmethod
    def from_meta(cls, meta: dict) -> "Position":
        step = int(meta["step"])
        return cls(step=step, batches=int(meta.get("batches_consumed", step)),
                   lr_multiplier=float(meta.get("lr_multiplier", 1.0)),
                   rollback_step=int(meta.get("rollback_step", 0)),
                   rollbacks=int(meta.get("rollbacks", 0)), events=list(meta.get("events", [])))


def _write_json(path: pathlib.Path, value) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def _saved_tokenizer(out: pathlib.Path, cfg) -> pathlib.Path | None:
    path = out / ("tokenizer.json" if cfg.data.tokenizer == "bpe" else "tokenizer")
    return path if path.exists() else None


def run_dir(cfg) -> pathlib.Path:
    return pathlib.Path(cfg.output_dir).expanduser()


def initialize_distributed(cfg) -> None:
    """Joins the processes of a multi-host run before anything touches a device."""

    d = cfg.distributed
    if d.coordinator:
        if cfg.distributed.num_processes > 1 and jax.config.jax_platforms in ("cpu", None, ""):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(d.coordinator, num_processes=d.num_processes,
                                   process_id=d.process_id)
    elif any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID",
                                        "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")):
        jax.distributed.initialize()  # the cluster environment says how


def run(cfg, stop) -> dict:

    check_config(cfg)
    initialize_distributed(cfg)


    out = run_dir(cfg)
    lead = jax.process_index() == 0
    if cfg.resume and not any(p.name.isdigit() for p in (out / "checkpoints").glob("*")):
        raise InputError(f"resume=True but {out} holds no run to resume (no checkpoint in "
                         f"{out / 'checkpoints'}); drop --config.resume to start a new run there")
    lock = lock_run_folder(out, lead)  # also: a read-only folder fails here, in one line
    try:
        return _run_locked(cfg, stop, out, lead)
    finally:
        lock.release()


def _saved_config(out, checkpoints) -> str | None:
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


def _run_locked(cfg, stop, out, lead) -> dict:

    try:
        checkpoints = Checkpoints(out, cfg.train.keep_checkpoints, lead=lead)
    except OSError as e:  # (the lock was written, so this is rare: a folder made read-only since)
        raise InputError(f"output_dir={str(out)!r} is not writable ({e.strerror or e})") from e
    ok = False
    try:
        resuming = checkpoints.latest_step() is not None
        saved_config = _saved_config(out, checkpoints) if resuming else None
        if saved_config is not None:
            check_resume(saved_config, cfg)
        finished = _finished_summary(out, cfg, checkpoints)
        if finished is not None:
            ok = True
            return finished
        result = _Run(cfg, out, lead, checkpoints, saved_config).train(stop)
        ok = True
        return result
    finally:
        checkpoints.close(verify=ok)


def _finished_summary(out, cfg, checkpoints) -> dict | None:
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


class _Run:
    def __init__(self, cfg, out, lead, checkpoints, saved_config: str | None):

        resuming = saved_config is not None
        self.cfg, self.out, self.lead, self.checkpoints = cfg, out, lead, checkpoints
        try:
            data = build_data(cfg, _saved_tokenizer(out, cfg) if resuming else None)
            self.trainer = Trainer.build(cfg, data)
        except RunError:
            raise
        except (ValueError, FileNotFoundError) as e:  # the builders' own checks, one line each
            raise (InputError if isinstance(e, FileNotFoundError) else ConfigError)(str(e)) from e
        self.data_digest = data_fingerprint.digest(data.fingerprint)
        self.watchdog = Watchdog.from_config(cfg.train.watchdog)
        self.pos = Position()
        # The LR the schedule gives each step (the watchdog and the fault multiply it).
        self.lr_table = optim.schedule_values(cfg, np.arange(cfg.train.steps + 1))
        if resuming:
            step, state, meta = checkpoints.restore(self.trainer.checkpoint_state(),
                                                    is_finite=self.trainer.state_is_finite)
            rewrite = data_fingerprint.check_data(out, data.fingerprint, meta.get("data_digest"),
                                                  cfg.data.accept_changes)
            change = schedule_change(meta.get("config") or saved_config, cfg, step)
            if change and not cfg.optimizer.accept_schedule_change:
                raise ConfigError(change)
            if change:
                print(f"optimizer.accept_schedule_change=True: {change.split(' To ')[0]}", flush=True)
            self.trainer.load_checkpoint_state(state)
            self.pos = Position.from_meta(meta)
            self.watchdog.load_state(meta.get("watchdog"))
            print(f"resumed {out} at step {step}", flush=True)
        else:
            rewrite = True
        if lead and rewrite:
            _write_json(out / data_fingerprint.FINGERPRINT_FILE, data.fingerprint)
        if lead and not (resuming and (out / "config.json").exists()):
            (out / "config.json").write_text(cfg.to_json_best_effort(indent=2))
        if lead and (not resuming or _saved_tokenizer(out, cfg) is None):
            data.tokenizer.save(out / "tokenizer.json")  # (a pretrained one: out/tokenizer/)
        self.checkpoints.protected = self.watchdog.protected  # read at each rotation
        self.resumed_from = self.pos.step
        self.writer = MetricsWriter(out, enabled=lead,
                                    resume_step=self.pos.step if resuming else None)
        if not resuming:  # step 0: a rollback always has somewhere to go
            self._save()

    # -- records ------------------------------------------------------------------------

    def _event_record(self, event: Event, action: str, **extra) -> dict:
        record = {"reason": event.reason, "detail": event.detail, "onset": event.onset,
                  "action": action, **extra}
        self.writer.write(event.step, "watchdog", record)
        self.pos.events.append({"step": event.step, **record})
        return record

    def _write_summary(self, summary: dict) -> dict:
        summary = plain_json(summary)
        if self.lead:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
        return summary

    # -- checkpoints --------------------------------------------------------------------

    def _save(self) -> Event | None:
        """Saves the current state if it is finite; else returns the divergence."""
        if not self.trainer.state_is_finite():
            return Event(self.pos.step, self.pos.step, "non-finite",
                         "non-finite parameters or optimizer state; not saved")
        self.watchdog.saved(self.pos.step)
        self.checkpoints.save(self.pos.step, self.trainer.checkpoint_state(),
                              self.pos.meta(self.cfg.seed, self.watchdog,
                                            config=self.cfg.to_json_best_effort(),
                                            data_digest=self.data_digest))
        return None

    def _diverged(self, event: Event, bar) -> None:
        """Stops (raising ``DivergenceError``) or rolls back to the last good checkpoint."""
        w = self.cfg.train.watchdog
        last_good = max([s for s in self.checkpoints.steps() if s < event.onset], default=None)
        if self.cfg.train.on_divergence == "stop" or self.pos.rollbacks >= w.max_rollbacks:
            why = ("train.on_divergence=stop" if self.cfg.train.on_divergence == "stop"
                   else f"{self.pos.rollbacks} rollback(s) used, train.watchdog.max_rollbacks="
                        f"{w.max_rollbacks}")
            self._event_record(event, "stop")
            self.writer.close()
            self._write_summary({"status": "diverged", "steps": self.cfg.train.steps,
                                 "stopped_at": event.step, "rollbacks": self.pos.rollbacks,
                                 "events": self.pos.events, "last_good_checkpoint": last_good})
            bar.close()
            if self.lead:
                plot_run(self.out)
            raise DivergenceError(
                f"{event.describe()}; stopped ({why}). Nothing was saved after it; the last "
                f"good checkpoint is step {last_good} in {self.checkpoints.directory}.")
        consumed, trained_to = self.pos.batches, self.pos.step
        step, state, meta = self.checkpoints.restore(
            self.trainer.checkpoint_state(), is_finite=self.trainer.state_is_finite,
            before=event.onset, say=bar.write)
        # The batches that trained steps step..trained_to are not replayed.
        window = [consumed - (trained_to - step), consumed]
        self.trainer.load_checkpoint_state(state)
        self.watchdog.load_state(meta.get("watchdog"))
        # Lower the multiplier that was in effect when the divergence began.
        at_onset = dataclasses.replace(self.pos, step=event.onset - 1)
        lr = at_onset.multiplier(w.lr_recovery_steps) * w.lr_factor
        record = self._event_record(event, "rollback", to_step=step,
                                    skipped_batches=window, lr_multiplier=lr)
        self.pos = Position(step=step, batches=consumed, lr_multiplier=lr, rollback_step=step,
                            rollbacks=self.pos.rollbacks + 1, events=self.pos.events)
        self.writer.truncate(step)
        bar.write(f"watchdog: {event.describe()}; rolled back to step {step}, skipping batches "
                  f"{record['skipped_batches'][0]}-{consumed - 1}, LR x{lr:g}"
                  f"{f' back to x1 over {w.lr_recovery_steps} steps' if w.lr_recovery_steps else ''} "
                  f"(rollback {self.pos.rollbacks} of {w.max_rollbacks})")
        bar.n = step
        bar.refresh()

    # -- the loop -----------------------------------------------------------------------

    def _flush(self, pending, bar) -> Event | None:
        """Fetches the pending step metrics (one device sync), logs them and runs the
        watchdog over them in order; returns the first divergence."""
    

        event, record = None, None
        fetched = jax.device_get(pending)
        speed = self.meter.interval(len(fetched))
        for s, m, lr in fetched:
            record = {k: float(v) for k, v in m.items()}
            record["lr"] = lr  # as applied: the schedule's, times the watchdog's (and a fault's)
            if "scale" in record:
                record["effective_lr"] = lr * record["scale"]
            record.update(speed)
            record["ppl"] = float(np.exp(min(record["loss"], 50.0)))
            if "regime" in record:
                record["regime_name"] = lbw_jax.regime_name(self.trainer.law, record["regime"])
            if "reason" in record:  # the law's last intervention: why a step was skipped or cut
                record["reason_name"] = lbw_jax.reason_name(self.trainer.law, record["reason"])
            self.writer.write(s, "train", record)
            if event is None:
                event = self.watchdog.observe(s, record)
        pending.clear()
        if record is not None:
            postfix = {"loss": f"{record['loss']:.3f}", "ppl": f"{record['ppl']:.1f}"}
            if "scale" in record:
                postfix.update(scale=f"{record['scale']:.2f}", regime=record["regime_name"])
            if speed:
                postfix["tok/s/dev"] = f"{speed['tokens_per_s_per_device']:,.0f}"
                if "mfu" in speed:
                    postfix["MFU"] = f"{100 * speed['mfu']:.1f}%"
            if self.pos.rollbacks:
                postfix.update(rollbacks=self.pos.rollbacks)
            bar.set_postfix(postfix)
        return event

    def train(self, stop) -> dict:

        cfg, t = self.cfg, self.cfg.train
        fault = cfg.fault
        t0 = time.time()
        self.meter = self.trainer.speed_meter()
        self.meter.restart()
        pending, last_eval = [], None
        bar = tqdm(total=t.steps, initial=self.pos.step, disable=not self.lead,
                   dynamic_ncols=True, desc="train")
        try:
            while self.pos.step < t.steps:
                batch = self.pos.batches
                multiplier = self.pos.multiplier(t.watchdog.lr_recovery_steps) * (
                    fault.lr_factor if fault.first_batch <= batch < fault.last_batch else 1.0)
                pending.append((self.pos.step + 1,
                                self.trainer.train_step(self.pos.step, batch, multiplier),
                                float(self.lr_table[self.pos.step] * multiplier)))
                self.pos.step, self.pos.batches = self.pos.step + 1, batch + 1
                bar.update(1)
                done = self.pos.step
                evaluate = done % t.eval_every == 0 or done == t.steps
                save = done % t.checkpoint_every == 0 or done == t.steps
                if done % t.log_every == 0 or evaluate or save or stop:
                    event = self._flush(pending, bar)
                    if event is None and evaluate:
                        last_eval = self.trainer.evaluate()
                        self.writer.write(done, "eval", last_eval)
                        bar.write(f"step {done}: validation perplexity {last_eval['val_ppl']:.2f}")
                        if not math.isfinite(last_eval["val_loss"]):
                            event = Event(done, done, "non-finite", "non-finite validation loss")
                    if event is None and (save or stop):
                        event = self._save()
                    if evaluate or save:
                        self.meter.restart()   # speed counts training steps only
                    if event is not None:
                        if stop:  # exit as asked, keeping the last good checkpoint
                            self._event_record(event, "none: stopping on a signal")
                            break
                        self._diverged(event, bar)
                        self.meter.restart()
                        last_eval = None
                        continue
                if stop:
                    break
        finally:
            bar.close()
        self.checkpoints.finish()
        if stop:
            self.writer.close()
            latest = self.checkpoints.latest_step()
            what = (f"saved a checkpoint at step {latest}" if latest == self.pos.step else
                    f"did not save step {self.pos.step} (the watchdog found it diverged); the "
                    f"last good checkpoint is step {latest}")
            print(f"{stop.signal}: {what} in {self.out}; exiting", flush=True)
            return {"stopped_at": self.pos.step, "signal": stop.signal}
        if last_eval is None:  # e.g. the last steps were already done before a restart
            last_eval = self.trainer.evaluate()
        return self._finish(last_eval, time.time() - t0)

    def _finish(self, last_eval, wall) -> dict:
    

        self.writer.close()
        # Throughput is the speed meter's median tokens/s per device over training steps
        # (compilation, evaluation and checkpoints excluded); wall_s is the whole session.
        summary = {"status": "finished", "steps": self.cfg.train.steps,
                   "resumed_from": self.resumed_from, "wall_s": round(wall, 1),
                   **last_eval, **self.meter.summary(), "rollbacks": self.pos.rollbacks,
                   "lr_multiplier": self.pos.multiplier(self.cfg.train.watchdog.lr_recovery_steps)}
        if self.pos.events:
            summary["events"] = self.pos.events
        summary["machine"] = machine.describe()  # what the figures depend on besides the code
        if self.trainer.guarded:
            info = jax.device_get(lbw_jax.telemetry(self.trainer.opt_state))
            summary.update(guard_scale=float(info["scale"]), guard_interventions=int(info["interventions"]),
                           skipped_steps=int(info["skipped"]))
            # The governor's own counts: steps its trust region clamped (not interventions:
            # the scale is untouched), and cuts of its scale.
            for key, name in (("limits", "guard_step_limits"), ("cuts", "guard_cuts")):
                if key in info:
                    summary[name] = int(info[key])
        summary = self._write_summary(summary)
        if self.lead:
            summary["plot"] = str(plot_run(self.out))
            print("summary: " + json.dumps(summary), flush=True)
        return summary
