"""Every setting of a ``lbw_jax.train.run`` config checked up front, before anything is built.

Each failure is a ``ConfigError`` naming the setting, its value and what is allowed,
so a bad number never surfaces later as a ``ZeroDivisionError`` after compiling, a
NaN, or a silent no-op.
"""

from __future__ import annotations

import json
import math
import numbers
import pathlib

import lbw_jax
from lbw_jax.train import optim
from lbw_jax.train.errors import ConfigError
from lbw_jax.train.models.config import DTYPES, named_config
from lbw_jax.train.models.decoder import REMAT_POLICIES
from lbw_jax.train.models.layers import ATTENTION_CHOICES, check_attention


def _get(cfg, name: str):
    value = cfg
    for part in name.split("."):
        value = value[part]
    return value


def _fail(name: str, value, allowed: str):
    raise ConfigError(f"{name}={value!r} is invalid; allowed: {allowed}")


def int_field(cfg, name: str, low: int, high: int | None = None) -> int:
    value = _get(cfg, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high):
        _fail(name, value, f"an integer in [{low}, {'inf' if high is None else high}]")
    return int(value)


def real_field(cfg, name: str, low: float, high: float = math.inf, *, low_open=False, high_open=False):
    value = _get(cfg, name)
    left, right = "(" if low_open else "[", ")" if high_open or math.isinf(high) else "]"
    allowed = f"a finite number in {left}{low:g}, {high:g}{right}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(name, value, allowed)
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        _fail(name, value, allowed)
    return float(value)


def choice_field(cfg, name: str, options) -> str:
    value = _get(cfg, name)
    if value not in options:
        _fail(name, value, " | ".join(map(str, options)))
    return value


def check_config(cfg) -> None:
    """Raises ``ConfigError`` for the first setting of ``cfg`` that cannot work. It only
    reads: ``lbw_jax.train.normalize.normalize_config`` brings old forms to today's first."""
    int_field(cfg, "seed", 0)
    out = pathlib.Path(cfg.output_dir).expanduser()
    if not cfg.output_dir:
        _fail("output_dir", cfg.output_dir, "a folder path")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir={cfg.output_dir!r} is a file, not a folder; choose another path")

    steps = int_field(cfg, "train.steps", 1)
    batch = int_field(cfg, "train.batch_size", 1)
    accum = int_field(cfg, "train.grad_accum", 1)
    if batch % accum:
        raise ConfigError(f"train.batch_size={batch} must be divisible by train.grad_accum={accum}")
    for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        int_field(cfg, f"train.{name}", 1)
    choice_field(cfg, "train.on_divergence", ("rollback", "stop"))
    real_field(cfg, "train.watchdog.loss_factor", 1.0, low_open=True)
    int_field(cfg, "train.watchdog.patience", 1)
    real_field(cfg, "train.watchdog.level_decay", 0.0, 1.0, high_open=True)
    int_field(cfg, "train.watchdog.max_skips", 0)
    int_field(cfg, "train.watchdog.max_rollbacks", 0)
    real_field(cfg, "train.watchdog.lr_factor", 0.0, 1.0, low_open=True)
    int_field(cfg, "train.watchdog.lr_recovery_steps", 0)

    # data.source, data.path and data.tokenizer are checked by build_data before it reads
    # anything; the numbers are checked here.
    if cfg.data.tokenizer == "bpe":
        int_field(cfg, "data.vocab_size", 257)  # the 256-byte alphabet and the EOS token
    int_field(cfg, "data.seq_len", 1)
    real_field(cfg, "data.val_fraction", 0.0, 1.0, low_open=True, high_open=True)
    check_seq_len(cfg.data.seq_len, position_limit(cfg))

    choice_field(cfg, "model.dtype", DTYPES)
    choice_field(cfg, "model.param_dtype", DTYPES)
    if not isinstance(cfg.model.remat, bool):
        choice_field(cfg, "model.remat", tuple(REMAT_POLICIES))
    if not isinstance(cfg.model.scan_layers, bool):
        _fail("model.scan_layers", cfg.model.scan_layers, "True or False")
    int_field(cfg, "model.loss_chunk_tokens", -1)
    choice_field(cfg, "model.attention", ATTENTION_CHOICES)
    try:  # cuDNN in float32; a missing GPU is found when the model is built, with jax started
        check_attention(cfg.model.attention, cfg.model.dtype)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if cfg.lora.enabled:
        int_field(cfg, "lora.rank", 1)
        real_field(cfg, "lora.alpha", 0.0, low_open=True)
        real_field(cfg, "lora.dropout", 0.0, 1.0, high_open=True)
        choice_field(cfg, "lora.param_dtype", DTYPES)
    for axis in ("data", "fsdp", "tensor"):
        value = cfg.mesh[axis]
        if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value >= 1):
            _fail(f"mesh.{axis}", value, "a positive integer, or -1 (all remaining devices)")

    # (a float or 0 would reach the coordination service's C++ client as a bad timeout)
    int_field(cfg, "distributed.init_timeout_s", 1)
    int_field(cfg, "distributed.peer_timeout_s", 1)

    _check_optimizer(cfg, optim, steps)
    real_field(cfg, "fault.lr_factor", 0.0, low_open=True)
    int_field(cfg, "fault.first_batch", 0)
    int_field(cfg, "fault.last_batch", 0)


