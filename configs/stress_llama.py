"""The paper's TinyLlama sanity check on the CPU: the stress suite's CPU default
(configs/stress_cpu.py: full-parameter, pretrained on the Austen corpus, the same arms,
LRs, seeds and faults) at a Llama shape: no attention bias and untied embeddings (the
input embedding and the LM head are separate matrices), the same widths.

    python -m train.stress --config configs/stress_llama.py --config.output_dir=docs/stress/llama_shape
"""

from configs.stress_cpu import get_config as stress_cpu


def get_config():
    c = stress_cpu()
    c.output_dir = "runs/stress_llama"
    c.model.arch.update(dict(model_type="llama", attention_bias=False, tie_word_embeddings=False))
    return c
