"""Process setup shared by the entry points."""

from __future__ import annotations

import os


def initialize_distributed(cfg) -> None:
    """Joins the processes of a multi-host run before anything touches a device."""
    import jax

    d = cfg.distributed
    if d.coordinator:
        if cfg.distributed.num_processes > 1 and jax.config.jax_platforms in ("cpu", None, ""):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(d.coordinator, num_processes=d.num_processes,
                                   process_id=d.process_id)
    elif any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID",
                                        "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")):
        jax.distributed.initialize()  # the cluster environment says how
