"""The two parameter layouts of the decoder's blocks, and conversion between them.

Per layer (``scan_layers=False``): ``layers/<i>/self_attn/q_proj/kernel`` [in, out].
Stacked (``scan_layers=True``): ``layers/self_attn/q_proj/kernel`` [layers, in, out].
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


def is_stacked(path: tuple) -> bool:
    """Whether ``path`` names a weight of scanned layers (``layers/<module>/...``, one
    leading axis over the layers) rather than of one layer (``layers/<i>/...``)."""
    return len(path) > 1 and str(path[0]) == "layers" and not str(path[1]).isdigit()


def stacked_layer_axes(key_path, leaf=None) -> int:
    """For ``lbw_guard(stacked_axes=...)``: 1 for a leaf of scanned layers (a jax key path
    ``layers/<module>/...``), 0 for any other (``layers/<i>/...``, embeddings, norms)."""
    keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in key_path]
    return int(is_stacked(tuple(str(k) for k in keys if k is not None)))


def stacked_from_per_layer(flat: dict[tuple, object], num_layers: int) -> dict[tuple, object]:
    """Flat ``{path: array}`` of the per-layer layout as the stacked layout."""
    out, groups = {}, {}
    for path, value in flat.items():
        if len(path) > 1 and str(path[0]) == "layers" and str(path[1]).isdigit():
            groups.setdefault(("layers",) + tuple(path[2:]), {})[int(path[1])] = value
        else:
            out[path] = value
    for path, layers in groups.items():
        if sorted(layers) != list(range(num_layers)):
            raise ValueError(f"{'/'.join(map(str, path))}: layers {sorted(layers)}, "
                             f"expected 0..{num_layers - 1}")
        out[path] = jnp.stack([layers[i] for i in range(num_layers)])
    return out


def copy_into(model, flat: dict[tuple, object]) -> None:
    """Sets the model's variables from flat ``{path: array}`` (same layout), in place."""
    graphdef, state = nnx.split(model)
    leaves = []
    for path, var in nnx.to_flat_state(state):
        leaves.append((path, var.replace(flat[path]) if path in flat else var))
    nnx.update(model, nnx.from_flat_state(leaves))
