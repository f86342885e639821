"""LoRA fine-tuning of Qwen/Qwen2.5-14B on WikiText-103, as in the paper."""

from lbw_jax.train.configs.finetune import finetune_config


def get_config():
    c = finetune_config("Qwen/Qwen2.5-14B", "runs/qwen14b", lora=True)
    # Shard the frozen base over all devices (FSDP); data parallel over hosts.
    c.mesh.data = 1
    c.mesh.fsdp = -1
    return c
