"""The training loop of ``lbw_jax.train.run``: a session takes the run folder (new or resumed),
runs the jitted steps, evaluates, keeps a checkpoint only when it is good, hands a
divergence to ``rollback`` and writes the summary. Its parts: ``resume`` (what a folder
with checkpoints allows), ``step_log`` (each step's record), ``rollback``, ``run_folder``."""

from __future__ import annotations

import json
import math
import time

import jax
import numpy as np
from tqdm import tqdm

import lbw_jax
from lbw_jax.train import optim
from lbw_jax.train.data import fingerprint as data_fingerprint
from lbw_jax.train.data.build import SavedTokenizerError, build_data
from lbw_jax.train.errors import ConfigError, InputError, RunError
from lbw_jax.train.records import machine
from lbw_jax.train.records.metrics import MetricsWriter, plot_run
from lbw_jax.train.records.repair import set_aside
from lbw_jax.train.session import peers, resume, step_log
from lbw_jax.train.session.checkpoint import Checkpoints
from lbw_jax.train.session.position import Position
from lbw_jax.train.session.resume_rules import check_resume, keep_saved_guard_knobs
from lbw_jax.train.session.rollback import handle_divergence
from lbw_jax.train.session.run_folder import (run_dir, saved_tokenizer, tokenizer_path,
                                               write_run_files)
from lbw_jax.train.session.run_lock import lock_run_folder
from lbw_jax.train.session.watchdog import Event, Watchdog
from lbw_jax.train.trainer import Trainer
from lbw_jax.train.normalize import prepare_config
from lbw_jax.train.values import plain_json


def run(cfg, stop) -> dict:
    """Trains ``cfg`` to ``train.steps`` in its run folder (resuming what is there) and
    returns the summary; ``stop`` is set by a signal to save and end early."""
    for note in prepare_config(cfg):
        print(note, flush=True)
    peers.join(cfg)  # before anything touches a device
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


def _run_locked(cfg, stop, out, lead) -> dict:
    try:
        checkpoints = Checkpoints(out, cfg.train.keep_checkpoints, lead=lead)
    except OSError as e:  # (the lock was written, so this is rare: a folder made read-only since)
        raise InputError(f"output_dir={str(out)!r} is not writable ({e.strerror or e})") from e
    ok = peer_lost = False
    try:
        resuming = checkpoints.latest_step() is not None
        config_at_start = resume.saved_config(out, checkpoints) if resuming else None
        if config_at_start is not None:
            for note in keep_saved_guard_knobs(config_at_start, cfg):
                print(note, flush=True)
            check_resume(config_at_start, cfg)
        finished = resume.finished_summary(out, cfg, checkpoints)
        if finished is not None:
            ok = True
            return finished
        result = Session(cfg, out, lead, checkpoints, config_at_start).train(stop)
        ok = True
        return result
    except Exception as e:
        peer_lost = peers.is_peer_failure(e)
        if peer_lost:
            raise peers.peer_error(e) from e
        raise
    finally:
        if not peer_lost:  # (orbax's close would wait at a barrier for the dead process)
            checkpoints.close(verify=ok)


def _build_trainer(cfg, out, resuming: bool):
    try:
        saved = saved_tokenizer(out, cfg) if resuming else None
        if resuming and saved is None:
            print(f"{tokenizer_path(out, cfg)} is missing; rebuilding the tokenizer from the "
                  f"corpus (the resume's data check refuses it if it tokenizes differently)",
                  flush=True)
        try:
            data = build_data(cfg, saved)
        except SavedTokenizerError as e:  # rebuilt; the data check then confirms it is the same
            set_aside(e.path, "rebuilding the tokenizer from the corpus (the resume's data "
                              "check refuses it if it tokenizes differently)")
            data = build_data(cfg, None)
        return data, Trainer.build(cfg, data)
    except RunError:
        raise
    except (ValueError, FileNotFoundError) as e:  # the builders' own checks, one line each
        raise (InputError if isinstance(e, FileNotFoundError) else ConfigError)(str(e)) from e


