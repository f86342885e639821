"""Small text samples from the embedded corpus."""

from lbw_jax.train.data.dataset import austen_documents


def austen_sample(chapters: int = 12) -> str:
    return "\n\n".join(austen_documents()[:chapters])
