"""The stress suite's outputs: results.json, report.md and the figures (``outputs.write``,
through ``markdown`` and ``figures``), and the fault table of any results file
(``python -m lbw_jax.train.stress.report.fault_table RESULTS.json``)."""
