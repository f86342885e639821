"""``python -m lbw_jax.train.run [--config NAME] [--config.a.b=value ...] [--verbose]``

With no arguments it trains the embedded default (``lbw_jax/train/configs/tiny.py``): a small
Qwen2-architecture model on the Jane Austen novels, on the CPU, in a few minutes.

A config or input error is one line on stderr and exit code 2 (``--verbose`` adds the
traceback); the other exit codes are listed in ``lbw_jax/train/errors.py`` and the README.
"""

from __future__ import annotations

import ast
import errno
import os
import pathlib
import signal
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from lbw_jax.train.configs import preset_path, resolve_argv
from lbw_jax.train.normalize import rename_flags
from lbw_jax.train.errors import (EXIT_CHECKPOINT, EXIT_CONFIG, EXIT_SIGNAL, ConfigError, PeerError,
                                  RunError, first_line)
from lbw_jax.train.records.library_log import route_library_output
from lbw_jax.train.session import peers
from lbw_jax.train.session.loop import run

DEFAULT_CONFIG = preset_path("tiny")
# The deprecated form of policy and baseline knobs (they are config fields now:
# --config.optimizer.governor.tolerance=0.05). Its groups hold no fields, so ml_collections
# cannot parse these flags; they are taken off the command line here, and the run moves
# them into the active subtree with a deprecation note (lbw_jax.train.optim.fold_deprecated_knobs).
_KNOB_FLAGS = ("--config.optimizer.policy_kwargs.", "--config.optimizer.baseline_kwargs.")


class _StopRequested:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint and exits with 143/130."""

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
    """Runs (or resumes) the run that ``cfg`` describes; returns its summary.

    Raises a ``lbw_jax.train.errors.RunError`` (config, input, checkpoint or divergence) with
    a one-line message; ``python -m lbw_jax.train.run`` turns it into an exit code. A SIGTERM or
    SIGINT during the run saves a checkpoint and ends it, then reaches the caller's own
    handler as if ``train`` had not held it: a caller (a test runner, a user's script)
    that a signal should stop is stopped, and a stopped run never passes for a finished
    one."""
    summary, stop = _train_stoppable(cfg)
    if stop:
        signal.raise_signal(signal.Signals[stop.signal])   # the caller's handlers are back
    return summary


def _train_stoppable(cfg):
    """``run`` under ``_StopRequested``: (its summary, the stop flag). A dead peer
    process, wherever the run meets it (a step, an evaluation, a checkpoint's sync, a
    library's error that wraps the collective's), is a ``PeerError``."""
    with _StopRequested() as stop:
        try:
            return run(cfg, stop), stop
        except Exception as e:
            if isinstance(e, PeerError) or not peers.is_peer_failure(e):
                raise
            raise peers.peer_error(e) from e


def split_knob_flags(argv: list[str]) -> tuple[list[str], dict[str, dict]]:
    """Takes the deprecated ``--config.optimizer.policy_kwargs.NAME=VALUE`` (and
    ``baseline_kwargs``) off ``argv``; VALUE is a Python literal (``0.5``, ``True``,
    ``10``) or a string."""
    rest, knobs = [], {"policy_kwargs": {}, "baseline_kwargs": {}}
    for arg in argv:
        prefix = next((p for p in _KNOB_FLAGS if arg.startswith(p)), None)
        if prefix is None:
            rest.append(arg)
            continue
        name, sep, text = arg[len(prefix):].partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"{arg}: write {prefix}NAME=VALUE")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        knobs[prefix.split(".")[-2]][name] = value
    return rest, knobs


def apply_knobs(cfg, knobs: dict[str, dict]) -> None:
    for field, values in knobs.items():
        if values:
            with cfg.unlocked():
                cfg.optimizer[field].update(values)


def _fail(message: str, code: int):
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    # os._exit, not sys.exit: a failed restore can leave orbax's reader threads running,
    # and interpreter teardown would bury this line under their "Event loop is closed".
    # In a multi-process run it also skips the atexit jax.distributed.shutdown, whose
    # barrier would wait for a dead peer, then abort (lbw_jax/train/session/peers.py).
    os._exit(code)


def _one_line(error: BaseException) -> str:
    text = str(error).replace("\\n", " ").replace("\\'", "'")
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: an unknown field
        key = text.strip("'\" ").split("'")[0]
        flag = next((a.split("=")[0] for a in sys.argv if a.startswith("--config.")
                     and a.split("=")[0].endswith("." + key)), key)
        hint = text.split("Did you mean", 1)
        return (f"{flag}: no such config field" +
                (f" (did you mean{hint[1].rstrip(chr(39) + chr(34))})" if len(hint) > 1 else ""))
    return " ".join(text.split())


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - absl and ml_collections raise many types
        _fail(f"command line: {_one_line(e)}", EXIT_CONFIG)


def main(argv, config, verbose, knobs=None):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        _fail(f"unexpected arguments: {argv[1:]} (settings are --config.SECTION.KEY=VALUE)", EXIT_CONFIG)
    cfg = config.value
    try:
        cfg.keys()  # a config file that failed to load only says so when read
    except OSError as e:
        _fail(f"--config: {_one_line(e).split(' Attempted')[0]} ({str(e).strip().splitlines()[-1].strip()})",
              EXIT_CONFIG)
    route_library_output(cfg.output_dir)
    try:
        apply_knobs(cfg, knobs or {})
        summary, _ = _train_stoppable(cfg)   # a signal ends the CLI with its exit code below
    except RunError as e:
        if verbose.value:
            traceback.print_exc()
        _fail(str(e), e.exit_code)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A full disk can strike any write (metrics, TensorBoard, a record), not only a
        # checkpoint's; it is the same outcome: exit 4, the checkpoints already written intact.
        if verbose.value:
            traceback.print_exc()
        _fail(f"could not write to {cfg.output_dir}: {first_line(e)} (the disk is full); the "
              f"checkpoints already written are untouched", EXIT_CHECKPOINT)
    if summary.get("signal"):
        sys.stdout.flush()
        os._exit(EXIT_SIGNAL[summary["signal"]])


def cli():
    try:
        sys.argv[:], knobs = split_knob_flags(sys.argv)
        sys.argv[:] = resolve_argv(sys.argv)
        sys.argv[:], notes = rename_flags(sys.argv)
    except ConfigError as e:
        _fail(str(e), e.exit_code)
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    verbose = flags.DEFINE_bool("verbose", False, "Print tracebacks of config, input and checkpoint errors.")
    try:  # ml_collections applies the --config.* overrides of sys.argv as it defines the flag
        config = config_flags.DEFINE_config_file(
            "config", DEFAULT_CONFIG, "A config file exposing get_config().", lock_config=True)
    except Exception as e:  # noqa: BLE001 - an unknown key or a bad value in an override
        _fail(f"command line: {_one_line(e)}", EXIT_CONFIG)
    app.run(lambda a: main(a, config, verbose, knobs), flags_parser=_parse_flags)


if __name__ == "__main__":
    cli()
