"""The stress suite on the CPU: a ~0.2M-parameter Qwen2-architecture model on the
embedded Austen corpus, pretrained briefly, then every arm x LR x seed plus the
failure scenarios. ``python -m train.stress --config configs/stress_tiny.py``."""

from configs.stress_base import stress_config


def get_config():
    c = stress_config()
    c.output_dir = "runs/stress_tiny"
    c.model.arch.update(dict(
        model_type="qwen2", hidden_size=64, intermediate_size=192, num_layers=2,
        num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=1e4, rms_norm_eps=1e-6,
        tie_word_embeddings=True, attention_bias=True, max_position_embeddings=256))
    c.data.vocab_size = 1024
    c.data.seq_len = 64
    c.train.batch_size = 8
    return c
