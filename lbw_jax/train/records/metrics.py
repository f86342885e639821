"""Run outputs: JSON lines, TensorBoard events, and the final PNG plot."""

from __future__ import annotations

import json
import math
import pathlib

from lbw_jax.train.records.repair import repair_tail


# Records of these kinds are history (e.g. a rollback) and survive a truncation.
EVENT_KINDS = ("watchdog",)


class MetricsWriter:
    """Appends to ``metrics.jsonl`` and TensorBoard. A run that continues from step
    ``resume_step`` first drops what was logged after it (``truncate``), so no step is
    recorded twice; ``resume_step=None`` starts both afresh."""

    def __init__(self, run_dir, *, enabled: bool = True, resume_step: int | None = None):
        self.run_dir = pathlib.Path(run_dir)
        self.enabled = enabled
        self._tb = self._jsonl = None
        if enabled:
            self._open(resume_step)

    def _open(self, resume_step: int | None):
        # Optional here: absent from the GPU image unless carried (README, GPU session).
        from tensorboardX import SummaryWriter

        path = self.run_dir / "metrics.jsonl"
        if resume_step is None:  # a fresh run: nothing an earlier attempt logged survives
            path.unlink(missing_ok=True)
        elif not path.exists():
            print(f"{path} is missing: the records of steps up to {resume_step} are gone; "
                  f"recording from step {resume_step + 1} on", flush=True)
        else:
            repair_tail(path, required=("step", "kind"))
            kept = [line for line in path.read_text().splitlines() if line.strip()
                    and (json.loads(line)["step"] <= resume_step
                         or json.loads(line)["kind"] in EVENT_KINDS)]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(path)
        self._jsonl = open(path, "a")
        # purge_step: TensorBoard drops the events at or after it from earlier sessions.
        purge = 0 if resume_step is None else resume_step + 1
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)

    def truncate(self, step: int):
        """Forgets what was logged after ``step`` (a rollback to ``step``)."""
        if self.enabled:
            self.close()
            self._open(step)

    def write(self, step: int, kind: str, values: dict):
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, **values}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self):
        if self.enabled and self._jsonl is not None:
            self._jsonl.close()
            self._tb.close()
            self._jsonl = self._tb = None


def read_metrics(run_dir) -> list[dict]:
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir) -> pathlib.Path:
    """loss, validation perplexity, the guard's multiplier and the LR applied against step, as
    run_dir/training.png."""
    # Optional here, and the backend must be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    events = [r for r in records if r["kind"] == "watchdog"]
    fig, axes = plt.subplots(4, 1, figsize=(8, 11), sharex=True)
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
    axes[0].set_ylabel("training loss")
    axes[1].plot([r["step"] for r in evals], [r["val_ppl"] for r in evals], marker="o")
    axes[1].set_ylabel("validation perplexity")
    axes[1].set_yscale("log")
    # ("scale": its name in the records of runs made before 0.2.0; a resumed run has both.)
    applied = [(r["step"], r.get("multiplier", r.get("scale"))) for r in train]
    applied = [point for point in applied if point[1] is not None]
    if applied:
        axes[2].plot(*zip(*applied))
    axes[2].set_ylabel("guard multiplier")
    axes[2].set_ylim(0, 1.05)
    lr = [r for r in train if "lr" in r]  # (records from before the LR was logged lack it)
    if lr:
        axes[3].plot([r["step"] for r in lr], [r["lr"] for r in lr], label="LR (schedule x watchdog)")
        if "effective_lr" in lr[0]:
            axes[3].plot([r["step"] for r in lr], [r["effective_lr"] for r in lr],
                         label="x guard multiplier")
        axes[3].set_yscale("log")
        axes[3].legend(loc="lower right", fontsize="small")
    axes[3].set_ylabel("learning rate")
    axes[3].set_xlabel("step")
    for event in events:  # where the watchdog rolled back (or stopped) the run
        for ax in axes:
            ax.axvline(event["step"], color="tab:red", alpha=0.4, linestyle="--")
    fig.suptitle(pathlib.Path(run_dir).name)
    fig.tight_layout()
    out = pathlib.Path(run_dir) / "training.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
