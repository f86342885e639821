"""Strong baselines the guard is measured against, as optax transformations."""

from lbw_jax.baselines.spike_skip import SpikeSkipState, skip_spikes
from lbw_jax.baselines.update_clip import UpdateClipState, update_clip
from lbw_jax.baselines.zclip import ZClipState, zclip

__all__ = ["zclip", "ZClipState", "skip_spikes", "SpikeSkipState", "update_clip", "UpdateClipState"]
