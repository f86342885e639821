"""Memory plan for Qwen2.5-7B and 14B, computed on the CPU without a GPU.

Setups (the repository's configs, with ``model.name`` in place of the hub download):
* ``lora-1gpu``: lbw_jax/train/configs/qwen7b.py / qwen14b.py (the paper's LoRA run) on one device,
  bf16 base with float32 adapters and moments (``lora.param_dtype``, the default);
* ``lora-1gpu-bf16``: the same with bf16 adapters and moments (the layout before
  ``lora.param_dtype`` existed), to show what float32 adapters cost;
* ``full-fsdp8``: full-parameter training (fp32 master weights, AdamW) over 8 devices
  with FSDP (``mesh.fsdp=8``), batch 16 x 1024 in 2 micro-batches of 8.

For each, ``Trainer.abstract`` builds the real train step from shapes only, and XLA
compiles it for this machine's CPU (8 host devices for FSDP) at full width and reduced
depth. Per device:
* parameters and optimizer state: exact, from the compiled step's argument sizes,
  extrapolated from 2 and 3 layers (they grow linearly in layers);
* temporaries (activations, gradients, the loss's chunks): ``memory_analysis()`` of
  the 2- and 3-layer steps, extrapolated linearly to the full depth (scanned layers:
  the program is the same at any depth, only the per-layer buffers grow; a 1-layer
  scan is compiled differently and is not used; 4 layers were checked to lie on the line).

The temporaries are an upper bound for a GPU: XLA:CPU has no bf16 matmul, so it
converts bf16 weights to float32 and hoists the conversion out of the layer loop,
holding a float32 copy of every layer's weights. (Checked on 7B LoRA: with float32
weights the temporaries grow 0.065 GiB a layer, the saved activations of a 4 x 1024
micro-batch; with bf16 weights 0.93 GiB, that plus the float32 copy of the layer.)
The last column removes those copies (4 bytes x the bf16 weights) as the estimate for
a GPU, which multiplies bf16 directly. The GPU check is ``bench/gpu_step.py``.

    python bench/memory_plan.py
    python bench/memory_plan.py --room    # the governor with its room probe (use_room, on by
                                          # default since v4): its forward pass and probed point
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import importlib  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from lbw_jax.train.models import count_params, named_config  # noqa: E402
from lbw_jax.train.trainer import Trainer  # noqa: E402

GIB = 1024 ** 3


def setup_config(model: str, setup: str, layers: int, room: bool = False):
    size = model.split("-")[1]   # 7b, 14b
    cfg = importlib.import_module(f"lbw_jax.train.configs.qwen{size}").get_config()
    if room:
        cfg.optimizer.policy = "governor"
        cfg.optimizer.governor.use_room = True
    cfg.model.pretrained, cfg.model.name = "", ""
    arch = named_config(model)
    cfg.model.arch.update({**arch.__dict__, "num_layers": layers})
    if setup.startswith("lora-1gpu"):
        cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 1, 1
        cfg.lora.param_dtype = "bfloat16" if setup == "lora-1gpu-bf16" else "float32"
        devices = jax.devices()[:1]
    else:
        cfg.lora.enabled = False
        cfg.model.param_dtype = "float32"
        cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, 8, 1
        cfg.train.batch_size, cfg.train.grad_accum = 16, 2
        devices = jax.devices()[:8]
    return cfg, arch, devices


def plan(model: str, setup: str, room: bool = False) -> dict:
    sizes, seconds = {}, 0.0
    for layers in (2, 3):
        cfg, arch, devices = setup_config(model, setup, layers, room)
        trainer = Trainer.abstract(cfg, arch.vocab_size, devices=devices)
        start = time.perf_counter()
        memory = trainer.lower_train_step().compile().memory_analysis()
        seconds += time.perf_counter() - start
        sizes[layers] = (memory.argument_size_in_bytes, memory.temp_size_in_bytes)
    depth = named_config(model).num_layers
    bf16_weights = count_params(named_config(model)) if cfg.model.param_dtype == "bfloat16" else 0
    grow = lambda i: sizes[2][i] + (depth - 2) * (sizes[3][i] - sizes[2][i])
    micro = cfg.train.batch_size // cfg.train.grad_accum
    return {"arguments": grow(0) / GIB, "temporaries": grow(1) / GIB, "compile_s": seconds,
            "per_layer": (sizes[3][1] - sizes[2][1]) / GIB,
            "gpu_temporaries": (grow(1) - 4 * bf16_weights) / GIB,
            "batch": f"{cfg.train.batch_size} x {cfg.data.seq_len} ({cfg.train.grad_accum} micro-batches of {micro})",
            "remat": cfg.model.remat,
            "param_dtype": cfg.model.param_dtype + (f", adapters {cfg.lora.param_dtype}"
                                                    if cfg.lora.enabled else ""),
            "chunk": cfg.model.loss_chunk_tokens}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="qwen2.5-7b,qwen2.5-14b")
    parser.add_argument("--setups", default="lora-1gpu,lora-1gpu-bf16,full-fsdp8")
    parser.add_argument("--room", action="store_true", help="the governor with its room probe on")
    args = parser.parse_args()
    cfg = setup_config("qwen2.5-7b", "lora-1gpu", 2, args.room)[0]   # the configs' own guard
    guard = cfg.optimizer.policy + (" (use_room=True)" if args.room else "")
    print(f"jax {jax.__version__}, XLA:CPU compile of the train step (guard {guard}, scan_layers, "
          f"chunked loss); per device; GiB = 2^30 bytes")
    print("| model | setup | batch | params | remat | parameters + optimizer state | temporaries, "
          "XLA:CPU (per layer) | total, XLA:CPU | total less CPU's f32 weight copies | within 80 GB "
          "(74.5 GiB)? |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for setup in args.setups.split(","):
            p = plan(model, setup, args.room)
            total = p["arguments"] + p["temporaries"]
            gpu = p["arguments"] + p["gpu_temporaries"]
            print(f"| {model} | {setup} | {p['batch']} | {p['param_dtype']} | {p['remat']} | "
                  f"{p['arguments']:.1f} | {p['temporaries']:.1f} ({p['per_layer']:.2f}) | {total:.1f} | "
                  f"{gpu:.1f} | {'yes' if gpu < 74.5 else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
