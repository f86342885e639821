"""A config in today's form, before it is checked: old field names, the old knob groups and
the knobs a guard takes over a baseline, each move returned as a one-line note.

``prepare_config`` is what ``lbw-train`` runs first: ``normalize_config`` (it may change the
config, and says how) and then ``lbw_jax.train.validate.check_config`` (it only reads). Old
names are read for one release, so saved runs and copied configs keep working.
"""

from __future__ import annotations

import ml_collections

import lbw_jax
from lbw_jax.train.baseline_registry import BASELINES
from lbw_jax.train.errors import ConfigError
from lbw_jax.train.optim import baseline_guard_knobs, knob_defaults, knob_dict, set_knobs
from lbw_jax.train.validate import check_config

# Config fields renamed in this release: old dotted name -> new (read for one release).
RENAMED_FIELDS = {"optimizer.guard": "optimizer.policy"}
# The form before knobs were config fields: optimizer.policy_kwargs / .baseline_kwargs.
DEPRECATED_KNOB_GROUPS = {"policy_kwargs": "policy", "baseline_kwargs": "baseline"}


def renamed_fields() -> dict[str, str]:
    """Every renamed field: ``RENAMED_FIELDS`` and each policy's renamed knobs
    (``optimizer.governor.OLD`` -> ``optimizer.governor.NEW``, from ``renamed_knobs``)."""
    out = dict(RENAMED_FIELDS)
    for name, policy in lbw_jax.POLICIES.items():
        for old, new in getattr(policy, "renamed_knobs", {}).items():
            out[f"optimizer.{name}.{old}"] = f"optimizer.{name}.{new}"
    return out


def rename_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with ``--config.OLD=V`` flags of renamed fields written ``--config.NEW=V``
    (ml_collections refuses unknown fields), and a note for each."""
    out, notes, renamed = [], [], renamed_fields()
    for arg in argv:
        name, sep, value = arg.partition("=")
        new = renamed.get(name[len("--config."):]) if name.startswith("--config.") else None
        if new is None:
            out.append(arg)
            continue
        out.append(f"--config.{new}{sep}{value}")
        notes.append(f"note: {name} is now --config.{new} (the old name is read for one release)")
    return out, notes


def _rename_fields(cfg) -> list[str]:
    """Moves fields set under an old name (a copied config's ``cfg.optimizer.guard = ...``)."""
    notes = []
    for old, new in renamed_fields().items():
        (old_group, old_key), (new_group, new_key) = (n.rsplit(".", 1) for n in (old, new))
        owner = cfg
        for part in old_group.split("."):
            owner = owner.get(part) if owner is not None else None
        if owner is None or old_key not in owner:
            continue
        target = cfg
        for part in new_group.split("."):
            target = target[part]
        with cfg.unlocked():
            target[new_key] = owner[old_key]
            del owner[old_key]
        notes.append(f"note: {old} is now {new} (the old name is read for one release)")
    return notes


def fold_deprecated_knobs(cfg) -> list[str]:
    """Moves knobs set in the deprecated ``optimizer.policy_kwargs`` (``baseline_kwargs``)
    into the active policy's (baseline's) subtree, so the run and its ``config.json``
    hold one form; returns a deprecation note per group moved. A knob set both ways to
    different values is an error."""
    notes, opt = [], cfg.optimizer
    for group, selector in DEPRECATED_KNOB_GROUPS.items():
        values = knob_dict(opt.get(group))
        if not values:
            continue
        name = opt.get(selector, "none")
        if name == "none":
            raise ConfigError(f"optimizer.{group}={values} are set but optimizer.{selector}='none'")
        if name not in (*lbw_jax.POLICIES, *BASELINES):
            continue   # an unknown policy or baseline: check_config names it
        known = knob_defaults(name)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"optimizer.{group}.{unknown[0]}: the {name} {selector} has no such "
                              f"knob; its knobs: {', '.join(known)}")
        already = set_knobs(cfg, name)
        clash = sorted(k for k in values if k in already and already[k] != values[k])
        if clash:
            raise ConfigError(f"optimizer.{group}.{clash[0]}={values[clash[0]]!r} and optimizer."
                              f"{name}.{clash[0]}={already[clash[0]]!r}: set it once, as "
                              f"optimizer.{name}.{clash[0]}")
        with cfg.unlocked():
            for k, v in values.items():
                opt[name][k] = v   # typed by the field: an int for a float knob is taken
            opt[group] = ml_collections.ConfigDict()
        notes.append(f"optimizer.{group} is deprecated: its knobs are config fields now; "
                     f"read as " + ", ".join(f"--config.optimizer.{name}.{k}={v!r}"
                                             for k, v in values.items()))
    return notes


def fold_baseline_guard_knobs(cfg) -> list[str]:
    """Sets ``baseline_guard_knobs`` in the config of a guard over a baseline, so the run
    and its ``config.json`` hold what runs; returns a note per knob set."""
    opt = cfg.optimizer
    policy, baseline = opt.policy, opt.get("baseline", "none")
    if policy == "none" or baseline == "none" or policy not in lbw_jax.POLICIES:
        return []
    knobs = baseline_guard_knobs(cfg, policy, baseline)
    with cfg.unlocked():
        for k, v in knobs.items():
            opt[policy][k] = v
    return [f"optimizer.{policy}.{k}={v!r} over optimizer.baseline={baseline!r}: "
            f"{BASELINES[baseline].guard_why} (a value set away from the knob's default stands)"
            for k, v in knobs.items()]


def normalize_config(cfg) -> list[str]:
    """``cfg`` in today's form, in place; returns a note for each change."""
    notes = _rename_fields(cfg)
    notes += fold_deprecated_knobs(cfg)
    notes += fold_baseline_guard_knobs(cfg)
    return notes


def prepare_config(cfg) -> list[str]:
    """``normalize_config`` then ``check_config``: the config a run starts from; its notes."""
    notes = normalize_config(cfg)
    check_config(cfg)
    return notes
