"""Speed reporting: the FLOP formula, device peaks, and what lbw_jax.train.run records."""

import dataclasses

import pytest

from harness_helpers import small_config
from lbw_jax.train.records.metrics import read_metrics
from lbw_jax.train.models import named_config
from lbw_jax.train.run import train
from lbw_jax.train.records.speed import SpeedMeter, flops_per_token, matmul_params, peak_flops


def test_flops_per_token_of_qwen05b_is_the_goal_formula():
    # 6 x 494M-class matmul parameters incl. the tied head + attention at T=1024: 3.23 GFLOP.
    assert flops_per_token(named_config("qwen2.5-0.5b"), 1024) == pytest.approx(3.228e9, rel=1e-3)


def test_lora_counts_no_weight_gradient_for_the_frozen_base():
    cfg = named_config("qwen2.5-7b")
    blocks, head = matmul_params(cfg)
    attention = 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * 512
    assert flops_per_token(cfg, 512, lora_params=1000) == 4 * (blocks + head) + 6 * 1000 + attention


def test_untied_and_tied_heads_count_the_same_matmul():
    tied = named_config("qwen2.5-0.5b")
    assert flops_per_token(tied, 128) == flops_per_token(
        dataclasses.replace(tied, tie_word_embeddings=False), 128)


@pytest.mark.parametrize("kind, peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                        ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                        ("cpu", None), ("Some Future GPU", None)])
def test_peak_by_device_kind(kind, peak):
    assert peak_flops(kind) == peak


def test_meter_skips_the_compiling_interval_and_omits_mfu_without_a_peak():
    meter = SpeedMeter(tokens_per_step=100, flops_per_token=1e6, devices=2, peak=None)
    meter.restart()
    assert meter.interval(5) == {}            # the first interval holds the compilation
    second = meter.interval(5)
    assert set(second) == {"step_time_s", "tokens_per_s_per_device", "tflops_per_device"}
    assert second["tflops_per_device"] == pytest.approx(second["tokens_per_s_per_device"] * 1e-6)
    with_peak = SpeedMeter(100, 1e6, 1, peak=1e12)
    with_peak.restart(), with_peak.interval(1)
    assert "mfu" in with_peak.interval(1) and "mfu" in with_peak.summary()


@pytest.mark.slow
def test_run_records_speed_per_device(tmp_path):
    summary = train(small_config(tmp_path, steps=6))
    records = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    first, rest = records[:2], records[2:]   # steps 1-2 were fetched with the compilation
    assert not any("tokens_per_s_per_device" in r for r in first)
    assert [r["step"] for r in rest] == [3, 4, 5, 6]
    assert all(r["tokens_per_s_per_device"] > 0 and r["tflops_per_device"] > 0 for r in rest)
    assert not any("mfu" in r for r in records)              # no known peak for a CPU
    assert summary["tokens_per_s_per_device"] > 0, summary