def position_limit(cfg) -> int | None:
    """The model's ``max_position_embeddings`` where it is known without loading it (an
    architecture, a named model or a local Hugging Face folder); None for a hub id."""
    m = cfg.model
    if m.pretrained:
        config_file = pathlib.Path(m.pretrained).expanduser() / "config.json"
        if not config_file.is_file():
            return None
        try:
            return json.loads(config_file.read_text()).get("max_position_embeddings")
        except ValueError as e:
            raise ConfigError(f"model.pretrained={m.pretrained!r}: {config_file} is not valid "
                              f"JSON ({e})") from e
    if m.name:
        try:
            return named_config(m.name).max_position_embeddings
        except ValueError as e:
            raise ConfigError(f"model.name={m.name!r}: {e}") from e
    return m.arch.get("max_position_embeddings")


def check_seq_len(seq_len: int, limit: int | None) -> None:
    if limit is not None and seq_len > limit:
        raise ConfigError(f"data.seq_len={seq_len} is above the model's max_position_embeddings="
                          f"{limit}; it was not trained on positions that far. Use a data.seq_len "
                          f"of at most {limit}")


def _check_optimizer(cfg, optim, steps: int) -> None:
    real_field(cfg, "optimizer.b1", 0.0, 1.0, high_open=True)
    real_field(cfg, "optimizer.b2", 0.0, 1.0, high_open=True)
    real_field(cfg, "optimizer.weight_decay", 0.0)
    warmup = int_field(cfg, "optimizer.warmup_steps", 0)
    decay = int_field(cfg, "optimizer.decay_steps", 0)
    if warmup >= (decay or steps) and cfg.optimizer.schedule == "cosine":
        raise ConfigError(f"optimizer.warmup_steps={warmup} leaves no cosine decay within "
                          + (f"optimizer.decay_steps={decay}" if decay else f"train.steps={steps}"))
    for flag in ("optimizer.accept_schedule_change", "data.accept_changes"):
        if not isinstance(_get(cfg, flag), bool):
            _fail(flag, _get(cfg, flag), "True or False")
    idle = optim.inactive_knobs(cfg)
    if idle:  # knobs of a policy or baseline that is not in use would do nothing
        o = cfg.optimizer
        raise ConfigError(f"{', '.join(idle)}: set, but optimizer.policy={o.policy!r} and "
                          f"optimizer.baseline={o.get('baseline', 'none')!r}; choose the one "
                          f"these knobs belong to, or drop them")
    baseline = cfg.optimizer.get("baseline", "none")
    if (baseline in optim.BASELINES and optim.BASELINES[baseline].lr == "constant" and cfg.optimizer.schedule != "constant"):
        raise ConfigError(f"optimizer.baseline={baseline!r} brings its own schedule (warmup, then no "
                          f"decay: that is its point), but optimizer.schedule="
                          f"{cfg.optimizer.schedule!r}: set optimizer.schedule=constant")
    try:  # the LR, schedule, guard or baseline and their knobs (named by the policy's checks)
        optim.build_optimizer(cfg)
    except (TypeError, ValueError) as e:
        raise ConfigError(_as_config_field(e, cfg.optimizer)) from e
    # A policy that accepts a run of outliers as a new level after its own max_skips must
    # do so before the watchdog calls that run a divergence and rolls back.
    own = optim.policy_knobs(cfg).get("max_skips") if cfg.optimizer.policy != "none" else None
    tolerated = cfg.train.watchdog.max_skips
    if own is not None and own > tolerated:
        raise ConfigError(
            f"optimizer.{cfg.optimizer.policy}.max_skips={own} is above train.watchdog.max_skips="
            f"{tolerated}: the watchdog would roll back a run of outliers the guard is about to "
            f"accept as a new level. Lower the first or raise the second")


def _as_config_field(error: Exception, opt) -> str:
    """A knob's error (``governor: knob tolerance=-1.0 is invalid; ...``, a
    ``lbw_jax.KnobError``) in terms of the config field to change
    (``optimizer.governor.tolerance=-1.0 is invalid; ...``); other errors as they are."""
    message = str(error)
    if not isinstance(error, lbw_jax.KnobError):
        return message
    active = (opt.policy, opt.get("baseline", "none"))
    # The knob's owner names its group; a baseline's class may call itself otherwise.
    group = error.owner if error.owner in active else next((g for g in active if g != "none"), None)
    prefix = f"{error.owner}: knob {error.name}="
    if group is None or not message.startswith(prefix):
        return message
    return f"optimizer.{group}.{error.name}=" + message[len(prefix):]
