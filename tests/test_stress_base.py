"""The stress suite's domain shift (lbw_jax.train.stress.engine.shift_base): a base pretrained on Austen is
saved once as a Hugging Face folder with its tokenizer and reused; the cells fine-tune it
on Shakespeare with that tokenizer, and lbw_jax.train.run runs the same fine-tune from the folder."""

import json

import pytest
import transformers

from lbw_jax.train.configs.stress_lora import get_config
from harness_helpers import SMALL_ARCH, run_cli
from lbw_jax.train.data import dataset as data_lib
from lbw_jax.train.stress.engine import shift_base as stress_base
from lbw_jax.train.data.build import build_data


def _tiny(tmp_path):
    cfg = get_config()
    cfg.model.arch.update(SMALL_ARCH)
    cfg.data.vocab_size = 512
    cfg.stress.update(dict(pretrain_steps=8, pretrain_warmup=2, eval_batches=2))
    cfg.stress.base.cache = str(tmp_path / "bases")
    return cfg


def test_the_shakespeare_corpus_is_embedded_and_split_into_passages():
    docs = data_lib.shakespeare_documents()
    assert len(docs) > 200 and max(map(len, docs)) < 2 * data_lib.DOCUMENT_CHARS   # passages of about 4,000
    assert docs[0].startswith("First Citizen:")


@pytest.mark.slow
def test_the_base_is_pretrained_once_and_fine_tuned_with_its_own_tokenizer(tmp_path):
    cfg = _tiny(tmp_path)
    logs = []
    first = stress_base.prepare(cfg, logs.append)
    folder = first["folder"]
    assert not first["cached"] and first["source"] == "austen" and first["steps"] == 8
    assert json.loads((stress_base.base_folder(cfg) / "config.json").read_text())["model_type"] == "qwen2"
    again = stress_base.prepare(cfg, logs.append)                 # from the cache, not retrained
    assert again["cached"] and again["val_ppl"] == first["val_ppl"] and again["folder"] == folder
    # Another pretraining is another base.
    other = _tiny(tmp_path)
    other.stress.pretrain_steps = 9
    assert stress_base.base_folder(other) != stress_base.base_folder(cfg)

    tuned = stress_base.finetune_config(cfg, folder)
    assert (tuned.model.pretrained, tuned.data.tokenizer, tuned.stress.pretrain_steps) == (folder, "pretrained", 0)
    shakespeare = build_data(tuned)
    austen = build_data(stress_base.base_config(cfg))
    # The base's tokenizer, not one trained on Shakespeare: the same ids for the same text.
    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    assert shakespeare.tokenizer.encode_batch([text]) == austen.tokenizer.encode_batch([text])
    assert shakespeare.tokenizer.vocab_size == austen.tokenizer.vocab_size == 512
    assert transformers.AutoTokenizer.from_pretrained(folder).eos_token == "<|endoftext|>"

    # lbw_jax.train.run: the same base folder in, a LoRA fine-tune on Shakespeare.
    out = tmp_path / "run"
    proc = run_cli([f"--config.output_dir={out}", f"--config.model.pretrained={folder}",
                    "--config.data.tokenizer=pretrained", "--config.data.source=shakespeare",
                    "--config.lora.enabled=True", "--config.lora.rank=4", "--config.lora.dropout=0.0",
                    "--config.data.seq_len=32", "--config.train.batch_size=8", "--config.train.steps=4",
                    "--config.train.eval_every=4", "--config.train.checkpoint_every=4",
                    "--config.optimizer.lr=1e-2"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_ppl"] > 1


def test_a_base_needs_pretraining(tmp_path):
    cfg = _tiny(tmp_path)
    cfg.stress.pretrain_steps = 0
    with pytest.raises(ValueError, match="stress.pretrain_steps=0"):
        stress_base.prepare(cfg)
