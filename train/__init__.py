"""The training harness (model ports, ``train.run``, ``train.stress``).

Its modules arrive with their own issues; the guard itself lives in ``lbw_jax``
and has no dependency on this package.
"""
