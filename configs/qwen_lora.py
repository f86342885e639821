"""Shared settings of the paper's setting: LoRA fine-tuning of a pretrained Qwen2.5 on
WikiText-103 (raw), in bf16 compute. Not a config file itself; see qwen*.py."""

from configs.base import base_config


def qwen_lora_config(hub_id: str, output_dir: str):
    c = base_config()
    c.output_dir = output_dir
    c.model.pretrained = hub_id          # or a local folder with config.json + safetensors
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "bfloat16"
    c.model.remat = True
    c.lora.enabled = True
    c.lora.rank = 16
    c.lora.alpha = 32.0
    c.lora.dropout = 0.05
    c.data.source = "hf"
    c.data.hf_name = "wikitext"
    c.data.hf_config = "wikitext-103-raw-v1"
    c.data.tokenizer = "pretrained"
    c.data.seq_len = 1024
    c.optimizer.lr = 2e-4
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 0.0
    c.optimizer.warmup_steps = 100
    c.optimizer.schedule = "cosine"
    c.optimizer.guard = "reflex"
    c.train.steps = 2000
    c.train.batch_size = 16
    c.train.grad_accum = 4
    c.train.log_every = 10
    c.train.eval_every = 500
    c.train.checkpoint_every = 250
    return c
