"""The data: corpora and their splits, tokenizers, the data's fingerprint, and what to say when the hub cannot be reached."""
