"""Tokenizers: a byte-level BPE trained on the training split (cached by content), or
a pretrained model's ``transformers.AutoTokenizer``."""

from __future__ import annotations

import hashlib
import os
import pathlib


def cache_root() -> pathlib.Path:
    """Where lbw-jax caches what it can rebuild (trained tokenizers, the stress suite's
    pretrained bases): ``$LBW_JAX_CACHE``, default ``~/.cache/lbw_jax``."""
    return pathlib.Path(os.environ.get("LBW_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "lbw_jax")))


def _cache_dir() -> pathlib.Path:
    return cache_root() / "tokenizers"


class BPETokenizer:
    """A byte-level BPE from ``tokenizers``; ``eos_id`` separates documents."""

    EOS = "<|endoftext|>"

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.eos_id = tokenizer.token_to_id(self.EOS)
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def from_file(cls, path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def train_or_load(cls, documents: list[str], vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        digest = hashlib.sha256()
        for doc in documents:
            digest.update(hashlib.sha256(doc.encode()).digest())
        digest.update(str(vocab_size).encode())
        cached = _cache_dir() / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
        if cached.exists():
            try:
                return cls(Tokenizer.from_file(str(cached)))
            except Exception:  # noqa: BLE001 - a damaged cache entry: trained again below
                print(f"{cached} (a cached tokenizer) is damaged; training it again", flush=True)
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[cls.EOS],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(documents, trainer=trainer)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tok.save(str(tmp))
        tmp.replace(cached)  # atomic: a concurrent run never reads half a file
        return cls(tok)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))

    def save(self, path):
        self._tok.save(str(path))

    def save_pretrained(self, folder):
        """Writes it as a Hugging Face tokenizer (``PreTrainedTokenizerFast``) into
        ``folder``, so that ``AutoTokenizer`` and ``data.tokenizer=pretrained`` load the
        same ids from a model folder."""
        from transformers import PreTrainedTokenizerFast

        PreTrainedTokenizerFast(tokenizer_object=self._tok, eos_token=self.EOS).save_pretrained(str(folder))


class PretrainedTokenizer:
    """A Hugging Face tokenizer of a pretrained model (folder or hub id)."""

    def __init__(self, name_or_path: str):
        from transformers import AutoTokenizer

        from lbw_jax.train.errors import InputError
        from lbw_jax.train.data.hub import offline_hint

        try:
            self._tok = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as e:  # transformers' hub errors are OSErrors
            raise InputError(f"the tokenizer of model.pretrained={name_or_path!r} could not be "
                             f"loaded: {offline_hint(e, 'model', name_or_path)}") from e
        self.eos_id = self._tok.eos_token_id
        self.vocab_size = len(self._tok)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._tok(texts, add_special_tokens=False)["input_ids"]

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))

    def save(self, path):
        self._tok.save_pretrained(str(pathlib.Path(path).parent / "tokenizer"))
