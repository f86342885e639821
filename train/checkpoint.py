"""Checkpoints with orbax's CheckpointManager: trainable and frozen parameters, the
optimizer and guard state, and a JSON record of the step, data position and seed."""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp


class CheckpointRestoreError(RuntimeError):
    """A checkpoint that cannot be restored into this run; earlier ones are untouched."""


class Checkpoints:
    def __init__(self, directory, keep: int):
        self.directory = pathlib.Path(directory).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict, *, force: bool = False):
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

    def restore(self, step: int, abstract_state):
        """Restores ``step`` into the shapes, dtypes and shardings of ``abstract_state``."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - orbax raises many types; all mean "unusable"
            raise CheckpointRestoreError(
                f"checkpoint {self.directory / str(step)} cannot be restored into this run "
                f"(corrupt, or saved by a different model/optimizer config): "
                f"{type(e).__name__}: {e}. Nothing was deleted; move it aside to resume from an "
                f"earlier step.") from e
        return restored["state"], restored["meta"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
