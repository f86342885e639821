"""``python -m train.stress``: the old name of ``lbw-stress``, for one release."""

from lbw_jax.train.stress.__main__ import cli
from train import forward

forward("train.stress", "lbw-stress", cli)
