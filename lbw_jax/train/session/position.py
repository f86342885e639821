"""Where a run is, saved with every checkpoint: the steps done, the batches consumed, and
what the watchdog's rollbacks left (the LR multiplier and its events)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Position:
    """Where the run is: optimizer steps done, batches consumed (ahead of the steps once
    a rollback has skipped batches), the LR factor the rollbacks left, and the
    watchdog's events so far. Saved with every checkpoint."""

    step: int = 0
    batches: int = 0
    lr_factor: float = 1.0   # right after the last rollback (lr_factor ** rollbacks)
    rollback_step: int = 0   # the step the last rollback went back to
    rollbacks: int = 0
    events: list = dataclasses.field(default_factory=list)

    def lr_factor_at(self, recovery_steps: int) -> float:
        """The LR factor now: back from ``lr_factor`` to 1 linearly over
        ``recovery_steps`` steps after the last rollback (0: it stays lowered)."""
        if recovery_steps <= 0 or self.lr_factor >= 1.0:
            return self.lr_factor
        progress = min(1.0, (self.step - self.rollback_step) / recovery_steps)
        return self.lr_factor + (1.0 - self.lr_factor) * progress

    def meta(self, seed: int, watchdog, **records) -> dict:
        """The checkpoint's record; ``records``: what else defines the run (the config
        of the session saving it, the data's digest)."""
        return {"step": self.step, "batches_consumed": self.batches, "seed": seed,
                "lr_factor": self.lr_factor, "rollback_step": self.rollback_step,
                "rollbacks": self.rollbacks, "events": self.events, "watchdog": watchdog.state(),
                **records}

    @classmethod
    def from_meta(cls, meta: dict) -> "Position":
        step = int(meta["step"])
        return cls(step=step, batches=int(meta.get("batches_consumed", step)),
                   # "lr_multiplier": the key's name in checkpoints saved before this release.
                   lr_factor=float(meta.get("lr_factor", meta.get("lr_multiplier", 1.0))),
                   rollback_step=int(meta.get("rollback_step", 0)),
                   rollbacks=int(meta.get("rollbacks", 0)), events=list(meta.get("events", [])))
