"""What defines a run, so that a resume cannot silently change it.

A run folder's ``config.json`` is written once, when the run starts, and every
checkpoint's record holds the config of the session that saved it (so a deleted
``config.json`` does not open the door to a changed seed). A resume compares the new
config with it: every field except those in ``MAY_CHANGE`` must be equal (model, data,
tokenizer, seed, batch shape, optimizer and guard...), or the resume is refused with
the list of differences. The tokenizer is always reused from the folder.

Of the fields that may change, those of the LR schedule are checked by their effect
(``schedule_change``): from the resume step on, the new config must give the LR the
saved one gave, unless ``optimizer.accept_schedule_change=True``. So raising
``train.steps`` is fine for a constant LR, and refused for a cosine decay unless its
horizon is kept (``optimizer.decay_steps``). The data are checked by
``lbw_jax.train.data.fingerprint``.
"""

from __future__ import annotations

import json

import ml_collections
import numpy as np

from lbw_jax.train import optim
from lbw_jax.train.baseline_registry import BASELINES
from lbw_jax.train.errors import ConfigError
from lbw_jax.train.normalize import DEPRECATED_KNOB_GROUPS, renamed_fields

# Fields (and sections) a resume may change: how long and how often, the LR schedule
# for a deliberate restart, and how the same computation is laid out.
MAY_CHANGE = (
    "output_dir", "resume", "train.steps", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.on_divergence",
    "train.watchdog", "train.grad_accum", "optimizer.lr", "optimizer.schedule",
    "optimizer.warmup_steps", "optimizer.decay_steps", "optimizer.accept_schedule_change",
    "data.accept_changes", "model.remat", "model.loss_chunk_tokens", "model.attention",
    "mesh", "distributed", "fault",
)


def _older_lora_dtype(saved: dict, current: dict):
    # Before lora.param_dtype existed, the adapters took the base's parameter dtype; a run
    # without LoRA has no adapters, so the field cannot differ there.
    if not saved.get("lora.enabled"):
        return current.get("lora.param_dtype")
    return saved.get("model.param_dtype", "float32")


def _older_grad_noise(saved: dict, current: dict):
    # Before optimizer.governor.grad_noise existed, min_noise floored the log gradient norm too.
    return saved.get("optimizer.governor.min_noise", 0.01)


# Fields that define a run, added after runs were made without them: what those runs
# used, as a value or as a function of (saved, current) fields. (Before model.scan_layers
# existed, every checkpoint held one module per layer; before use_overshoot existed, the
# governor had no brake, and it is on by default since v3.0; before use_room existed, it had no
# room probe, on by default since v4.)
OLDER_RUNS_USED = {"model.scan_layers": False, "lora.param_dtype": _older_lora_dtype,
                   "optimizer.governor.grad_noise": _older_grad_noise,
                   "optimizer.governor.use_overshoot": False, "optimizer.governor.use_room": False}


