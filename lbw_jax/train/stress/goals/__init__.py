"""Goal checks over stress-suite results files: a policy's goals (``policy``; run as
``python -m lbw_jax.train.stress.goals RESULTS.json``), a guard's over a baseline (``guarded``)
and the model-size axis over several files (``sizes``)."""
