"""One table maps the model's logical axes to mesh axes (MaxText's logical_axis_rules).

Weights carry logical names through ``nnx.with_partitioning``; activations are
constrained at block edges with ``constrain``. Change the table, not the model,
to change how a model is laid out on a mesh of ``data`` x ``fsdp`` x ``tensor``.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from flax.core import spmd as core_spmd
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),   # activations: batch over every data-parallel axis
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_vocab", "tensor"),
    ("vocab", "tensor"),           # weights: embedding rows, lm_head columns
    ("embed", "fsdp"),             # the model width, sharded for FSDP
    ("heads", "tensor"),           # q/k/v/o head dimension (heads x head_dim, flattened)
    ("mlp", "tensor"),
    ("norm", None),
    ("lora_rank", None),
    ("layers", None),              # the stacked axis of scanned blocks: every device holds all layers
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A ``data`` x ``fsdp`` x ``tensor`` mesh; one size may be -1 to take the rest."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh sizes {dict(zip(MESH_AXES, sizes))}: at most one may be -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide by mesh sizes {sizes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} "
                         f"devices, have {len(devices)}")
    return Mesh(np.array(devices).reshape(sizes), MESH_AXES)


def logical_to_spec(names, rules=LOGICAL_AXIS_RULES) -> PartitionSpec:
    return PartitionSpec(*core_spmd.from_sharding_rules(tuple(names), rules))


def model_shardings(state, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
    """NamedShardings for an ``nnx.State`` (or abstract state), from its logical names."""
    with core_spmd.logical_axis_rules(rules):
        specs = nnx.get_partition_spec(state)
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))


def constrain(x: jax.Array, names: tuple[str | None, ...], rules=LOGICAL_AXIS_RULES) -> jax.Array:
    """Constrains an activation's layout when a mesh is in context; a no-op otherwise."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(names, rules))
