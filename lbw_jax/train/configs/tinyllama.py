"""Full-parameter fine-tuning of TinyLlama-1.1B on WikiText-103, as in the paper."""

from lbw_jax.train.configs.finetune import finetune_config


def get_config():
    c = finetune_config("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", "runs/tinyllama",
                        lora=False)
    # Shard parameters and optimizer state over all devices (FSDP).
    c.mesh.data = 1
    c.mesh.fsdp = -1
    return c
