"""The processes of a multi-process run: joining them, and ending in one line when one dies.

What JAX (0.10, gloo on the CPU) does when a process of the run dies:
- a collective with the dead process fails at once in each survivor's main thread
  (``JaxRuntimeError: Gloo all-reduce failed ... Connection reset by peer``; from a
  jitted call it may be a ``ValueError`` with the same text);
- the coordination service (run by process 0) takes a process for dead once its
  heartbeats stop for ``heartbeat_timeout_seconds`` and tells the others; a worker's
  client learns at once that process 0 is gone (its error polling RPC fails). Either way
  the client calls its ``missed_heartbeat_callback``, by default a ``LOG(FATAL)``
  ("Terminating process because the JAX distributed service detected fatal errors"):
  a C++ stack trace, then SIGABRT (exit 134). jaxlib 0.10 cannot call a Python
  callback there instead (it cannot pass the ``absl::Status`` to Python: std::bad_cast,
  then std::terminate);
- the atexit ``jax.distributed.shutdown`` of a survivor that printed its traceback
  waits at the shutdown barrier for the dead process until the heartbeat timeout,
  then ends in the same abort; a process whose peers never join ends the same way
  when ``initialization_timeout`` runs out inside ``connect``.

So a collective's error is a ``PeerError`` here (``is_peer_failure``, ``peer_error``;
the session does not close its checkpoints then: orbax would wait at a barrier for the
dead process), and ``lbw_jax.train.run`` prints its one line and exits with code 5 by
``os._exit``: the atexit shutdown never runs. A worker whose process 0 died is gone a
few milliseconds after the client's fatal log line ("F... client.h] Terminating
process"), which it may still print, and long before that log's stack trace and abort.
The join runs in a helper thread that the main thread waits ``distributed.init_timeout_s``
for, ``JOIN_MARGIN_S`` less than the deadline the client is given: a process that never
joins is a ``PeerError`` too. The heartbeat timeout (``distributed.peer_timeout_s``)
bounds the rest: a survivor that meets no failed collective (a hang) is ended by JAX's
own abort within it.
"""

from __future__ import annotations

import inspect
import os
import re
import threading

import jax

from lbw_jax.train.errors import PeerError, _chain, first_line

# The client's own join deadline is this much later than the main thread's wait, so the
# main thread reports first (the client would abort the process at its deadline).
JOIN_MARGIN_S = 10
_CLUSTER_VARS = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES",
                 "OMPI_COMM_WORLD_SIZE")
# What a collective or the coordination service says when a peer is gone (gloo, NCCL,
# gRPC); an error of the runtime with none of these is not taken for a dead peer.
_PEER_SIGNS = ("gloo", "nccl", "connection reset", "connection closed", "connection refused",
               "broken pipe", "socket closed", "end of file", "coordination service",
               "heartbeat", "barrier", "unavailable:", "deadline_exceeded", "preempted")
# The status a runtime error's text starts with (absl's codes).
_STATUS = re.compile(r"(UNKNOWN|UNAVAILABLE|INTERNAL|DEADLINE_EXCEEDED|ABORTED|CANCELLED|"
                     r"FAILED_PRECONDITION|NOT_FOUND|ALREADY_EXISTS):")
# The process ids a coordination service error names: "/job:jax_worker/replica:0/task:1",
# "Task 1 heartbeat timeout".
_TASK = re.compile(r"/task:(\d+)|\btask (\d+) heartbeat", re.IGNORECASE)
_output_dir = ""


