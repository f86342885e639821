"""The stress suite's engine: the arms (``arms``), the failure scenarios (``faults``), an
arm's cells as one vmapped program (``sweep``), the shared start (``start``, ``shift_base``)
and the whole suite (``suite``). It never imports ``lbw_jax.train.study``: an instrument
reaches a run through the public fields of ``arms.Arm`` (``make``, ``probe``, ``signals``)."""
