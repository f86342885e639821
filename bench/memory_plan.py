"""Memory plan for Qwen2.5-7B and 14B, computed on the CPU without a GPU.

Setups (the repository's configs, with ``model.name`` in place of the hub download):
* ``lora-1gpu``: configs/qwen7b.py / qwen14b.py (the paper's LoRA run) on one device;
* ``full-fsdp8``: full-parameter training (fp32 master weights, AdamW) over 8 devices
  with FSDP (``mesh.fsdp=8``), batch 16 x 1024 in 2 micro-batches of 8.

For each, ``Trainer.abstract`` builds the real train step from shapes only, and XLA
compiles it for this machine's CPU (8 host devices for FSDP) at full width and reduced
depth. Per device:
* parameters and optimizer state: exact, from the compiled step's argument sizes at
  full depth, scaled from the 1- and 2-layer programs (they grow linearly in layers);
* temporaries (activations, gradients, the loss's chunks): ``memory_analysis()`` of
  the 1- and 2-layer steps, extrapolated linearly to the full depth (with scanned
  layers the program is the same at any depth; only the per-layer buffers grow).

CPU XLA is not GPU XLA: fusion and bf16 handling differ, so the temporaries are an
estimate; the arguments are exact. The GPU check is ``bench/gpu_step.py``.

    python bench/memory_plan.py
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import importlib  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from train.models import named_config  # noqa: E402
from train.trainer import Trainer  # noqa: E402

GIB = 1024 ** 3


def setup_config(model: str, setup: str, layers: int):
    size = model.split("-")[1]   # 7b, 14b
    cfg = importlib.import_module(f"configs.qwen{size}").get_config()
    cfg.model.pretrained, cfg.model.name = "", ""
    arch = named_config(model)
    cfg.model.arch.update({**arch.__dict__, "num_layers": layers})
    if setup == "lora-1gpu":
        cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 1, 1
        devices = jax.devices()[:1]
    else:
        cfg.lora.enabled = False
        cfg.model.param_dtype = "float32"
        cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 8, 1
        cfg.train.batch_size, cfg.train.grad_accum = 16, 2
        devices = jax.devices()[:8]
    return cfg, arch, devices


def plan(model: str, setup: str) -> dict:
    sizes, seconds = {}, 0.0
    for layers in (1, 2):
        cfg, arch, devices = setup_config(model, setup, layers)
        trainer = Trainer.abstract(cfg, arch.vocab_size, devices=devices)
        start = time.perf_counter()
        memory = trainer.lower_train_step().compile().memory_analysis()
        seconds += time.perf_counter() - start
        sizes[layers] = (memory.argument_size_in_bytes, memory.temp_size_in_bytes)
    depth = named_config(model).num_layers
    grow = lambda i: sizes[1][i] + (depth - 1) * (sizes[2][i] - sizes[1][i])
    micro = cfg.train.batch_size // cfg.train.grad_accum
    return {"arguments": grow(0) / GIB, "temporaries": grow(1) / GIB, "compile_s": seconds,
            "batch": f"{cfg.train.batch_size} x {cfg.data.seq_len} ({cfg.train.grad_accum} micro-batches of {micro})",
            "remat": cfg.model.remat, "param_dtype": cfg.model.param_dtype,
            "chunk": cfg.model.loss_chunk_tokens}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="qwen2.5-7b,qwen2.5-14b")
    parser.add_argument("--setups", default="lora-1gpu,full-fsdp8")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, XLA:CPU compile of the train step (guard reflex, scan_layers, "
          f"chunked loss); per device; GiB = 2^30 bytes")
    print("| model | setup | batch | params | remat | parameters + optimizer state | temporaries "
          "(estimate) | total | fits 80 GB (74.5 GiB)? |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for setup in args.setups.split(","):
            p = plan(model, setup)
            total = p["arguments"] + p["temporaries"]
            print(f"| {model} | {setup} | {p['batch']} | {p['param_dtype']} | {p['remat']} | "
                  f"{p['arguments']:.1f} | {p['temporaries']:.1f} | {total:.1f} | "
                  f"{'yes' if total < 74.5 else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
