"""``python -m lbw_jax.train.run`` keeps the libraries' background noise off the console.

A failed checkpoint write (a full disk) makes orbax's and tensorstore's background
threads print one traceback per pending write, then "Event loop is closed" as they
shut down: over a thousand lines above the one line that says what happened. From the
start of a command-line run, what the libraries log (orbax, asyncio, jax: ``logging``
and absl) and whatever background threads write to stderr go to
``<output_dir>/library.log`` instead (dropped if even that cannot be written, as on a
full disk). The main thread's output (the progress bar, the summary, the one error
line) still reaches the console.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import threading

LIBRARY_LOG = "library.log"


class _QuietFileHandler(logging.FileHandler):
    def handleError(self, record):  # noqa: N802 - logging's name
        pass  # a full or read-only disk: the record is lost, not printed with a traceback


class _MainThreadStderr:
    """sys.stderr for the main thread; other threads' writes go to the log."""

    def __init__(self, console, log_path: pathlib.Path):
        self.console, self.log_path = console, log_path

    def write(self, text):
        if threading.current_thread() is threading.main_thread():
            return self.console.write(text)
        try:
            with open(self.log_path, "a") as f:
                f.write(text)
        except OSError:
            pass
        return len(text)

    def __getattr__(self, name):  # flush, fileno, isatty, encoding...
        return getattr(self.console, name)


def route_library_output(out_dir) -> pathlib.Path:
    """Sends the libraries' logging and background threads' stderr to
    ``out_dir/library.log`` for the rest of the process; returns the path."""
    path = pathlib.Path(out_dir).expanduser() / LIBRARY_LOG
    handler = _QuietFileHandler(path, delay=True)  # opened on the first record
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    logging.raiseExceptions = False
    # (threading's default excepthook writes to sys.stderr from the failing thread.)
    sys.stderr = _MainThreadStderr(sys.stderr, path)
    return path
