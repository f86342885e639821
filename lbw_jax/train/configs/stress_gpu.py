"""The stress suite on one GPU: a 27.3M-parameter Qwen2-architecture model (hidden
512, 8 layers, 8 heads, 4 KV heads, head_dim 64, intermediate 1536, vocab 4096 BPE
on the Austen corpus, seq 256, batch 16, bf16 compute), pretrained 600 steps at
LR 1e-3, then every arm 300 steps on the cosine schedule, LRs 3e-4 to 1e-1,
2 seeds, plus the failure scenarios; all of an arm's cells vmapped in one program.
The setting where AdamW collapses from LR 1e-2 on one GPU (governor v2.2 on one H200:
docs/stress/gpu/report.md and docs/gpu.md, section 9).

    python -m lbw_jax.train.stress --config stress_gpu
"""

from lbw_jax.train.configs.stress_base import stress_config


def get_config():
    c = stress_config()
    c.output_dir = "runs/stress_gpu"
    c.model.arch.update(dict(
        model_type="qwen2", hidden_size=512, intermediate_size=1536, num_layers=8,
        num_heads=8, num_kv_heads=4, head_dim=64, rope_theta=1e4, rms_norm_eps=1e-6,
        tie_word_embeddings=True, attention_bias=True, max_position_embeddings=512))
    c.model.dtype = "bfloat16"
    c.data.vocab_size = 4096
    c.data.seq_len = 256
    c.train.batch_size = 16
    c.optimizer.warmup_steps = 30

    s = c.stress
    s.lrs = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    s.seeds = 2
    s.steps = 300
    s.eval_every = 10
    s.eval_batches = 8
    s.pretrain_steps = 600
    s.pretrain_lr = 1e-3
    s.pretrain_warmup = 30
    s.scenario_lr = 3e-3
    s.inject_at = 150
    s.max_cells = 0             # every cell of an arm in one program: a GPU has room
    s.sequential_cells = 0
    return c