class Session:
    """One session of a run: built from a new or a resumed run folder, then ``train``."""

    def __init__(self, cfg, out, lead, checkpoints, config_at_start: str | None):
        resuming = config_at_start is not None
        self.cfg, self.out, self.lead, self.checkpoints = cfg, out, lead, checkpoints
        data, self.trainer = _build_trainer(cfg, out, resuming)
        self.data_digest = data_fingerprint.digest(data.fingerprint)
        self.watchdog = Watchdog.from_config(cfg.train.watchdog)
        # The LR the schedule gives each step (the watchdog and the fault multiply it).
        self.lr_table = optim.schedule_values(cfg, np.arange(cfg.train.steps + 1))
        self.pos, new_fingerprint = Position(), True
        if resuming:
            self.pos, new_fingerprint = resume.restore(cfg, out, checkpoints, self.trainer,
                                                       self.watchdog, data, config_at_start)
        if lead:
            write_run_files(out, cfg, data, resuming=resuming, new_fingerprint=new_fingerprint)
        self.checkpoints.protected = self.watchdog.protected  # read at each rotation
        self.resumed_from = self.pos.step
        self.writer = MetricsWriter(out, enabled=lead,
                                    resume_step=self.pos.step if resuming else None)
        if not resuming:  # step 0: a rollback always has somewhere to go
            self.save()

    # -- records and checkpoints ---------------------------------------------------------

    def event_record(self, event: Event, action: str, **extra) -> dict:
        record = {"reason": event.reason, "detail": event.detail, "onset": event.onset,
                  "action": action, **extra}
        self.writer.write(event.step, "watchdog", record)
        self.pos.events.append({"step": event.step, **record})
        return record

    def write_summary(self, summary: dict) -> dict:
        summary = plain_json(summary)
        if self.lead:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
        return summary

    def save(self) -> Event | None:
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

    # -- the loop ------------------------------------------------------------------------

    def train(self, stop) -> dict:
        t0, steps = time.time(), self.cfg.train.steps
        self.meter = self.trainer.speed_meter()
        self.meter.restart()
        pending, last_eval = [], None
        bar = tqdm(total=steps, initial=self.pos.step, disable=not self.lead,
                   dynamic_ncols=True, desc="train")
        try:
            while self.pos.step < steps:
                pending.append(self._step())
                bar.update(1)
                if not self._boundary(stop):
                    continue
                event, evaluated = self._at_boundary(pending, bar, stop)
                last_eval = evaluated or last_eval
                if event is not None and stop:  # exit as asked, keeping the last good checkpoint
                    self.event_record(event, "none: stopping on a signal")
                    break
                if event is not None:
                    handle_divergence(self, event, bar)
                    self.meter.restart()
                    last_eval = None
                elif stop:
                    break
        finally:
            bar.close()
        self.checkpoints.finish()
        if stop:
            return self._stopped(stop)
        if last_eval is None:  # e.g. the last steps were already done before a restart
            last_eval = self.trainer.evaluate()
        return self._finish(last_eval, time.time() - t0)

    def _step(self) -> tuple:
        """Dispatches one training step (asynchronously); returns what ``step_log`` fetches."""
        t, fault = self.cfg.train, self.cfg.fault
        batch = self.pos.batches
        lr_factor = self.pos.lr_factor_at(t.watchdog.lr_recovery_steps) * (
            fault.lr_factor if fault.first_batch <= batch < fault.last_batch else 1.0)
        pending = (self.pos.step + 1, self.trainer.run_step(self.pos.step, batch, lr_factor),
                   float(self.lr_table[self.pos.step] * lr_factor))
        self.pos.step, self.pos.batches = self.pos.step + 1, batch + 1
        return pending

    def _due(self) -> tuple[bool, bool]:
        t, done = self.cfg.train, self.pos.step
        return (done % t.eval_every == 0 or done == t.steps,
                done % t.checkpoint_every == 0 or done == t.steps)

    def _boundary(self, stop) -> bool:
        """Whether the pending steps are fetched now: a log, evaluation or save is due."""
        return self.pos.step % self.cfg.train.log_every == 0 or any(self._due()) or bool(stop)

    def _at_boundary(self, pending, bar, stop):
        """Logs the pending steps, then evaluates and saves as due; returns the first
        divergence found (or ``None``) and the evaluation (or ``None``)."""
        evaluate, save = self._due()
        done, evaluated = self.pos.step, None
        event = step_log.flush(pending, meter=self.meter, writer=self.writer,
                               watchdog=self.watchdog, policy=self.trainer.policy, bar=bar,
                               rollbacks=self.pos.rollbacks)
        if event is None and evaluate:
            evaluated = self.trainer.evaluate()
            self.writer.write(done, "eval", evaluated)
            bar.write(f"step {done}: validation perplexity {evaluated['val_ppl']:.2f}")
            if not math.isfinite(evaluated["val_loss"]):
                event = Event(done, done, "non-finite", "non-finite validation loss")
        if event is None and (save or stop):
            event = self.save()
        if evaluate or save:
            self.meter.restart()   # speed counts training steps only
        return event, evaluated

    # -- the end -------------------------------------------------------------------------

    def _stopped(self, stop) -> dict:
        self.writer.close()
        latest = self.checkpoints.latest_step()
        what = (f"saved a checkpoint at step {latest}" if latest == self.pos.step else
                f"did not save step {self.pos.step} (the watchdog found it diverged); the "
                f"last good checkpoint is step {latest}")
        print(f"{stop.signal}: {what} in {self.out}; exiting", flush=True)
        return {"stopped_at": self.pos.step, "signal": stop.signal}

    def _finish(self, last_eval, wall) -> dict:
        self.writer.close()
        # Throughput is the speed meter's median tokens/s per device over training steps
        # (compilation, evaluation and checkpoints excluded); wall_s is the whole session.
        summary = {"status": "finished", "steps": self.cfg.train.steps,
                   "resumed_from": self.resumed_from, "wall_s": round(wall, 1),
                   **last_eval, **self.meter.summary(), "rollbacks": self.pos.rollbacks,
                   "lr_factor": self.pos.lr_factor_at(self.cfg.train.watchdog.lr_recovery_steps)}
        if self.pos.events:
            summary["events"] = self.pos.events
        summary["machine"] = machine.describe()  # what the figures depend on besides the code
        if self.trainer.guarded:
            summary.update(_guard_summary(self.trainer.opt_state))
        summary = self.write_summary(summary)
        if self.lead:
            summary["plot"] = str(plot_run(self.out))
            print("summary: " + json.dumps(summary), flush=True)
        return summary


def _guard_summary(opt_state) -> dict:
    info = jax.device_get(lbw_jax.telemetry(opt_state))
    out = dict(guard_multiplier=float(info["multiplier"]),
               guard_interventions=int(info["interventions"]), skipped_steps=int(info["skipped"]))
    # The governor's own counts: steps its trust region clamped (the guard counts these as
    # interventions too, though the policy's scale is untouched), and cuts of its scale by
    # the harm control and by the brake; with the room probe, its cuts and its forward passes.
    for key, name in (("limits", "guard_step_limits"), ("cuts", "guard_cuts"), ("brakes", "guard_brakes"),
                      ("room_cuts", "guard_room_cuts"), ("probes", "guard_probes")):
        if key in info:
            out[name] = int(info[key])
    return out
