"""What to tell a user whose model or dataset id could not be fetched from the Hugging
Face hub: usually a machine without network whose local cache lacks it."""

from __future__ import annotations

import os

from lbw_jax.train.errors import first_line

_OFFLINE_SIGNS = ("offline", "connection", "couldn't reach", "could not reach", "resolve",
                  "not cached", "local_files_only", "locally", "network", "timed out",
                  "max retries", "localentrynotfound", "temporary failure")


def _cache() -> str:
    return os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")


def offline_hint(error: BaseException, kind: str, name: str, config_name: str | None = None) -> str:
    """The error's first line and, if it looks like a missing network, how to fetch
    ``name`` (a ``kind`` of "model" or "dataset") beforehand."""
    text = f"{type(error).__name__} {error}".lower()
    if not any(sign in text for sign in _OFFLINE_SIGNS):
        return first_line(error)
    if kind == "dataset":
        args = f"{name!r}" + (f", {config_name!r}" if config_name else "")
        fetch = f"python -c \"import datasets; datasets.load_dataset({args})\""
    else:
        fetch = f"hf download {name}"
    return (f"{name!r} is not in the local Hugging Face cache ({_cache()}) and the hub cannot "
            f"be reached ({first_line(error)}). Fetch it beforehand on a machine with network "
            f"(`{fetch}`, with the same HF_HOME), or point the setting at a local folder")
