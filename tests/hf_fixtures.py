"""Tiny random Hugging Face checkpoints, built and saved with transformers on the fly."""

import numpy as np
import torch
import transformers

FAMILIES = {
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(rope_theta=1e6, tie_word_embeddings=True)),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(rope_theta=1e4, tie_word_embeddings=False)),
}
VOCAB = 128


def tiny_hf_model(family: str, seed: int = 0):
    config_cls, model_cls, extra = FAMILIES[family]
    config = config_cls(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=64, rms_norm_eps=1e-6, **extra)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # Random (not zero) biases, so that q/k/v biases are really checked.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model


def save_tiny(family: str, folder, seed: int = 0):
    model = tiny_hf_model(family, seed)
    model.save_pretrained(folder)
    return model


def hf_logits(model, ids, attention_mask=None):
    with torch.no_grad():
        kwargs = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = torch.tensor(attention_mask)
        return model(torch.tensor(np.asarray(ids)), **kwargs).logits.float().numpy()
