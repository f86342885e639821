"""The stress suite at the paper's scale on one GPU: LoRA fine-tuning of
Qwen/Qwen2.5-0.5B on WikiText-103 (the model and data of lbw_jax/train/configs/qwen05b.py), every
arm x LR x seed plus the failure scenarios.

    python -m lbw_jax.train.stress --config stress_qwen05b

Needs the hub (or a local folder in model.pretrained) and the dataset once; see
docs/stress_gpu.md for memory, time and the 7B variant.
"""

from lbw_jax.train.configs.qwen05b import get_config as qwen05b
from lbw_jax.train.configs.stress_base import stress_config


def get_config():
    c = stress_config(qwen05b())
    c.output_dir = "runs/stress_qwen05b"
    c.lora.dropout = 0.0               # deterministic cells: seeds vary the data order only
    c.data.seq_len = 512
    c.train.batch_size = 8
    c.train.grad_accum = 1
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
