"""The divergence watchdog: reads each step's host-side metrics and says when a run
has diverged.

It runs on the host over the metrics ``lbw_jax.train.run`` already fetches every
``train.log_every`` steps, so it adds no device sync. It fires on

  * a non-finite loss or parameter norm (``reason="non-finite"``);
  * the loss above ``loss_factor`` x its running level for ``patience`` consecutive
    steps (``"loss"``); the level is an EMA of the loss that is frozen while the loss
    is above the bar, so a slow blow-up cannot drag the bar up with it;
  * more than ``max_skips`` consecutive steps skipped by the guard (``"skips"``).

It also names the rollback target that no rotation may delete (``pinned``): the newest
checkpoint that was saved while the run was calm (no step above the bar, no skipped
step) and was followed by a healthy window of ``patience`` calm steps. Any divergence
found later began after it, so a rollback can always go there. Step 0, the initial
state, is the target until a later one is verified; ``candidates`` are the
checkpoints saved while calm that are still waiting for their window (they are kept
too, since one of them becomes the target). A suspicious step drops the candidates.

Its state is a few numbers, saved with each checkpoint so that a resumed run sees
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

# The watchdog's settings and their defaults (``train.watchdog`` in the config is made
# from this table): what it watches, then what a rollback does (read by lbw_jax/train/session/loop.py).
DEFAULTS = {
    "loss_factor": 1.5,        # the loss above this x its running level ...
    "patience": 5,             # ... for this many consecutive steps is a divergence
    "level_decay": 0.98,       # EMA of the loss while it is not above the bar
    "max_skips": 20,           # more consecutive skipped steps than this is a divergence
    "max_rollbacks": 3,        # rollbacks before the run stops (exit 3)
    "lr_factor": 0.5,          # each rollback multiplies the LR by this...
    "lr_recovery_steps": 50,   # ...then it returns to x1 over these steps (0: never)
}


def config() -> ml_collections.ConfigDict:
    """``DEFAULTS`` as the config's ``train.watchdog`` subtree."""
    return ml_collections.ConfigDict(DEFAULTS)


@dataclasses.dataclass(frozen=True)
class Event:
    """A divergence: detected after step ``step``; the suspicious stretch that led to
    it (steps skipped by the guard or above the bar, with no calm step between) began at
    step ``onset`` (a rollback goes to a checkpoint from before ``onset``)."""

    step: int
    onset: int
    reason: str
    detail: str

    def describe(self) -> str:
        return f"diverged at step {self.step} ({self.detail})"


@dataclasses.dataclass
class Watchdog:
    loss_factor: float = DEFAULTS["loss_factor"]
    patience: int = DEFAULTS["patience"]
    level_decay: float = DEFAULTS["level_decay"]
    max_skips: int = DEFAULTS["max_skips"]
    level: float | None = None      # running loss level (None until the first finite loss)
    over: int = 0                   # consecutive steps above loss_factor x level
    skip_streak: int = 0
    skipped_total: int = 0  # the guard's cumulative count at the last step seen
    calm_since: int | None = None   # first step of the current calm streak (None: not calm)
    # First step of the current suspicious stretch (skipped or above the bar, with no calm
    # step between; None: calm): an event's onset, so that a rollback goes to before a
    # skip streak that the loss excursion followed (a guard skipping the first steps
    # after damage), not to a checkpoint saved in the middle of it.
    suspicious_since: int | None = None
    candidates: list = dataclasses.field(default_factory=list)
    pinned: int = 0

    def saved(self, step: int) -> None:
        """A checkpoint of ``step`` was saved; it is a candidate if the run is calm."""
        if self.calm_since is not None and self.calm_since <= step and step > self.pinned:
            self.candidates = [*self.candidates, step]

    def protected(self) -> set[int]:
        """The checkpoints a rotation must keep: the target and its candidates."""
        return {self.pinned, *self.candidates}

    def _suspicious(self, step: int) -> None:
        self.calm_since, self.candidates = None, []
        if self.suspicious_since is None:
            self.suspicious_since = step

    def _calm(self, step: int) -> None:
        self.suspicious_since = None
        if self.calm_since is None:
            self.calm_since = step
        verified = [c for c in self.candidates if step - c >= self.patience]
        if verified:  # calm_since <= every candidate: the streak has held since its save
            self.pinned = max(verified)
            self.candidates = [c for c in self.candidates if c > self.pinned]

    @classmethod
    def from_config(cls, w) -> "Watchdog":
        return cls(loss_factor=w.loss_factor, patience=w.patience, level_decay=w.level_decay,
                   max_skips=w.max_skips)

    def observe(self, step: int, record: dict) -> Event | None:
        """Reads the metrics of optimizer step ``step`` (1-based); returns an Event if
        the run has diverged."""
        loss, norm = record["loss"], record.get("param_norm", 0.0)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(loss) else "parameter norm"
            value = loss if not math.isfinite(loss) else norm
            return Event(step, step, "non-finite", f"non-finite {what}: {value}")
        if "skipped" in record:
            total = int(record["skipped"])
            skipped = total > self.skipped_total
            self.skipped_total = total
            if skipped:
                self._suspicious(step)
                self.skip_streak += 1
                if self.skip_streak > self.max_skips:
                    return Event(step, self.suspicious_since, "skips",
                                 f"{self.skip_streak} consecutive skipped steps")
                return None  # a skipped step's loss is the loss of unchanged parameters
            self.skip_streak = 0
        if self.level is not None and loss > self.loss_factor * self.level:
            self._suspicious(step)
            self.over += 1
            if self.over >= self.patience:
                return Event(step, self.suspicious_since, "loss",
                             f"loss {loss:.4g} above {self.loss_factor:g} x its running level "
                             f"{self.level:.4g} for {self.over} steps")
            return None
        self.over = 0
        self._calm(step)
        self.level = loss if self.level is None else (
            self.level_decay * self.level + (1 - self.level_decay) * loss)
        return None

    def state(self) -> dict:
        return {"level": self.level, "over": self.over,
                "skip_streak": self.skip_streak,
                "skipped_total": self.skipped_total, "calm_since": self.calm_since,
                "suspicious_since": self.suspicious_since,
                "candidates": list(self.candidates), "pinned": self.pinned}

    def load_state(self, state: dict | None) -> None:
        fresh = Watchdog(self.loss_factor, self.patience, self.level_decay, self.max_skips)
        saved = state or {}
        # Fields a checkpoint lacks take their fresh value; ones it has that the watchdog
        # no longer keeps (an older version's) are ignored.
        for key, value in fresh.state().items():
            setattr(self, key, saved.get(key, value))