def join(cfg) -> None:
    """Joins the processes of a multi-process run before anything touches a device; a
    process that has not joined within ``distributed.init_timeout_s`` is a ``PeerError``."""
    global _output_dir
    d = cfg.distributed
    if d.coordinator:
        if d.num_processes > 1 and jax.config.jax_platforms in ("cpu", None, ""):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        where = dict(coordinator_address=d.coordinator, num_processes=d.num_processes,
                     process_id=d.process_id)
    elif any(k in os.environ for k in _CLUSTER_VARS):
        where = {}  # the cluster environment says how
    else:
        return
    _output_dir = cfg.output_dir
    wait = int(d.init_timeout_s)
    # (the shutdown barrier at a normal end waits for the slowest process, e.g. process 0
    # writing the summary and plot; a peer that dies meanwhile fails it at the heartbeat
    # timeout anyway)
    kwargs = _accepted(dict(where, initialization_timeout=wait + JOIN_MARGIN_S,
                            heartbeat_timeout_seconds=int(d.peer_timeout_s),
                            shutdown_timeout_seconds=max(60, int(d.peer_timeout_s))))
    outcome: list[BaseException] = []

    def initialize():
        try:
            jax.distributed.initialize(**kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            outcome.append(e)

    helper = threading.Thread(target=initialize, name="jax-distributed-join", daemon=True)
    helper.start()
    helper.join(wait)
    if helper.is_alive():
        raise PeerError(_join_message(d, wait, None))
    if outcome and is_peer_failure(outcome[0]):
        raise PeerError(_join_message(d, wait, outcome[0])) from outcome[0]
    if outcome:
        raise outcome[0]


def _accepted(kwargs: dict) -> dict:
    """The arguments this jax's ``jax.distributed.initialize`` takes; for a timeout it
    does not take (another jax's signature), JAX's default applies and a note says so."""
    accepted = inspect.signature(jax.distributed.initialize).parameters
    for name in [k for k in kwargs if k not in accepted]:
        print(f"note: jax {jax.__version__}'s jax.distributed.initialize takes no {name}; "
              f"JAX's default applies instead of the config's", flush=True)
        kwargs.pop(name)
    return kwargs


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is the runtime's report of a
    collective or coordination call that failed because a peer process is gone. (jax
    raises a ``JaxRuntimeError``, or from a jitted call a ``ValueError``; its text
    starts with the status, e.g. ``UNKNOWN: Gloo AllGather failed``.)"""
    if not jax.distributed.is_initialized():
        return False
    runtime = getattr(jax.errors, "JaxRuntimeError", None) or jax.errors.XlaRuntimeError
    for e in _chain(error):
        text = str(e).strip()
        from_runtime = isinstance(e, runtime) or (
            isinstance(e, (RuntimeError, ValueError)) and _STATUS.match(text) is not None)
        if from_runtime and any(sign in text.lower() for sign in _PEER_SIGNS):
            return True
    return False


def peer_error(error: BaseException) -> PeerError:
    """The ``PeerError`` that ``error`` (``is_peer_failure``) is reported as: which process
    is gone (the runtime may name it; of two processes it is the other one), this one's
    end, and what to do."""
    me, n = jax.process_index(), jax.process_count()
    text = " ".join(str(e) for e in _chain(error))
    dead = sorted({int(a or b) for a, b in _TASK.findall(text)} - {me})
    if not dead and n == 2:
        dead = [1 - me]
    who = (f"the coordinator (process 0 of {n})" if dead == [0] else
           f"process {', '.join(map(str, dead))} (of {n})" if dead else "a peer process")
    return PeerError(
        f"{who} of this multi-process run died or cannot be reached, so process {me} "
        f"stopped too ({first_line(error)}). Restart all {n} processes with the same "
        f"command: the run resumes from its newest checkpoint in {_output_dir}")


def _join_message(d, wait: int, error: BaseException | None) -> str:
    n = f"all {d.num_processes}" if d.coordinator else "all the"
    me = f"process {d.process_id}" if d.coordinator else "this process"
    where = d.coordinator or "from the cluster environment"
    why = f": {first_line(error)}" if error is not None else ""
    return (f"{me} waited distributed.init_timeout_s={wait} s, but not {n} processes of this "
            f"run joined (coordinator {where}{why}). Start every process with the same "
            f"command (each with its own distributed.process_id), or raise "
            f"distributed.init_timeout_s")
