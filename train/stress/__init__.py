"""``python -m train.stress``: the old name of ``lbw-stress``, for one release."""
