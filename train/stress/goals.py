"""``python -m train.stress.goals``: the old name of ``python -m lbw_jax.train.stress.goals``,
for one release."""

import sys

if __name__ == "__main__":
    from lbw_jax.train.stress.goals.policy import main
    from train import forward
    sys.argv[0] = "python -m lbw_jax.train.stress.goals"   # argparse names the command
    forward("train.stress.goals", "python -m lbw_jax.train.stress.goals", lambda: sys.exit(main()))
