"""The project's training step on one device: tokens/s, MFU, memory, compile time, and
the cost of each guard policy against plain AdamW.

For a named model (``lbw_jax.train.models.NAMED_CONFIGS``, optionally narrowed with ``--arch``),
batch and sequence length, it builds ``lbw_jax.train.trainer.Trainer`` (the step ``lbw_jax.train.run``
runs: chunked loss, scanned layers, the guard, the parameter norm the watchdog reads)
once per policy on random tokens, compiles each (trace + lower + compile, timed), then
times the policies' steps in interleaved rounds; a figure is the median over rounds.
``--config qwen7b`` starts from a training config instead (its LoRA, dtypes,
remat, batch and micro-batches; random init of ``--model``, nothing downloaded).

It prints as it goes, flushing every line, so that a run cut short by a time limit
keeps what it had measured: the set-up line first, each policy's compile time and
memory plan as soon as it is compiled, each round's step times as the round ends,
then the final table.

MFU counts ``lbw_jax.train.records.speed.flops_per_token`` (6 x matmul parameters incl. the LM head +
12 x layers x heads x head_dim x T; a LoRA base 4x) against the device's bf16 dense
peak; it is omitted where the peak is unknown (a CPU). Memory: XLA's plan for each step
(``memory_analysis``: arguments + temporaries), and the device's peak where it keeps
one (GPUs).

    python bench/gpu_step.py --model qwen2.5-0.5b --batch 8 --seq-len 1024
    python bench/gpu_step.py --config qwen7b --model qwen2.5-7b --policies reflex \\
        --no-reference --steps 5 --rounds 1          # the paper's 7B LoRA step, full depth
    python bench/gpu_step.py --model qwen2.5-0.5b --arch num_layers=2,hidden_size=64 \\
        --batch 2 --seq-len 64 --steps 2 --rounds 1 --dtype float32   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import statistics
import time

import jax

from lbw_jax.train.configs import resolve
from lbw_jax.train.configs.base import base_config
from lbw_jax.train.models.config import named_config, with_overrides
from lbw_jax.train.data.build import synthetic_data
from lbw_jax.train.trainer import Trainer

GIB = 1024 ** 3
say = functools.partial(print, flush=True)

# Without --config: the step of a full-parameter run in bf16 compute with fp32 weights.
STEP_DEFAULTS = dict(batch=8, seq_len=1024, dtype="bfloat16", param_dtype="float32", remat="none",
                     scan=True, loss_chunk_tokens=4096, grad_accum=1, attention="auto")


def _config_file(path: str):
    spec = importlib.util.spec_from_file_location("bench_config", resolve(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def make_config(args, policy: str):
    """The trainer config of ``policy``: ``--config``'s (or the step defaults), with
    ``--model``'s architecture built from scratch and every flag given applied on top."""
    arch = with_overrides(named_config(args.model), args.arch)
    c = _config_file(args.config) if args.config else base_config()
    if not args.config:
        d = STEP_DEFAULTS
        c.model.dtype, c.model.param_dtype, c.model.remat = d["dtype"], d["param_dtype"], d["remat"]
        c.model.scan_layers, c.model.loss_chunk_tokens = d["scan"], d["loss_chunk_tokens"]
        c.train.batch_size, c.data.seq_len, c.train.grad_accum = d["batch"], d["seq_len"], d["grad_accum"]
        c.optimizer.lr = 1e-4
    c.model.pretrained, c.model.name = "", ""   # random init of the named architecture
    c.model.arch.update(dataclasses.asdict(arch))
    for flag, field in (("dtype", "model.dtype"), ("param_dtype", "model.param_dtype"),
                        ("remat", "model.remat"), ("loss_chunk_tokens", "model.loss_chunk_tokens"),
                        ("attention", "model.attention"), ("batch", "train.batch_size"),
                        ("seq_len", "data.seq_len"), ("grad_accum", "train.grad_accum")):
        value = getattr(args, flag)
        if value is not None:
            section, name = field.split(".")
            c[section][name] = value
    if args.no_scan:
        c.model.scan_layers = False
    c.optimizer.policy = policy
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1   # one device
    return c


