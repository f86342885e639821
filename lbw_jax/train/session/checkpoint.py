"""Checkpoints that are only kept when they are good.

orbax's ``CheckpointManager`` writes each step (trainable and frozen parameters,
optimizer and guard state, and a JSON record of the step, data position, seed and
watchdog state). On top of it:

* the caller saves only finite state (``Trainer.state_is_finite``);
* the SHA-256 of each file of a step is recorded in ``<run>/checksums/<step>.json``
  by orbax's post-finalization hook: after every file of the step is written and
  before orbax commits the step (renames its temporary folder), so no committed step
  lacks them, whatever kills the process when (with an orbax that lacks the hook, they
  are written when the save is waited for, as before);
* only then are older steps rotated out, so the newest verified checkpoints are never
  fewer than ``keep``; the watchdog's rollback target and the checkpoints that may
  become it (``protected``, ``lbw_jax.train.session.watchdog.Watchdog.protected``) are kept besides them;
* a restore checks those checksums and the restored values' finiteness. A corrupt or
  unusable step is reported and the next older one is tried; the unusable ones are
  moved to ``<run>/checkpoints_unusable/`` (never deleted) once an older one works.
  A step with no checksums (written by code from before they were recorded at save
  time) is restored with a notice saying it is unverified.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Callable

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from lbw_jax.train.data.fingerprint import file_sha256
from lbw_jax.train.errors import CheckpointError, first_line
from lbw_jax.train.records.library_log import LIBRARY_LOG
from lbw_jax.train.records.repair import read_json


class CheckpointRestoreError(CheckpointError):
    """No checkpoint of the run can be restored into it; nothing was moved or deleted."""


# orbax rewrites the step's own metadata (commit timestamps) when it commits the step,
# after the post-finalization hook has run: it holds no state, so it is not hashed.
_REWRITTEN_AT_COMMIT = ("_CHECKPOINT_METADATA",)


def _commit_records_damaged(step_dir: pathlib.Path) -> list[str]:
    """The commit records orbax writes after the post-finalization hook (so no checksum
    covers them) that are missing or unreadable."""
    damaged = []
    try:
        if not isinstance(read_json(step_dir / "_CHECKPOINT_METADATA"), dict):
            damaged.append("_CHECKPOINT_METADATA")
    except (OSError, ValueError):
        damaged.append("_CHECKPOINT_METADATA")
    # (An orbax that writes the step's commit_success.txt writes its items' too.)
    success = step_dir / "commit_success.txt"
    if success.exists():
        text = success.read_bytes()   # "Checkpoint commit was successful to <step dir>"
        if not (text.startswith(b"Checkpoint commit was successful to ")
                and text.rstrip().endswith(f"/{step_dir.name}".encode())):
            damaged.append("commit_success.txt")
    elif (step_dir / "state" / "commit_success.txt").exists():
        damaged.append("commit_success.txt")
    return damaged


def file_digests(directory: pathlib.Path) -> dict[str, str]:
    """The SHA-256 of every file of a checkpoint step's folder, by relative path (the
    metadata orbax rewrites at commit left out)."""
    return {str(path.relative_to(directory)): file_sha256(path)
            for path in sorted(p for p in directory.rglob("*") if p.is_file()
                               and str(p.relative_to(directory)) not in _REWRITTEN_AT_COMMIT)}


def remove_partial_writes(directory: pathlib.Path) -> list[str]:
    """Removes the temporary folders of steps whose write never committed (the process
    died mid-save): orbax only renames a step's temporary folder once every file is
    written, so such a folder holds nothing a resume may use, and orbax itself would
    leave it until that step number is saved again (with another checkpoint_every, never)."""
    partial = sorted(p for p in directory.glob("*.orbax-checkpoint-tmp*") if p.is_dir())
    for path in partial:
        shutil.rmtree(path)
    if partial:
        print(f"{directory}: removed {len(partial)} checkpoint write(s) a stopped run left "
              f"unfinished ({', '.join(p.name for p in partial)}); the committed checkpoints "
              f"are untouched", flush=True)
    return [p.name for p in partial]


class Checkpoints:
    def __init__(self, run_dir, keep: int, *, lead: bool = True):
        self.run_dir = pathlib.Path(run_dir).absolute()
        self.directory = self.run_dir / "checkpoints"
        self.sums = self.run_dir / "checksums"
        self.keep, self.lead = keep, lead
        # The steps no rotation may delete, asked for when rotating: the watchdog's
        # rollback target and its candidates (the loop passes Watchdog.protected).
        self.protected: Callable[[], set[int]] = set
        self._unverified: list[int] = []
        self._writing: int | None = None  # the step whose files orbax is writing
        if lead:
            remove_partial_writes(self.directory)
        # Rotation is ours (max_to_keep=None): orbax would delete an older step as soon
        # as a newer one is written, before anyone knows the newer one is good.
        try:
            hook = ocp.AsyncOptions(post_finalization_callback=self._written)
        except TypeError:  # an orbax without the hook: hashed once the save is waited for
            hook = None
        self._hashed_at_commit = hook is not None
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                max_to_keep=None, create=True, async_options=hook),
            item_names=("state", "meta"))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def read_meta(self, step: int) -> dict:
        """The JSON record saved with ``step`` (not its arrays)."""
        try:
            return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 - orbax raises many types; all mean "unreadable"
            raise CheckpointError(f"the record of checkpoint {step} in {self.directory} cannot "
                                  f"be read: {first_line(e)}") from e

    # -- saving -------------------------------------------------------------------------

    def save(self, step: int, state, meta: dict) -> None:
        """Starts writing ``step`` (in the background); the previous save is verified first."""
        self.finish()
        self._writing = step
        try:
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # noqa: BLE001 - orbax and the filesystem raise many types
            raise CheckpointError(f"could not write checkpoint {step} to {self.directory}: "
                                  f"{first_line(e)} (is the disk full?); the earlier "
                                  f"checkpoints are untouched (details: "
                                  f"{self.run_dir / LIBRARY_LOG})") from e
        self._unverified.append(step)

    def finish(self) -> None:
        """Waits for pending writes, records their checksums, then rotates old steps out."""
        if not self._unverified:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"could not write checkpoint {self._unverified[-1]} to "
                                  f"{self.directory}: {first_line(e)} (is the disk full?); "
                                  f"the earlier checkpoints are untouched (details: "
                                  f"{self.run_dir / LIBRARY_LOG})") from e
        for step in self._unverified:
            step_dir = self.directory / str(step)
            if not step_dir.is_dir():
                raise CheckpointError(f"checkpoint {step} was not written to {step_dir}")
            if self.lead and not self._hashed_at_commit:
                self._record_checksums(step)
            if self.lead and not (self.sums / f"{step}.json").exists():
                raise CheckpointError(f"checkpoint {step} was written but its checksums were "
                                      f"not recorded in {self.sums}")
        self._unverified.clear()
        self._rotate()

    def _written(self) -> None:
        """orbax's post-finalization hook (its background thread): every file of the step
        is in its temporary folder, which orbax renames to the step's folder next."""
        if self.lead and self._writing is not None:
            self._record_checksums(self._writing)

    def _record_checksums(self, step: int) -> None:
        tmp_dir = self.directory / f"{step}.orbax-checkpoint-tmp"
        step_dir = tmp_dir if tmp_dir.is_dir() else self.directory / str(step)
        self.sums.mkdir(exist_ok=True)
        target = self.sums / f"{step}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step, "files": file_digests(step_dir)}, indent=1))
        tmp.replace(target)

    def _rotate(self) -> None:
        old = self.steps()[:-self.keep]
        keep = self.protected()
        for step in [s for s in old if s not in keep]:
            self.manager.delete(step)
            if self.lead:
                (self.sums / f"{step}.json").unlink(missing_ok=True)

    # -- restoring ----------------------------------------------------------------------

    def verify(self, step: int, say: Callable[[str], None] = print) -> str | None:
        """None if ``step``'s files match their recorded checksums; else what differs.
        A step with none recorded (code from before checksums were taken at save time)
        cannot be verified: that is said, and the finiteness check is all it gets."""
        record = self.sums / f"{step}.json"
        if not record.exists():
            say(f"checkpoint {step} has no recorded checksums ({record} is missing: it was "
                f"written by an older version of this code, or the file was deleted); "
                f"restoring it UNVERIFIED")
            return None
        try:
            expected = read_json(record)["files"]
            if not isinstance(expected, dict):
                raise TypeError("its 'files' is not a mapping")
        except (ValueError, KeyError, TypeError) as e:
            return (f"its checksum record {record} is damaged ({first_line(e)}), so its files "
                    f"cannot be verified")
        actual = file_digests(self.directory / str(step))
        for name, digest in expected.items():
            if name not in actual:
                return f"file {name} is missing"
            if actual[name] != digest:
                return f"file {name} does not match its checksum"
        for name in _commit_records_damaged(self.directory / str(step)):
            say(f"checkpoint {step}: {name} (orbax's record of the commit, written after the "
                f"checksums; it holds no state) is damaged or missing; every file of the "
                f"step's state matches its checksum, so the step is used")
        return None

    def restore(self, abstract_state, *, is_finite: Callable, before: int | None = None,
                say: Callable[[str], None] = print):
        """Restores the newest usable step (below ``before`` if given) into the shapes,
        dtypes and shardings of ``abstract_state``; returns ``(step, state, meta)``.

        Newer steps that are corrupt, non-finite or unreadable are reported through
        ``say`` and, once an older one restores, moved to ``checkpoints_unusable/``
        (steps at or after ``before``, a rollback's onset, to ``checkpoints_discarded/``).
        Raises ``CheckpointRestoreError`` when no step is usable (nothing is moved)."""
        self.finish()
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        steps = self.steps()
        discarded = [s for s in steps if before is not None and s >= before]
        failures = []
        for step in reversed([s for s in steps if s not in discarded]):
            problem = self.verify(step, say)
            if problem is None:
                try:
                    restored = self.manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
                except Exception as e:  # noqa: BLE001 - orbax raises many types; all mean "unusable"
                    problem = f"cannot be restored into this run ({first_line(e)})"
                else:
                    if not is_finite(restored["state"]):
                        problem = "holds non-finite values"
            if problem is None:
                self._move_aside(discarded, "checkpoints_discarded",
                                 "saved after the divergence began", say)
                self._move_aside([s for s, _ in failures], "checkpoints_unusable", "unusable", say)
                return step, restored["state"], restored["meta"]
            failures.append((step, problem))
            say(f"checkpoint {step} is unusable: {problem}")
        failures += [(s, f"saved at or after step {before}, when the divergence began")
                     for s in reversed(discarded)]
        reasons = "; ".join(f"step {s}: {p}" for s, p in failures) or "it holds no checkpoint"
        scope = "" if before is None else f" from before step {before}"
        raise CheckpointRestoreError(
            f"no usable checkpoint{scope} in {self.directory}: {reasons}. Nothing was moved or "
            f"deleted. If the model or optimizer changed, train into a new output_dir.")

    def _move_aside(self, steps: list[int], folder: str, why: str, say) -> None:
        if not steps:
            return
        if jax.process_count() > 1:  # everyone has finished reading before anything moves
            multihost_utils.sync_global_devices(f"move_aside_{folder}_{steps}")
        if self.lead:
            (self.run_dir / folder).mkdir(exist_ok=True)
            for step in steps:
                dest = self.run_dir / folder / str(step)
                if dest.exists():
                    shutil.rmtree(dest)  # an older copy of the same step number
                shutil.move(str(self.directory / str(step)), dest)
                sums = self.sums / f"{step}.json"
                if sums.exists():
                    shutil.move(str(sums), dest / "checksums.json")
            say(f"moved checkpoint(s) {steps} ({why}) to {self.run_dir / folder}")
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"moved_aside_{folder}_{steps}")
        self.manager.reload()

    def close(self, *, verify: bool = True) -> None:
        """Verifies pending saves (unless an error is already being reported), then
        shuts orbax's background threads down."""
        try:
            if verify:
                self.finish()
        finally:
            try:
                self.manager.close()
            except Exception as e:  # noqa: BLE001 - a pending write that failed
                if verify:  # (else an error is already being reported: it stays the one)
                    raise CheckpointError(f"could not finish writing checkpoints to "
                                          f"{self.directory}: {first_line(e)} (details: "
                                          f"{self.run_dir / LIBRARY_LOG})") from e
