"""What the train step needs in memory and compile time (docs/gpu.md), measured from XLA on
this machine, no GPU needed.

1. Temporary memory of the compiled train step (``compiled.memory_analysis()``) of a
   narrow 2-layer model with the Qwen2.5 vocabulary (151,936) at batch 8 x 512: the
   full-logits loss against the chunked one (lbw_jax/train/loss.py) at several chunk sizes.
2. Compile time (trace + lower + compile) of the train step of the same narrow model
   at 24 layers against 2 layers, with the layers unrolled and scanned (``model.scan_layers``).

Every variant is the real ``Trainer`` step (AdamW under the reflex guard, the default when
the figures in docs/ were recorded; kept, so that they stay reproducible),
built from lbw_jax/train/configs/base.py with random token windows; nothing is run, only compiled.

    python bench/step_memory_compile.py
"""

from __future__ import annotations

import argparse
import time

import jax

from lbw_jax.train.configs.base import base_config
from lbw_jax.train.data.build import synthetic_data
from lbw_jax.train.trainer import Trainer

GIB = 1024 ** 3
VOCAB = 151_936


def narrow_config(layers: int, *, scan_layers: bool, chunk_tokens: int, batch: int, seq_len: int,
                  hidden: int):
    c = base_config()
    c.model.arch.update(dict(
        model_type="qwen2", vocab_size=VOCAB, hidden_size=hidden, intermediate_size=4 * hidden,
        num_layers=layers, num_heads=4, num_kv_heads=2, head_dim=hidden // 4, rope_theta=1e6,
        rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=True,
        max_position_embeddings=4096))
    c.model.scan_layers = scan_layers
    c.model.loss_chunk_tokens = chunk_tokens
    c.train.batch_size, c.data.seq_len = batch, seq_len
    c.optimizer.policy = "reflex"
    return c


def compiled_step(cfg):
    """(compiled train step, seconds to trace + lower + compile it)."""
    trainer = Trainer.build(cfg, synthetic_data(cfg, VOCAB, batches=1))
    start = time.perf_counter()
    compiled = trainer.lower_train_step().compile()
    return compiled, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--deep", type=int, default=24, help="layers of the deep model")
    parser.add_argument("--chunks", default="-1,0,4096,2048,1024",
                        help="model.loss_chunk_tokens values to compare (-1: full logits, 0: auto)")
    args = parser.parse_args()
    shape = dict(batch=args.batch, seq_len=args.seq_len, hidden=args.hidden)
    compiled_step(narrow_config(1, scan_layers=True, chunk_tokens=-1, batch=2, seq_len=8,
                                hidden=16))  # warm-up: the first compile in a process pays for imports

    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}; narrow model: hidden {args.hidden}, "
          f"vocabulary {VOCAB:,}, batch {args.batch} x {args.seq_len}")
    print("\n| 2 layers, scan_layers=True | temp memory (GiB) | vs full logits |")
    print("|---|---|---|")
    base = None
    for chunk in (int(x) for x in args.chunks.split(",")):
        compiled, _ = compiled_step(narrow_config(2, scan_layers=True, chunk_tokens=chunk, **shape))
        temp = compiled.memory_analysis().temp_size_in_bytes / GIB
        base = temp if base is None else base
        label = {-1: "full logits (loss_chunk_tokens=-1)", 0: "loss_chunk_tokens=0 (auto: 441 tokens), the default"}.get(
            chunk, f"loss_chunk_tokens={chunk}")
        print(f"| {label} | {temp:.2f} | {base / temp:.1f}x smaller |")

    print("\n| layers | compile, unrolled (s) | compile, scanned (s) |")
    print("|---|---|---|")
    times = {}
    for layers in (2, args.deep):
        for scan in (False, True):
            _, seconds = compiled_step(narrow_config(layers, scan_layers=scan, chunk_tokens=0, **shape))
            times[layers, scan] = seconds
        print(f"| {layers} | {times[layers, False]:.1f} | {times[layers, True]:.1f} |")
    for scan in (False, True):
        print(f"{'scanned' if scan else 'unrolled'}: {args.deep} layers compile in "
              f"{times[args.deep, scan] / times[2, scan]:.2f}x the time of 2 layers")


if __name__ == "__main__":
    main()
