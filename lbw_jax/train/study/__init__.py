"""Research instruments built on the stress suite's engine (``lbw_jax.train.stress.engine``),
which never imports them: the signal study (``signals``, ``signal_study``, ``signal_scores``,
``signal_report``), the LR ladder (``ladder``, ``ladder_report``) and the skip replay
(``skip_replay``)."""
