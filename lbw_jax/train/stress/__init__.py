"""The stress suite: optimizer arms x learning rates x seeds, plus injected faults,
each arm one batched (vmapped) program; see ``python -m lbw_jax.train.stress --help``.

Its rooms: ``engine`` (the arms, the faults, the vmapped sweep, the shared start and the
suite that runs them), ``metrics`` (the numbers read from a results file: summaries,
headline, time to target), ``report`` (results.json, report.md, the figures and the fault
table) and ``goals`` (a policy's goals, a guard's over a baseline, the model-size axis). The
research instruments that drive the engine live apart, in ``lbw_jax.train.study``.
"""
