"""The project's training step on one device: tokens/s, MFU, memory, compile time, and
the cost of each guard policy against plain AdamW.

For a named model (``train.models.NAMED_CONFIGS``, optionally narrowed with ``--arch``),
batch and sequence length, it builds ``train.trainer.Trainer`` (the step ``train.run``
runs: chunked loss, scanned layers, the guard, the parameter norm the watchdog reads)
once per policy on random tokens, compiles each (trace + lower + compile, timed), then
times the policies' steps in interleaved rounds; a figure is the median over rounds.

MFU counts ``train.speed.flops_per_token`` (6 x matmul parameters incl. the LM head +
12 x layers x heads x head_dim x T) against the device's bf16 dense peak; it is
omitted where the peak is unknown (a CPU). Memory: XLA's plan for each step
(``memory_analysis``: arguments + temporaries), and the device's peak where it keeps
one (GPUs).

    python bench/gpu_step.py --model qwen2.5-0.5b --batch 8 --seq-len 1024
    python bench/gpu_step.py --model qwen2.5-0.5b --arch num_layers=2,hidden_size=64 \\
        --batch 2 --seq-len 64 --steps 2 --rounds 1 --dtype float32   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax

from configs.base import base_config
from train.models.config import named_config, with_overrides
from train.trainer import Trainer, synthetic_data

GIB = 1024 ** 3


def make_config(args, policy: str):
    arch = with_overrides(named_config(args.model), args.arch)
    c = base_config()
    c.model.arch.update(dataclasses.asdict(arch))
    c.model.dtype, c.model.param_dtype = args.dtype, "float32"
    c.model.remat, c.model.scan_layers = args.remat, not args.no_scan
    c.model.loss_chunk_tokens = args.loss_chunk_tokens
    c.train.batch_size, c.data.seq_len = args.batch, args.seq_len
    c.optimizer.lr = 1e-4
    c.optimizer.guard = policy
    c.mesh.data = 1
    return c


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--arch", default="", help="DecoderConfig overrides, e.g. num_layers=2,hidden_size=64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dtype", default="bfloat16", help="compute dtype (parameters stay float32)")
    parser.add_argument("--remat", default="none", choices=["none", "full", "dots_saveable"])
    parser.add_argument("--no-scan", action="store_true", help="unrolled layers instead of nnx.scan")
    parser.add_argument("--loss-chunk-tokens", type=int, default=4096,
                        help="tokens per chunk of the loss (0: auto, -1: full logits)")
    parser.add_argument("--policies", default="none,reflex,reflex_pro,governor",
                        help="optimizer.guard values; 'none' (plain AdamW) is the reference")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per policy per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    if policies[0] != "none":
        policies.insert(0, "none")

    device = jax.devices()[0]
    trainers, compile_s, plan = {}, {}, {}
    data = None
    for policy in policies:
        cfg = make_config(args, policy)
        data = data or synthetic_data(cfg, cfg.model.arch.vocab_size, batches=2)
        trainer = Trainer(cfg, data, devices=[device])   # one device, whatever the machine has
        start = time.perf_counter()
        compiled = trainer.compile_train_step()
        compile_s[policy] = time.perf_counter() - start
        memory = compiled.memory_analysis()
        plan[policy] = (memory.argument_size_in_bytes + memory.temp_size_in_bytes) / GIB
        for i in range(2):   # warm-up
            trainer.train_step(i)
        jax.block_until_ready(trainer.params)
        trainers[policy] = trainer

    times = {p: [] for p in policies}
    for r in range(args.rounds):
        for policy, trainer in trainers.items():
            start = time.perf_counter()
            for i in range(args.steps):
                trainer.train_step(2 + r * args.steps + i)
            jax.block_until_ready(trainer.params)
            times[policy].append((time.perf_counter() - start) / args.steps)

    first = trainers[policies[0]]
    tokens = args.batch * args.seq_len
    peak = first.speed_meter().peak
    n_params = sum(x.size for x in jax.tree.leaves(first.params))
    stats = device.memory_stats() or {}
    print(f"{args.model}{' (' + args.arch + ')' if args.arch else ''}: {n_params / 1e6:.1f}M trained "
          f"parameters, batch {args.batch} x {args.seq_len}, compute {args.dtype}, params float32, "
          f"remat {args.remat}, scan_layers {not args.no_scan}, loss_chunk_tokens {args.loss_chunk_tokens}")
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
          f"{first.flops_per_token() / 1e9:.3f} GFLOP/token; peak "
          f"{'unknown: no MFU' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}; "
          f"{args.rounds} rounds x {args.steps} steps")
    print("| guard | step (s) | tokens/s | TFLOP/s | MFU | vs plain AdamW | compile (s) | XLA plan: args + temp (GiB) |")
    print("|---|---|---|---|---|---|---|---|")
    base = statistics.median(times["none"])
    for policy in policies:
        step = statistics.median(times[policy])
        tflops = tokens / step * first.flops_per_token() / 1e12
        mfu = "-" if peak is None else f"{100 * tflops * 1e12 / peak:.1f}%"
        print(f"| {policy} | {step:.4f} | {tokens / step:,.0f} | {tflops:.3g} | {mfu} | "
              f"{step / base:.3f}x | {compile_s[policy]:.1f} | {plan[policy]:.3g} |")
    if "peak_bytes_in_use" in stats:
        print(f"device peak memory (all {len(policies)} trainers alive): "
              f"{stats['peak_bytes_in_use'] / GIB:.2f} GiB")
    else:
        print("device peak memory: not reported by this backend")


if __name__ == "__main__":
    main()
