"""One run of ``lbw_jax.train.run`` from start to end: the loop, its resume rules and restore, the watchdog and its rollback, checkpoints and the run-folder lock."""
