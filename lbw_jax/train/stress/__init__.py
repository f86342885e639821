"""The stress suite: optimizer arms x learning rates x seeds, plus injected faults,
each arm one batched (vmapped) program; see ``python -m lbw_jax.train.stress --help``."""
