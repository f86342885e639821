"""What a run's numbers depend on besides the code: recorded in ``summary.json``.

With the same code, stack and config a run is bit-identical on one machine (resume
included), but another CPU model can give other figures: XLA:CPU generates code for the
CPU's vector extensions and sizes its kernels' blocking from its caches, which changes the
last bits of the arithmetic, and a guard's discrete decisions (a statistic just above or
below a threshold) can turn those into different runs (docs/default_run.md). So the summary names the CPU and the stack,
and figures are compared between runs with the same ``machine`` record.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_features() -> str:
    """The widest x86 vector extension the CPU has (the one XLA:CPU may emit)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    for name in ("amx_tile", "avx512f", "avx2", "avx"):
        if name in flags:
            return name
    return platform.machine()


def describe() -> dict:
    import jax

    devices = jax.devices()
    return {"devices": f"{len(devices)} x {devices[0].device_kind}",
            "cpu": f"{_cpu_model()} ({_cpu_features()}, {os.cpu_count()} cores)",
            "jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"),
            "flax": importlib.metadata.version("flax"), "optax": importlib.metadata.version("optax")}
