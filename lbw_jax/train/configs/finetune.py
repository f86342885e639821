"""The paper's setting, shared by the pretrained configs: fine-tuning a Hugging Face
checkpoint on WikiText-103 (raw) in bf16 compute, with LoRA or full parameters.
Not a config file itself; see qwen*.py and tinyllama.py."""

from lbw_jax.train.configs.base import base_config


def finetune_config(hub_id: str, output_dir: str, *, lora: bool):
    c = base_config()
    c.output_dir = output_dir
    c.model.pretrained = hub_id          # or a local folder with config.json + safetensors
    c.model.dtype = "bfloat16"
    # LoRA keeps the frozen base in bf16; full fine-tuning keeps fp32 master weights.
    c.model.param_dtype = "bfloat16" if lora else "float32"
    c.model.remat = "full"
    c.model.scan_layers = True   # compile time independent of depth (docs/gpu.md)
    # Large loss chunks on a GPU: below ~1,000 tokens the head-gradient accumulation of
    # the chunked loss turns memory-bound (lbw_jax/train/loss.py). 4096 x 152k float32 logits: 2.3 GiB.
    c.model.loss_chunk_tokens = 4096
    c.lora.enabled = lora
    c.data.source = "hf"
    c.data.hf_name = "wikitext"
    c.data.hf_config = "wikitext-103-raw-v1"
    c.data.tokenizer = "pretrained"
    c.data.seq_len = 1024
    c.optimizer.lr = 2e-4 if lora else 1e-4
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 0.0 if lora else 0.01
    c.optimizer.warmup_steps = 100
    c.optimizer.schedule = "cosine"
    c.train.steps = 2000
    c.train.batch_size = 16
    c.train.grad_accum = 4
    c.train.eval_every = 500
    c.train.checkpoint_every = 250
    return c
