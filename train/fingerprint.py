"""What defines a run, so that a resume cannot silently change it.

A run folder's ``config.json`` is written once, when the run starts. A resume compares
the new config with it: every field except those in ``MAY_CHANGE`` must be equal
(model, data, tokenizer, seed, batch shape, optimizer and guard...), or the resume is
refused with the list of differences. The tokenizer is always reused from the folder.
"""

from __future__ import annotations

import json

from train.errors import ConfigError

# Fields (and sections) a resume may change: how long and how often, the LR schedule
# for a deliberate restart, and how the same computation is laid out.
MAY_CHANGE = (
    "output_dir", "resume", "train.steps", "train.log_every", "train.eval_every",
    "train.checkpoint_every", "train.keep_checkpoints", "train.on_divergence",
    "train.watchdog", "train.grad_accum", "optimizer.lr", "optimizer.schedule",
    "optimizer.warmup_steps", "model.remat", "model.loss_chunk_tokens", "model.attention",
    "mesh", "distributed", "fault",
)


def _older_lora_dtype(saved: dict, current: dict):
    # Before lora.param_dtype existed, the adapters took the base's parameter dtype; a run
    # without LoRA has no adapters, so the field cannot differ there.
    if not saved.get("lora.enabled"):
        return current.get("lora.param_dtype")
    return saved.get("model.param_dtype", "float32")


# Fields that define a run, added after runs were made without them: what those runs
# used, as a value or as a function of (saved, current) fields. (Before model.scan_layers
# existed, every checkpoint held one module per layer.)
OLDER_RUNS_USED = {"model.scan_layers": False, "lora.param_dtype": _older_lora_dtype}


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


def differences(saved: dict, current: dict) -> list[str]:
    """The fields defining the run that differ. Fields only one side knows (a newer
    or older version of the code) are not compared, except knobs set on one side."""
    out = []
    older = {k: v(saved, current) if callable(v) else v
             for k, v in OLDER_RUNS_USED.items() if k in current}
    saved = {**older, **saved}
    for name in sorted(set(saved) | set(current)):
        if _may_change(name):
            continue
        knob = name.startswith(("optimizer.policy_kwargs.", "optimizer.baseline_kwargs."))
        if name in saved and name in current:
            if saved[name] != current[name]:
                out.append(f"{name}: {saved[name]!r} -> {current[name]!r}")
        elif knob:
            out.append(f"{name}: {saved.get(name, '(default)')!r} -> {current.get(name, '(default)')!r}")
    return out


def check_resume(saved_config_json: str, cfg) -> None:
    """Refuses (``ConfigError``) a resume of the run saved as ``saved_config_json``
    under a config that changes what defines it."""
    diff = differences(flatten(json.loads(saved_config_json)), config_fields(cfg))
    if diff:
        raise ConfigError(
            f"{cfg.output_dir} holds a run with a different config; resuming it would "
            f"corrupt it. Changed: {'; '.join(diff)}. Restore these settings, or choose a "
            f"new output_dir. (A resume may change: {', '.join(MAY_CHANGE)}.)")
