"""What a benchmark ran on: the device, its memory, and the software stack down to cuDNN.

    python bench/device_info.py

One ``name: value`` line each, so a session log names its device and versions exactly
(docs/gpu.md quotes them). Any line that cannot be read says why instead of failing.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cuda_versions() -> dict[str, str]:
    """cuDNN, CUDA runtime and driver as jaxlib's CUDA plugin reports them (a private
    module of jax's: no public API exposes them)."""
    try:
        from jax._src.lib import cuda_versions
    except ImportError as e:
        return {"cudnn (jax)": f"unknown ({e})"}
    if cuda_versions is None:
        return {"cudnn (jax)": "none: jaxlib has no CUDA plugin here"}
    out = {}
    for name, getter in (("cudnn (jax)", "cudnn_get_version"),
                         ("cuda runtime (jax)", "cuda_runtime_get_version"),
                         ("cuda driver (jax)", "cuda_driver_get_version")):
        try:
            out[name] = str(getattr(cuda_versions, getter)())
        except Exception as e:  # noqa: BLE001 - a version we cannot read is reported, not fatal
            out[name] = f"unknown ({type(e).__name__}: {e})"
    return out


def main():
    lines = {}
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True)
        lines["nvidia-smi"] = (query.stdout.strip() or query.stderr.strip()).replace("\n", "; ")
    else:
        lines["nvidia-smi"] = "not found (no NVIDIA driver on this machine)"
    import jax

    lines["backend"] = jax.default_backend()
    devices = jax.devices()
    lines["devices"] = f"{len(devices)} x {devices[0].device_kind}"
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
        lines["memory available to jax"] = f"{stats['bytes_limit'] / 1024 ** 3:.1f} GiB"
    # The CUDA 12 and CUDA 13 plugins are separate packages (the lent H200 image has 13).
    for package in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax",
                    "orbax-checkpoint", "ml_collections", "tensorboardX", "transformers", "torch"):
        lines[package] = _version(package)
    lines.update(_cuda_versions())
    try:
        import torch

        lines["cudnn (torch)"] = str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "no CUDA"
    except ImportError:
        pass
    for name, value in lines.items():
        print(f"{name}: {value}", flush=True)


if __name__ == "__main__":
    main()
