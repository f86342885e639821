"""The errors ``lbw_jax.train.run`` reports as one line, and the exit code of each outcome.

Exit codes (``python -m lbw_jax.train.run``):
  0    finished, or already finished (its summary is left as it was);
  1    a bug: an error this code does not expect, printed with its traceback (please
       report it); every expected failure has one of the codes below and one line;
  2    a config or input error: the setting or file is named, nothing was trained; also
       a run folder that another run holds (its host and pid are named), that cannot be
       written, or whose data or LR schedule a resume would change;
  3    the divergence watchdog stopped the run (``train.on_divergence=stop``, or the
       rollbacks were used up); nothing non-finite was saved;
  4    no usable checkpoint, or a checkpoint could not be written (e.g. a full disk);
  5    a peer process of a multi-process run died, or never joined; the newest checkpoint
       is intact: restart every process with the same command to resume;
  130  SIGINT, after saving a checkpoint;
  143  SIGTERM, after saving a checkpoint.
"""

from __future__ import annotations

import errno
import os

EXIT_CONFIG = 2
EXIT_DIVERGED = 3
EXIT_CHECKPOINT = 4
EXIT_PEER = 5
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


class RunError(Exception):
    """An error ``lbw_jax.train.run`` reports as one line (no traceback unless ``--verbose``);
    each subclass has its documented exit code."""

    exit_code = EXIT_CONFIG


class ConfigError(RunError, ValueError):
    """A config setting that cannot work; the message names it and what is allowed."""

    exit_code = EXIT_CONFIG


class InputError(RunError, ValueError):
    """A corpus, tokenizer or run folder that cannot be used; the message names the file."""

    exit_code = EXIT_CONFIG


class DivergenceError(RunError):
    """The watchdog stopped a diverging run."""

    exit_code = EXIT_DIVERGED


class CheckpointError(RunError):
    """No usable checkpoint to continue from, or a checkpoint that could not be written."""

    exit_code = EXIT_CHECKPOINT


class PeerError(RunError):
    """Another process of a multi-process run died or never joined."""

    exit_code = EXIT_PEER


# Causes a one-line error must never lose, wherever a library puts them (tensorstore puts
# the paths first and the cause last; orbax may raise a wrapper whose cause is chained).
KEPT_CAUSES = tuple(os.strerror(code) for code in (
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO, errno.ENOENT))


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def first_line(error: BaseException) -> str:
    """``Type: first line`` of an error from a library, for a one-line message; a long
    line keeps its start and its end, and a cause of ``KEPT_CAUSES`` found anywhere in
    the error, its later lines or its chained causes (e.g. "No space left on device")
    is kept in the line, appended when the cut or the first line lost it."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    line = lines[0] if lines else ""
    if len(line) > 300:
        line = f"{line[:140]} ... {line[-160:]}"
    text = " ".join(str(e) + " " + str(getattr(e, "strerror", "") or "") for e in _chain(error))
    lost = [cause for cause in KEPT_CAUSES if cause in text and cause not in line]
    return f"{type(error).__name__}: {line}" + "".join(f" [{cause}]" for cause in lost)
