"""The stress suite's numbers, read from a run or a results file: per-arm summaries and
fault standings (``summary``), the headline metrics and the stressed LRs (``headline``) and
time to target (``target``)."""
