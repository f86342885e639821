"""LoRA fine-tuning of Qwen/Qwen2.5-7B on WikiText-103, as in the paper."""

from configs.qwen_lora import qwen_lora_config


def get_config():
    c = qwen_lora_config("Qwen/Qwen2.5-7B", "runs/qwen7b")
    # Shard the frozen base over all devices (FSDP); data parallel over hosts.
    c.mesh.data = 1
    c.mesh.fsdp = -1
    return c
