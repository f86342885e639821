"""``python -m train.run``: the old name of ``lbw-train``, for one release."""

if __name__ == "__main__":
    from lbw_jax.train.run import cli
    from train import forward
    forward("train.run", "lbw-train", cli)
