"""The model-size axis of the LoRA domain shift (the paper's Fig. 2): lbw_jax/train/configs/stress_lora.py
at another model size, with the arms the question needs (AdamW, clipping, Mechanic over
AdamW and the governor), the LRs around tuned AdamW, 3 seeds (the governor's goals ask 3 on
every setting) and no faults. Each size
pretrains (and caches) its own base on the Austen corpus. The middle size is
lbw_jax/train/configs/stress_lora.py itself (docs/stress/lora_shift/); the axis spans 10.6x in parameters.

    python -m lbw_jax.train.stress --config stress_lora_size:small --config.output_dir=docs/stress/lora_size/small
    python -m lbw_jax.train.stress --config stress_lora_size:large --config.output_dir=docs/stress/lora_size/large
    python -m lbw_jax.train.stress.goals.sizes docs/stress/lora_size/small/results.json \\
        docs/stress/lora_shift/results.json docs/stress/lora_size/large/results.json
"""

from lbw_jax.train.configs.stress_lora import get_config as stress_lora

# Widths at the default's depth (4 layers, head_dim 64, the same vocabulary): the base's
# parameters, embeddings included, are 0.35M, 1.05M (the default) and 3.67M.
SIZES = {
    "small": dict(hidden_size=64, intermediate_size=192, num_heads=1, num_kv_heads=1),
    "default": dict(hidden_size=128, intermediate_size=384, num_heads=2, num_kv_heads=1),
    "large": dict(hidden_size=256, intermediate_size=768, num_heads=4, num_kv_heads=2),
}


def get_config(size: str = "small"):
    if size not in SIZES:
        raise ValueError(f"lbw_jax/train/configs/stress_lora_size.py:{size}: choose one of {sorted(SIZES)}")
    c = stress_lora()
    c.output_dir = f"runs/stress_lora_size_{size}"
    c.model.arch.update(SIZES[size])
    s = c.stress
    s.arms = ("adamw", "clip", "mechanize", "governor")
    s.lrs = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    s.seeds = 3
    s.scenarios = ()
    s.fault_arms = ()
    s.sequential_cells = 0
    return c
