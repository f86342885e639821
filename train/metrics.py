"""Run outputs: JSON lines, TensorBoard events, and the final PNG plot."""

from __future__ import annotations

import json
import math
import pathlib


class MetricsWriter:
    def __init__(self, run_dir, *, enabled: bool = True):
        self.run_dir = pathlib.Path(run_dir)
        self.enabled = enabled
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

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
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def read_metrics(run_dir) -> list[dict]:
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir) -> pathlib.Path:
    """loss, validation perplexity and guard scale against step, as run_dir/training.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
    axes[0].set_ylabel("training loss")
    axes[1].plot([r["step"] for r in evals], [r["val_ppl"] for r in evals], marker="o")
    axes[1].set_ylabel("validation perplexity")
    axes[1].set_yscale("log")
    if train and "scale" in train[0]:
        axes[2].plot([r["step"] for r in train], [r["scale"] for r in train])
    axes[2].set_ylabel("guard scale")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_xlabel("step")
    fig.suptitle(pathlib.Path(run_dir).name)
    fig.tight_layout()
    out = pathlib.Path(run_dir) / "training.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