def flatten(tree, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_fields(cfg) -> dict:
    """``cfg`` as flat dotted fields, JSON-normalised (tuples become lists)."""
    return flatten(json.loads(cfg.to_json_best_effort()))


def _may_change(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in MAY_CHANGE)


# Every knob subtree of the config (optimizer.<policy or baseline>.<knob>).
KNOB_GROUPS = tuple(optim.knob_config().keys())


def _in_current_form(saved: dict) -> dict:
    """A saved run's fields in today's form: renamed fields under their new names
    (``optimizer.guard`` is ``optimizer.policy``), and the deprecated
    ``optimizer.policy_kwargs.K`` (``baseline_kwargs``) as ``optimizer.<name>.K``."""
    renamed = renamed_fields()
    saved = {renamed.get(name, name): value for name, value in saved.items()}
    out = {}
    for name, value in saved.items():
        group = next((g for g in DEPRECATED_KNOB_GROUPS if name.startswith(f"optimizer.{g}")), None)
        if group is None:
            out[name] = value
        elif name != f"optimizer.{group}":   # (an empty group is a leaf: nothing to move)
            selector = saved.get(f"optimizer.{DEPRECATED_KNOB_GROUPS[group]}", "none")
            out[f"optimizer.{selector}.{name.rsplit('.', 1)[1]}"] = value
    return out


def _knob(name: str, current: dict) -> str | None:
    """The knob group of field ``name``, if it is a knob of the policy or baseline in use;
    "" for a knob of one that is not in use (it may change: it does nothing)."""
    parts = name.split(".")
    if len(parts) != 3 or parts[0] != "optimizer" or parts[1] not in KNOB_GROUPS:
        return None
    active = (current.get("optimizer.policy"), current.get("optimizer.baseline", "none"))
    return parts[1] if parts[1] in active else ""


def differences(saved: dict, current: dict) -> list[str]:
    """The fields defining the run that differ. Fields only one side knows (a newer
    or older version of the code) are not compared, except the knobs of the policy or
    baseline in use: one the saved run does not record (made before knobs were config
    fields) is compared with its default, which that run used."""
    out = []
    older = {k: v(saved, current) if callable(v) else v
             for k, v in OLDER_RUNS_USED.items() if k in current}
    saved = {**older, **_in_current_form(saved)}
    current = _in_current_form(current)
    for name in sorted(set(saved) | set(current)):
        group = _knob(name, current)
        if _may_change(name) or group == "":
            continue
        if name in saved and name in current:
            if saved[name] != current[name]:
                out.append(f"{name}: {saved[name]!r} -> {current[name]!r}")
        elif group:
            default = optim.knob_defaults(group).get(name.rsplit(".", 1)[1], "(no such knob)")
            was, now = saved.get(name, default), current.get(name, default)
            if was != now:
                out.append(f"{name}: {was!r} -> {now!r}")
    return out


def keep_saved_guard_knobs(saved_config_json: str, cfg) -> list[str]:
    """Sets in ``cfg``, in place, a guard's knobs over a baseline (its record's
    ``guard_knobs``) back to the saved run's values; returns a note for each.

    A new run takes them (``lbw_jax.train.normalize.fold_baseline_guard_knobs``), and a knob
    at its default cannot be set against them, so a run saved before its baseline's record
    gained one (a governor over D-Adaptation before ``room_cap=False``) could not be restored
    and resumed. The saved run keeps what it trained with."""
    opt = cfg.optimizer
    policy, baseline = opt.policy, opt.get("baseline", "none")
    wanted = optim.record_guard_knobs(policy, baseline)
    saved = _in_current_form(flatten(json.loads(saved_config_json)))
    notes = []
    for knob, value in wanted.items():
        was = saved.get(f"optimizer.{policy}.{knob}", optim.knob_defaults(policy).get(knob))
        if opt[policy][knob] == value and was != value:
            opt[policy][knob] = was
            notes.append(f"optimizer.{policy}.{knob}={was!r}: kept from the saved run in "
                         f"{cfg.output_dir} (a new run over optimizer.baseline={baseline!r} "
                         f"takes {value!r}: {BASELINES[baseline].guard_why})")
    return notes


def check_resume(saved_config_json: str, cfg) -> None:
    """Refuses (``ConfigError``) a resume of the run saved as ``saved_config_json``
    under a config that changes what defines it."""
    diff = differences(flatten(json.loads(saved_config_json)), config_fields(cfg))
    if diff:
        raise ConfigError(
            f"{cfg.output_dir} holds a run with a different config; resuming it would "
            f"corrupt it. Changed: {'; '.join(diff)}. Restore these settings, or choose a "
            f"new output_dir. (A resume may change: {', '.join(MAY_CHANGE)}.)")


def _describe(c) -> str:
    o = c.optimizer
    shape = ("constant" if o.schedule == "constant"
             else f"cosine decay to step {optim.horizon(c)}")
    return f"{shape} at lr={o.lr:g}" + (f", warmup {o.warmup_steps}" if o.warmup_steps else "")


def schedule_change(saved_config_json: str, cfg, step: int) -> str | None:
    """None if ``cfg``'s LR schedule gives the LR of the saved run's at every step from
    ``step`` (the resume point) to ``train.steps``; else what changes and what to do."""
    saved = ml_collections.ConfigDict(json.loads(saved_config_json))
    if step >= cfg.train.steps:
        return None
    steps = np.arange(step, cfg.train.steps)
    try:
        old = optim.schedule_values(saved, steps)
    except (AttributeError, KeyError, ValueError):  # a record too old to rebuild: nothing to compare
        return None
    new = optim.schedule_values(cfg, steps)
    differ = ~np.isclose(old, new, rtol=1e-5, atol=0.0)
    if not differ.any():
        return None
    k = int(np.argmax(differ))
    keep = ""
    if saved.optimizer.schedule == "cosine" and cfg.optimizer.schedule == "cosine" and \
            optim.horizon(saved) != optim.horizon(cfg):
        keep = (f" To keep the decay's horizon, add --config.optimizer.decay_steps="
                f"{optim.horizon(saved)} (the LR stays at its floor after it).")
    return (f"resuming at step {step} would change the LR schedule: the run was trained with "
            f"{_describe(saved)}, this config gives {_describe(cfg)}, so the LR at step "
            f"{int(steps[k])} would be {new[k]:.3g} instead of {old[k]:.3g}.{keep} To train on "
            f"under the new schedule from step {step}, add "
            f"--config.optimizer.accept_schedule_change=True")
