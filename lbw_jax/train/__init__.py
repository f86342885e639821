"""The training harness: the model ports, ``lbw-train`` (``lbw_jax.train.run``) and the stress
suite ``lbw-stress`` (``lbw_jax.train.stress``), with its presets in ``lbw_jax.train.configs``.

It needs the ``train`` extra (``pip install "lbw-jax[train]"``); the guard itself, ``lbw_jax``,
needs only jax, optax and numpy and never imports this package.
"""

try:
    import flax  # noqa: F401
    import ml_collections  # noqa: F401
except ImportError as e:  # the library was installed without the harness's dependencies
    raise ImportError(f"lbw_jax.train needs the train extra: pip install \"lbw-jax[train]\" "
                      f"({e.name} is missing)") from e
