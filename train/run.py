"""``python -m train.run [--config configs/NAME.py] [--config.a.b=value ...]``

With no arguments it trains the embedded default (``configs/tiny.py``): a small
Qwen2-architecture model on the Jane Austen novels, on the CPU, in a few minutes.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time

from absl import app
from ml_collections import config_flags

DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "A config file exposing get_config().",
                                          lock_config=True)


def initialize_distributed(cfg) -> None:
    """Joins the processes of a multi-host run before anything touches a device."""
    import jax

    d = cfg.distributed
    if d.coordinator:
        if cfg.distributed.num_processes > 1 and jax.config.jax_platforms in ("cpu", None, ""):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(d.coordinator, num_processes=d.num_processes,
                                   process_id=d.process_id)
    elif any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID",
                                        "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")):
        jax.distributed.initialize()  # the cluster environment says how


class _StopRequested:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits cleanly."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __bool__(self):
        return self.signal is not None


def train(cfg) -> dict:
    """Runs (or resumes) the run that ``cfg`` describes; returns its summary."""
    with _StopRequested() as stop:
        return _train(cfg, stop)


def _train(cfg, stop) -> dict:
    initialize_distributed(cfg)
    import jax

    from train.checkpoint import Checkpoints
    from train.metrics import MetricsWriter
    from train.trainer import Trainer, build_data, run_dir

    out = run_dir(cfg)
    lead = jax.process_index() == 0
    out.mkdir(parents=True, exist_ok=True)
    data = build_data(cfg)
    trainer = Trainer(cfg, data)
    checkpoints = Checkpoints(out, cfg.train.keep_checkpoints)
    writer = MetricsWriter(out, enabled=lead)
    try:
        return _loop(cfg, stop, out, lead, data, trainer, checkpoints, writer)
    finally:
        checkpoints.close()
        writer.close()


def _loop(cfg, stop, out, lead, data, trainer, checkpoints, writer) -> dict:
    import jax
    import numpy as np
    from tqdm import tqdm

    import lbw_jax
    from train.metrics import plot_run

    start = 0
    latest = checkpoints.latest_step()
    if latest is not None:  # an existing run folder continues (config.resume says so too)
        state, meta = checkpoints.restore(latest, trainer.checkpoint_state())
        trainer.load_checkpoint_state(state)
        start = int(meta["step"])
        print(f"resumed {out} at step {start}", flush=True)
    elif cfg.resume:
        print(f"resume requested but {out} holds no checkpoint: starting fresh", flush=True)
    if lead:
        (out / "config.json").write_text(cfg.to_json_best_effort(indent=2))
        data.tokenizer.save(out / "tokenizer.json")

    def save(step, force=False):
        checkpoints.save(step, trainer.checkpoint_state(),
                         {"step": step, "batches_consumed": step, "seed": cfg.seed}, force=force)

    steps, log_every = cfg.train.steps, cfg.train.log_every
    t0, tokens_per_step = time.time(), cfg.train.batch_size * cfg.data.seq_len
    pending = []  # device metrics since the last log: fetched together, no per-step sync
    last_eval = None
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not lead,
               dynamic_ncols=True, desc="train")
    for step in bar:
        pending.append((step + 1, trainer.train_step(step)))
        done = step + 1
        if done % log_every == 0 or done == steps:
            for s, m in jax.device_get(pending):
                record = {k: float(v) for k, v in m.items()}
                record["ppl"] = float(np.exp(min(record["loss"], 50.0)))
                if "regime" in record:
                    record["regime_name"] = lbw_jax.REGIMES[int(record["regime"])]
                writer.write(s, "train", record)
            pending.clear()
            postfix = {"loss": f"{record['loss']:.3f}", "ppl": f"{record['ppl']:.1f}"}
            if "scale" in record:
                postfix.update(scale=f"{record['scale']:.2f}", regime=record["regime_name"])
            bar.set_postfix(postfix)
        if done % cfg.train.eval_every == 0 or done == steps:
            last_eval = trainer.evaluate()
            writer.write(done, "eval", last_eval)
            bar.write(f"step {done}: validation perplexity {last_eval['val_ppl']:.2f}")
        if done % cfg.train.checkpoint_every == 0 or done == steps:
            save(done)
        if stop:
            save(done, force=True)
            checkpoints.wait()
            bar.close()
            print(f"{stop.signal}: saved a checkpoint at step {done} in {out}; exiting", flush=True)
            return {"stopped_at": done, "signal": stop.signal}
    bar.close()
    checkpoints.wait()
    summary = {"steps": steps, "resumed_from": start, "wall_s": round(time.time() - t0, 1),
               "tokens_per_s": round((steps - start) * tokens_per_step / max(time.time() - t0, 1e-9)),
               **(last_eval or {})}
    if trainer.guarded:
        info = jax.device_get(lbw_jax.telemetry(trainer.opt_state))
        summary.update(guard_scale=float(info["scale"]), guard_interventions=int(info["interventions"]),
                       skipped_steps=int(info["skipped"]))
    if lead:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        summary["plot"] = str(plot_run(out))
        print("summary: " + json.dumps(summary), flush=True)
    return summary


def main(argv):
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train(_CONFIG.value)


if __name__ == "__main__":
    app.run(main)
