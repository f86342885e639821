"""Full-parameter fine-tuning of TinyLlama-1.1B on WikiText-103, as in the paper."""

from configs.base import base_config


def get_config():
    c = base_config()
    c.output_dir = "runs/tinyllama"
    c.model.pretrained = "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "float32"
    c.model.remat = True
    c.data.source = "hf"
    c.data.tokenizer = "pretrained"
    c.data.seq_len = 1024
    c.optimizer.lr = 1e-4
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 0.01
    c.optimizer.warmup_steps = 100
    c.optimizer.schedule = "cosine"
    c.optimizer.guard = "reflex"
    c.train.steps = 2000
    c.train.batch_size = 16
    c.train.grad_accum = 4
    c.train.eval_every = 500
    c.train.checkpoint_every = 250
    c.mesh.data = 1
    c.mesh.fsdp = -1
    return c
