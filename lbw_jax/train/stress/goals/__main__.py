"""``python -m lbw_jax.train.stress.goals RESULTS.json [ABLATION.json] [--policy NAME]``: a
policy's goals (``lbw_jax.train.stress.goals.policy``); exits 1 on a missed goal, 2 on a bad
file or an unknown policy."""

import sys

from lbw_jax.train.stress.goals.policy import main

if __name__ == "__main__":
    sys.argv[0] = "python -m lbw_jax.train.stress.goals"   # argparse's usage line names the command
    sys.exit(main())
