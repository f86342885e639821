"""The old command names of the harness, kept for one release: ``python -m train.run`` is now
``lbw-train`` and ``python -m train.stress`` is ``lbw-stress`` (the harness is ``lbw_jax.train``).
This folder is not part of the wheel; it serves a repository checkout only."""

import sys


def forward(old: str, new: str, cli) -> None:
    print(f"note: python -m {old} is now {new}; the old name works for one release",
          file=sys.stderr, flush=True)
    cli()
