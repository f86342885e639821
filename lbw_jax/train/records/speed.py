"""Training speed as MaxText reports it: tokens/s and TFLOP/s per device, and MFU.

Model FLOPs per token count what the step must compute, not what the compiled program
does (a recomputation under remat is not counted):

* 6 x the matmul parameters (2 forward, 2 for the activations' gradient, 2 for the
  weights' gradient), the LM head included (tied or not); the embedding lookup is no
  matmul and is not counted;
* plus 12 x layers x heads x head_dim x sequence length for attention's two matmuls
  (QK^T and AV; forward and backward), as the issue that set the goal counts them;
* with LoRA, the frozen base weights need no weight gradient: 4 x their parameters,
  plus 6 x the adapters'.
"""

from __future__ import annotations

import statistics
import time

from lbw_jax.train.models.config import DecoderConfig

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device kind;
# the first match wins, so specific names come first.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
    ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10G", 125e12),
    ("TPU v6", 918e12), ("TPU v5p", 459e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12),
    ("TPU v4", 275e12),
)


def peak_flops(device_kind: str) -> float | None:
    """The bf16 dense peak of a device kind (``jax.devices()[0].device_kind``); None
    when unknown (a CPU, or a GPU missing from ``PEAK_FLOPS``): MFU is then omitted."""
    for name, peak in PEAK_FLOPS:
        if name.lower() in device_kind.lower():
            return peak
    return None


def matmul_params(cfg: DecoderConfig) -> tuple[int, int]:
    """(parameters of the blocks' matmuls, of the LM head)."""
    d, h = cfg.hidden_size, cfg.head_dim
    attention = d * cfg.num_heads * h * 2 + d * cfg.num_kv_heads * h * 2   # q, o; k, v
    mlp = 3 * d * cfg.intermediate_size
    return cfg.num_layers * (attention + mlp), d * cfg.vocab_size


def flops_per_token(cfg: DecoderConfig, seq_len: int, *, lora_params: int = 0) -> float:
    """Model FLOPs of one training token (the module docstring); ``lora_params``: the
    trained adapters' parameter count when the base is frozen (0: full training)."""
    blocks, head = matmul_params(cfg)
    base = 4 if lora_params else 6
    attention = 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len
    return base * (blocks + head) + 6 * lora_params + attention


class SpeedMeter:
    """Speed over the intervals between metric fetches. The first interval of a session
    (it holds the compilation) and time spent evaluating or saving are not counted."""

    def __init__(self, tokens_per_step: int, flops_per_token: float, devices: int,
                 peak: float | None):
        self.tokens_per_step, self.flops_per_token = tokens_per_step, flops_per_token
        self.devices, self.peak = devices, peak
        self._start, self._warm = None, False
        self.intervals: list[dict] = []

    def restart(self):
        """Starts an interval now (after a fetch, an evaluation or a save)."""
        self._start = time.perf_counter()

    def interval(self, steps: int) -> dict:
        """The speed of the ``steps`` steps fetched just now; {} for the first interval."""
        now, start = time.perf_counter(), self._start
        self._start = now
        if start is None or not self._warm or steps == 0:
            self._warm = True
            return {}
        tokens_per_s = steps * self.tokens_per_step / max(now - start, 1e-9) / self.devices
        out = {"step_time_s": (now - start) / steps, "tokens_per_s_per_device": tokens_per_s,
               "tflops_per_device": tokens_per_s * self.flops_per_token / 1e12}
        if self.peak:
            out["mfu"] = tokens_per_s * self.flops_per_token / self.peak
        self.intervals.append(out)
        return out

    def summary(self) -> dict:
        """Medians over the run's measured intervals."""
        if not self.intervals:
            return {}
        return {k: statistics.median(i[k] for i in self.intervals) for k in self.intervals[0]}
