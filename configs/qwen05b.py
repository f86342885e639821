"""LoRA fine-tuning of Qwen/Qwen2.5-0.5B on WikiText-103, as in the paper."""

from configs.qwen_lora import qwen_lora_config


def get_config():
    c = qwen_lora_config("Qwen/Qwen2.5-0.5B", "runs/qwen05b")
    return c
