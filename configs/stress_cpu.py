"""The stress suite's CPU default (``python -m train.stress``): a 1.1M-parameter
Qwen2-architecture model on the embedded Austen corpus, pretrained, then the arms
that decide the question (AdamW, the clipping baselines, the guards, and each guard's
replay and effective-LR control at the stressed LRs) on the cosine schedule, LRs
3e-4 to 1e-1, 2 seeds, plus the failure scenarios (one seed). Sized by measurement to collapse
AdamW at the high LRs and to finish in well under an hour on 2 CPU cores; the
calibration is in docs/stress/calibration.md, the whole grid in stress_cpu_full.py."""

from configs.stress_base import stress_config


def get_config():
    c = stress_config()
    c.output_dir = "runs/stress_cpu"
    c.model.arch.update(dict(
        model_type="qwen2", hidden_size=128, intermediate_size=384, num_layers=4,
        num_heads=2, num_kv_heads=1, head_dim=64, rope_theta=1e4, rms_norm_eps=1e-6,
        tie_word_embeddings=True, attention_bias=True, max_position_embeddings=256))
    c.data.vocab_size = 2048
    c.data.seq_len = 64
    c.train.batch_size = 8
    c.optimizer.warmup_steps = 20

    s = c.stress
    s.arms = ("adamw", "clip", "update_clip", "reflex", "reflex_pro", "governor",
              "replay_reflex", "replay_reflex_pro", "replay_governor",
              "effective_lr_reflex", "effective_lr_reflex_pro", "effective_lr_governor")
    s.lrs = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    s.seeds = 2
    s.steps = 150
    s.eval_every = 25
    s.eval_batches = 16
    s.controls_at = "stressed"
    s.pretrain_steps = 600
    s.pretrain_lr = 1e-3
    s.pretrain_warmup = 30
    s.scenario_lr = 1e-3
    s.inject_at = 75
    s.fault_seeds = 1
    s.fault_arms = ("adamw", "clip", "update_clip", "reflex", "reflex_pro", "governor")
    # At this size 2-4 cells per vmapped program cost 0.85x a lone cell per train step on
    # 2 CPU cores (bench/stress_batching.py), though end to end (evaluations and the host
    # loop included) the default run measured 1.04x slower batched: a wash
    # (docs/stress/calibration.md). The report times 2 cells run alone.
    s.max_cells = 4
    s.sequential_cells = 2
    return c
