"""The embedded default: a small Qwen2-architecture model trained from scratch on the
Jane Austen novels shipped with the package; a few minutes on a 2-core CPU."""

from lbw_jax.train.configs.base import base_config


def get_config():
    c = base_config()
    c.output_dir = "runs/tiny"
    c.model.arch.update(dict(
        model_type="qwen2", hidden_size=192, intermediate_size=512, num_layers=4,
        num_heads=4, num_kv_heads=2, head_dim=48, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True, attention_bias=True, max_position_embeddings=1024))
    c.data.vocab_size = 4096
    c.data.seq_len = 128
    c.optimizer.lr = 3e-3
    c.train.steps = 600
    c.train.batch_size = 16
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
    return c
