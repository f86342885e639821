"""The paper's TinyLlama sanity check on the CPU: the stress suite's CPU default
(lbw_jax/train/configs/stress_cpu.py: full-parameter, pretrained on the Austen corpus, the same LRs and
schedule) at a Llama shape: no attention bias and untied embeddings (the input embedding
and the LM head are separate matrices), the same widths. A check, not a second default:
3 seeds (the governor's goals ask 3 on every setting) and the arms that answer it (AdamW, clipping, the LR-robust baselines that train at
their defaults on this suite, the governor with its replay and effective-LR control), and
the faults on AdamW and the governor only.

    python -m lbw_jax.train.stress --config stress_llama --config.output_dir=docs/stress/llama_shape
"""

from lbw_jax.train.configs.stress_cpu import get_config as stress_cpu


def get_config():
    c = stress_cpu()
    c.output_dir = "runs/stress_llama"
    c.model.arch.update(dict(model_type="llama", attention_bias=False, tie_word_embeddings=False))
    s = c.stress
    s.arms = ("adamw", "clip", "schedule_free_adamw", "dadapt_adamw_lr0", "governor", "replay_governor",
              "effective_lr_governor")
    s.fault_arms = ("adamw", "governor")
    s.seeds = 3
    s.sequential_cells = 0
    return c
