"""The stress suite at the paper's scale on one GPU: LoRA fine-tuning of
Qwen/Qwen2.5-0.5B on WikiText-103, every arm x LR x seed plus the failure scenarios.

    python -m train.stress --config configs/stress_qwen05b.py

Needs the hub (or a local folder in model.pretrained) and the dataset once; see
docs/stress_gpu.md for memory, time and the 7B variant.
"""

from configs.stress_base import stress_config


def get_config():
    c = stress_config()
    c.output_dir = "runs/stress_qwen05b"
    c.model.pretrained = "Qwen/Qwen2.5-0.5B"
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "bfloat16"   # the frozen base; LoRA factors follow it
    c.model.remat = True
    c.lora.enabled = True
    c.lora.rank = 16
    c.lora.alpha = 32.0
    c.lora.dropout = 0.0               # deterministic cells: seeds vary the data order only
    c.data.source = "hf"
    c.data.hf_name = "wikitext"
    c.data.hf_config = "wikitext-103-raw-v1"
    c.data.tokenizer = "pretrained"
    c.data.seq_len = 512
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 0.0
    c.optimizer.warmup_steps = 30
    c.train.batch_size = 8
    s = c.stress
    s.pretrain_steps = 0               # the checkpoint is the pretrained start
    s.steps = 400
    s.inject_at = 200
    s.eval_every = 20
    s.eval_batches = 16
    # Each cell's LoRA factors, moments and activations are its own; the base is shared.
    # 6 cells per program keeps a step's activations and logits within an 80 GB GPU.
    s.max_cells = 6
    s.sequential_cells = 2
    return c
