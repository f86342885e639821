"""A held-out LoRA setting, the suite's domain shift turned around and at another shape: a
Llama-shape model (no attention bias, untied embeddings; the CPU default's widths) pretrained
full-parameter on Shakespeare with its own tokenizer, then LoRA-fine-tuned on Austen's prose
with that tokenizer. No law was designed or tuned on it: it checks a law as a new user's
setting would (another corpus, another architecture, the shift the other way). The LR grid
and schedule are the LoRA shift's, not calibrated here; 2 seeds, no faults.

    python -m lbw_jax.train.stress --config stress_heldout --config.output_dir=docs/stress/heldout
"""

from lbw_jax.train.configs.stress_lora import get_config as stress_lora


def get_config():
    c = stress_lora()
    c.output_dir = "runs/stress_heldout"
    c.model.arch.update(dict(model_type="llama", attention_bias=False, tie_word_embeddings=False))
    c.data.source = "austen"
    s = c.stress
    s.base.source = "shakespeare"
    s.arms = ("adamw", "dadapt_adamw_lr0", "governor")
    s.seeds = 3
    s.scenarios = ()
    s.fault_arms = ()
    s.sequential_cells = 0
    return c
