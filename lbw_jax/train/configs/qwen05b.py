"""LoRA fine-tuning of Qwen/Qwen2.5-0.5B on WikiText-103, as in the paper."""

from lbw_jax.train.configs.finetune import finetune_config


def get_config():
    c = finetune_config("Qwen/Qwen2.5-0.5B", "runs/qwen05b", lora=True)
    return c
