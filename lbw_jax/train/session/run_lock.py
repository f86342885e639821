"""One process (one run) at a time in an ``output_dir``.

``<output_dir>/run.lock`` holds an exclusive ``flock`` for as long as the run lives, and
names its holder (host, pid, start time) for whoever is refused. The kernel drops a
``flock`` when its holder dies, however it dies, so a lock whose holder is gone is
simply taken over; the record it left says who that was, and the new holder says so.

A run of several processes takes the lock once, in process 0; the others check that
the lock names this run's token (broadcast from process 0), so a second multi-process
run on the same folder is refused in every process.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid

import jax
import numpy as np
from jax.experimental import multihost_utils

from lbw_jax.train.errors import InputError

LOCK_FILE = "run.lock"


def _holder(path) -> str:
    try:
        record = json.loads(path.read_text())
        return f"host {record['host']}, pid {record['pid']} (started {record['started']})"
    except (OSError, ValueError, KeyError):
        return "an unknown process (its record is unreadable)"


def _not_writable(out, error: OSError) -> InputError:
    return InputError(f"output_dir={str(out)!r} is not writable ({error.strerror or error}); "
                      f"choose a folder this user can write, or fix its permissions")


class RunLock:
    """Holds ``<out>/run.lock`` (``acquire``) until ``release`` or the process's death."""

    def __init__(self, out):
        self.out, self.path = out, out / LOCK_FILE
        self.token = ""
        self._fd = None

    def acquire(self, say=print) -> None:
        """Takes the lock or raises ``InputError`` naming its holder (exit 2)."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:  # EACCES, EROFS (a read-only mount), EPERM
            raise _not_writable(self.out, e) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"output_dir={str(self.out)!r} is in use by another run: "
                             f"{_holder(self.path)}. Wait for it to finish, stop it, or "
                             f"choose another output_dir") from None
        previous = os.read(fd, 4096)
        if previous.strip():  # a holder that died without releasing (kill -9, a crash)
            say(f"{self.path}: taking over the lock of a run that is no longer alive: "
                f"{_holder(self.path)}")
        self.token = uuid.uuid4().hex
        record = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise _not_writable(self.out, e) from e
        self._fd = fd

    def check(self, token: str) -> None:
        """In a process other than 0: the lock must be held by this run (``token``)."""
        try:
            held = json.loads(self.path.read_text()).get("token")
        except (OSError, ValueError) as e:
            raise InputError(f"{self.path}: process 0 of this run should hold it, but it "
                             f"cannot be read ({e}); is output_dir on a filesystem all "
                             f"processes share?") from e
        if held != token:
            raise InputError(f"output_dir={str(self.out)!r} is in use by another run: "
                             f"{_holder(self.path)}")

    def release(self) -> None:
        """Empties the record (a clean exit leaves nothing to take over) and unlocks."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass  # a folder that became read-only: the kernel still drops the lock
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def lock_run_folder(out, lead: bool, say=print) -> RunLock:
    """The run's lock: taken by process 0, checked by the others. Process 0 broadcasts
    its token even when it is refused (an empty one), so no process waits for it."""

    lock, refused = RunLock(out), None
    if lead:
        try:
            lock.acquire(say)
        except InputError as e:
            refused = e
    if jax.process_count() > 1:

        token = np.frombuffer(bytes.fromhex(lock.token or "0" * 32), np.uint8)
        token = bytes(np.asarray(multihost_utils.broadcast_one_to_all(token))).hex()
        if not lead and token == "0" * 32:
            raise InputError(f"output_dir={str(out)!r}: process 0 could not lock it "
                             f"(its own error says why)")
        if not lead:
            lock.check(token)
    if refused is not None:
        raise refused
    return lock