def _describe(args, cfg, n_params: int) -> str:
    m = cfg.model
    lora = (f"LoRA r{cfg.lora.rank} (adapters {cfg.lora.param_dtype}), base {m.param_dtype}"
            if cfg.lora.enabled else f"full-parameter, params {m.param_dtype}")
    micro = cfg.train.batch_size // cfg.train.grad_accum
    return (f"{args.model}{' (' + args.arch + ')' if args.arch else ''}"
            f"{' from ' + args.config if args.config else ''}: {n_params / 1e6:.1f}M trained "
            f"parameters, {lora}, batch {cfg.train.batch_size} x {cfg.data.seq_len}"
            f"{f' ({cfg.train.grad_accum} micro-batches of {micro})' if cfg.train.grad_accum > 1 else ''}, "
            f"compute {m.dtype}, remat {m.remat}, scan_layers {m.scan_layers}, loss_chunk_tokens "
            f"{m.loss_chunk_tokens}, attention {m.attention}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--config", default="", help="start from this training config file (a preset name such as qwen7b, or a path)")
    parser.add_argument("--arch", default="", help="DecoderConfig overrides, e.g. num_layers=2,hidden_size=64")
    parser.add_argument("--batch", type=int, help=f"global batch (default {STEP_DEFAULTS['batch']} or the config's)")
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--grad-accum", type=int, help="micro-batches per step")
    parser.add_argument("--dtype", help="compute dtype (default bfloat16 or the config's)")
    parser.add_argument("--param-dtype", help="parameter dtype (default float32 or the config's)")
    parser.add_argument("--remat", choices=["none", "full", "dots_saveable"])
    parser.add_argument("--no-scan", action="store_true", help="unrolled layers instead of a scan")
    parser.add_argument("--loss-chunk-tokens", type=int,
                        help="tokens per chunk of the loss (0: auto, -1: full logits; default 4096)")
    parser.add_argument("--attention", choices=["auto", "cudnn", "xla"], help="model.attention")
    parser.add_argument("--policies", default="none,reflex,reflex_pro,governor",
                        help="optimizer.policy values; 'none' (plain AdamW) is the reference")
    parser.add_argument("--no-reference", action="store_true",
                        help="do not add plain AdamW; ratios are then to the first policy")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per policy per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    if not args.no_reference and policies[0] != "none":
        policies.insert(0, "none")

    device = jax.devices()[0]
    configs = {policy: make_config(args, policy) for policy in policies}
    say(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
        f"{args.rounds} rounds x {args.steps} steps per policy, after 2 warm-up steps")
    trainers, compile_s, plan = {}, {}, {}
    first_cfg = configs[policies[0]]   # every policy's batch shape and vocabulary are the same
    data = synthetic_data(first_cfg, first_cfg.model.arch.vocab_size, batches=2)
    for policy, cfg in configs.items():
        start = time.perf_counter()
        trainer = Trainer.build(cfg, data, devices=[device])   # one device, whatever the machine has
        built = time.perf_counter() - start
        if not trainers:
            n_params = sum(x.size for x in jax.tree.leaves(trainer.params))
            peak = trainer.speed_meter().peak
            say(_describe(args, cfg, n_params))
            say(f"{trainer.flops_per_token() / 1e9:.3f} GFLOP/token; peak "
                f"{'unknown: no MFU' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}")
        start = time.perf_counter()
        compiled = trainer.compile_ahead()
        compile_s[policy] = time.perf_counter() - start
        memory = compiled.memory_analysis()
        plan[policy] = (memory.argument_size_in_bytes + memory.temp_size_in_bytes) / GIB
        for i in range(2):   # warm-up
            trainer.run_step(i)
        jax.block_until_ready(trainer.params)
        trainers[policy] = trainer
        say(f"compiled {policy}: {compile_s[policy]:.1f} s (model built in {built:.1f} s); XLA plan "
            f"{plan[policy]:.3g} GiB (arguments {memory.argument_size_in_bytes / GIB:.3g}, "
            f"temporaries {memory.temp_size_in_bytes / GIB:.3g})")

    times = {p: [] for p in policies}
    for r in range(args.rounds):
        for policy, trainer in trainers.items():
            start = time.perf_counter()
            for i in range(args.steps):
                trainer.run_step(2 + r * args.steps + i)
            jax.block_until_ready(trainer.params)
            times[policy].append((time.perf_counter() - start) / args.steps)
        ref = times[policies[0]][-1]
        say(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{p} {times[p][-1]:.4f} s ({times[p][-1] / ref:.3f}x)" for p in policies))

    first = trainers[policies[0]]
    tokens = first.cfg.train.batch_size * first.cfg.data.seq_len
    reference = "plain AdamW" if policies[0] == "none" else policies[0]
    say(f"| guard | step (s) | tokens/s | TFLOP/s | MFU | vs {reference} | compile (s) | "
        f"XLA plan: args + temp (GiB) |")
    say("|---|---|---|---|---|---|---|---|")
    base = statistics.median(times[policies[0]])
    for policy in policies:
        step = statistics.median(times[policy])
        tflops = tokens / step * first.flops_per_token() / 1e12
        mfu = "-" if peak is None else f"{100 * tflops * 1e12 / peak:.1f}%"
        say(f"| {policy} | {step:.4f} | {tokens / step:,.0f} | {tflops:.3g} | {mfu} | "
            f"{step / base:.3f}x | {compile_s[policy]:.1f} | {plan[policy]:.3g} |")
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        say(f"device peak memory (all {len(policies)} trainers alive): "
            f"{stats['peak_bytes_in_use'] / GIB:.2f} GiB")
    else:
        say("device peak memory: not reported by this backend")


if __name__ == "__main__":
    main()
