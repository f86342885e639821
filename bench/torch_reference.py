"""The side-by-side: the same model in transformers / PyTorch, trained the way users of
the reference implementation train it.

A ``transformers`` Qwen2 / Llama model built from the named config (random init,
float32 parameters, ``sdpa`` attention), bf16 autocast on a GPU, ``torch.optim.AdamW``
(fused on CUDA) with the project's defaults (betas 0.9/0.95, weight decay 0.01); eager,
or ``--compile`` for ``torch.compile``. Two arms:

* ``adamw``: the plain loop;
* ``adamw + reflex``: the reference reflex law run as the reference runtime runs it.
  On a stats step (the first, then every ``stats_every``) the gradients' statistics
  are read to the host with ``.item()`` (a device sync), the law updates its scale on
  the host, and the optimizer's learning rate becomes ``base x scale``.

It prints tokens/s and MFU with ``lbw_jax.train.records.speed``'s FLOP formula, so the figures compare
with ``bench/gpu_step.py``'s.

    python bench/torch_reference.py --model qwen2.5-0.5b --batch 8 --seq-len 1024 [--compile]
    python bench/torch_reference.py --arch num_layers=2,hidden_size=64 --batch 2 --seq-len 64 \\
        --steps 2 --rounds 1      # a CPU smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from lbw_jax.train.models.config import named_config, with_overrides  # noqa: E402
from lbw_jax.train.records.speed import flops_per_token, peak_flops  # noqa: E402


class ReflexLaw:
    """The reference reflex law (lbw_jax.policies.reflex; its defaults), on the host."""

    def __init__(self, stress=1.1, spike=1.5, min_scale=0.1, recovery=0.01, stats_every=10,
                 ema_decay=0.85):
        self.stress, self.spike, self.min_scale, self.recovery = stress, spike, min_scale, recovery
        self.every, self.decay = stats_every, ema_decay
        self.t, self.scale, self.ema, self.prev_mean = 0, 1.0, None, None

    def step(self, params) -> float:
        self.t += 1
        if not (self.t == 1 or self.t % self.every == 0):
            return self.scale
        grads = [p.grad for p in params if p.grad is not None]
        with torch.no_grad():
            grad_ms = torch.stack([g.float().pow(2).mean() for g in grads]).max().item()   # host sync
            total = torch.stack([g.float().sum() for g in grads]).sum().item()            # host sync
        mean = total / sum(g.numel() for g in grads)
        self.ema = grad_ms if self.ema is None else self.decay * self.ema + (1 - self.decay) * grad_ms
        ratio = grad_ms / (self.ema + 1e-12)
        flip = self.prev_mean is not None and ((self.prev_mean > 0 > mean) or (self.prev_mean < 0 < mean))
        self.prev_mean = mean
        if ratio > self.spike:
            self.scale = max(self.min_scale, 0.7 * self.scale)
        elif ratio > self.stress or flip:
            self.scale = max(self.min_scale, 0.85 * self.scale)
        else:
            self.scale = min(1.0, self.scale + self.recovery)
        return self.scale


def build_model(arch, device):
    import transformers

    hf = arch.to_hf_config()
    for name in ("bos_token_id", "eos_token_id"):   # a narrowed vocabulary may not hold them
        if hf.get(name) is not None and hf[name] >= arch.vocab_size:
            hf[name] = None
    config = transformers.AutoConfig.for_model(**{k: v for k, v in hf.items() if k != "architectures"})
    config._attn_implementation = "sdpa"
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(device).train()


def run_arm(model, tokens, *, law, lr, autocast_dtype, step_fn):
    params = [p for p in model.parameters() if p.requires_grad]
    fused = tokens.device.type == "cuda"
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01, fused=fused)

    def one_step():
        with torch.autocast(tokens.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = step_fn(tokens)
        loss.backward()
        if law is not None:
            for group in opt.param_groups:
                group["lr"] = lr * law.step(params)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return one_step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--arch", default="", help="DecoderConfig overrides, e.g. num_layers=2,hidden_size=64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    arch = with_overrides(named_config(args.model), args.arch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = torch.bfloat16 if device.type == "cuda" else None   # CPU: float32 throughout
    torch.manual_seed(0)
    model = build_model(arch, device)
    forward = torch.compile(model) if args.compile else model
    tokens = torch.randint(0, arch.vocab_size, (args.batch, args.seq_len + 1), device=device)

    def step_fn(batch):   # next-token cross-entropy over T positions, in float32
        logits = forward(input_ids=batch[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())

    arms = {"adamw": None, "adamw + reflex": ReflexLaw()}
    steps = {name: run_arm(model, tokens, law=law, lr=1e-4, autocast_dtype=autocast, step_fn=step_fn)
             for name, law in arms.items()}
    for one_step in steps.values():   # warm-up (and compilation, with --compile)
        for _ in range(2):
            one_step()
    _sync(device)
    times = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, one_step in steps.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                one_step()
            _sync(device)
            times[name].append((time.perf_counter() - start) / args.steps)

    kind = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_flops(kind)
    per_token = flops_per_token(arch, args.seq_len)
    tokens_per_step = args.batch * args.seq_len
    print(f"{args.model}{' (' + args.arch + ')' if args.arch else ''}: transformers "
          f"{__import__('transformers').__version__}, torch {torch.__version__}, "
          f"{'torch.compile' if args.compile else 'eager'}, sdpa, "
          f"{'bf16 autocast' if autocast else 'float32'}, {'fused ' if device.type == 'cuda' else ''}AdamW; "
          f"batch {args.batch} x {args.seq_len}; device {kind}; {args.rounds} rounds x {args.steps} steps")
    print("| arm | step (s) | tokens/s | MFU |")
    print("|---|---|---|---|")
    for name in arms:
        step = statistics.median(times[name])
        mfu = "-" if peak is None else f"{100 * tokens_per_step / step * per_token / peak:.1f}%"
        print(f"| {name} | {step:.4f} | {tokens_per_step / step:,.0f} | {mfu} |")


if __name__ == "__main__":
    main()
