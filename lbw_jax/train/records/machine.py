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

import jax


def _cpu() -> tuple[str, str]:
    """The CPU's model and the widest x86 vector extension it has (the one XLA:CPU may
    emit), from one read of /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}
    except OSError:
        return platform.processor() or platform.machine(), "unknown"
    flags = info.get("flags", "").split()
    widest = next((name for name in ("amx_tile", "avx512f", "avx2", "avx") if name in flags),
                  platform.machine())
    return info.get("model name", platform.machine()), widest


def describe() -> dict:
    """The devices, the CPU model and its widest vector extension, and the stack's versions."""
    devices, (model, widest) = jax.devices(), _cpu()
    return {"devices": f"{len(devices)} x {devices[0].device_kind}",
            "cpu": f"{model} ({widest}, {os.cpu_count()} cores)",
            "jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"),
            "flax": importlib.metadata.version("flax"), "optax": importlib.metadata.version("optax")}
