"""Test-wide setup: eight host CPU devices, so sharding tests run in-process.

XLA reads the flag once, when jax is first imported, so it must be set here,
before any test module imports jax.

A persistent compilation cache for the session (and the runs it starts, which inherit the
environment): many tests build the same small model's step again, in-process or in a
subprocess, and a cache hit replaces XLA's compilation of it. The key is the compiled
program, the backend and the versions, so a hit is the same executable; the folder is
the session's own and removed at its end.

The op-by-op (``without_jit``) variant of a chex test repeats its jitted twin's
specification many times slower: it runs in the full suite, not under ``-m "not slow"``.
"""

import atexit
import os
import shutil
import tempfile

import pytest

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="lbw-jax-tests-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.name.endswith("__without_jit"):
            item.add_marker(pytest.mark.slow)
