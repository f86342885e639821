"""The model, its optimizer and the jitted steps of a run, sharded over a mesh, and what a
checkpoint holds of them (the data they train on: ``lbw_jax.train.data.build``)."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

import lbw_jax
from lbw_jax.train.data.build import Data
from lbw_jax.train.records import speed
from lbw_jax.train.baseline_registry import BASELINES
from lbw_jax.train.models import (DecoderConfig, LoRAConfig, apply_lora, load_pretrained, make_mesh,
                          model_shardings, named_config)
from lbw_jax.train.models.decoder import CausalLM
from lbw_jax.train.loss import token_nll
from lbw_jax.train.optim import build_optimizer
from lbw_jax.train.step import make_loss, train_step
from lbw_jax.train.validate import check_seq_len

BATCH_AXES = ("data", "fsdp")


def build_model(cfg, vocab_size: int, mesh) -> CausalLM:
    m = cfg.model
    dtype, param_dtype = jnp.dtype(m.dtype), jnp.dtype(m.param_dtype)
    if m.pretrained:
        model = load_pretrained(m.pretrained, dtype=dtype, param_dtype=param_dtype,
                                remat=m.remat, scan_layers=m.scan_layers,
                                attention=m.attention, mesh=mesh)
    else:
        if m.name:
            arch = named_config(m.name)
        else:
            fields = dict(m.arch.to_dict())
            fields.setdefault("vocab_size", vocab_size)
            arch = DecoderConfig(**fields)
        if arch.vocab_size < vocab_size:
            raise ValueError(f"model vocab_size={arch.vocab_size} is smaller than the "
                             f"tokenizer's {vocab_size}")
        model = CausalLM(arch, dtype=dtype, param_dtype=param_dtype, remat=m.remat,
                         scan_layers=m.scan_layers, attention=m.attention, rngs=nnx.Rngs(cfg.seed))
    check_seq_len(cfg.data.seq_len, model.config.max_position_embeddings)  # (a hub id's limit)
    if cfg.lora.enabled:
        apply_lora(model, LoRAConfig(rank=cfg.lora.rank, alpha=cfg.lora.alpha,
                                     dropout=cfg.lora.dropout, targets=tuple(cfg.lora.targets),
                                     param_dtype=cfg.lora.param_dtype),
                   seed=cfg.seed)
    # One placement of everything (a pretrained base is already on the mesh: a no-op there).
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.device_put(state, model_shardings(state, mesh)))


class Trainer:
    """Holds the model split into (trainable, frozen), the optimizer state and the
    jitted train and eval steps over the mesh. The model holds no RNG state: dropout
    keys derive from (seed, step)."""

    def __init__(self, cfg, data: Data | None, mesh, model: CausalLM, make_opt_state):
        """One body for both kinds; build one with ``Trainer.build`` (concrete) or
        ``Trainer.abstract`` (shapes only). ``make_opt_state(tx, params, shardings)``
        gives the optimizer state, placed by ``shardings``."""
        self.cfg, self.data, self.mesh = cfg, data, mesh
        self.arch = model.config
        trainable = nnx.LoRAParam if cfg.lora.enabled else nnx.Param
        self.graphdef, self.params, self.frozen = nnx.split(model, trainable, ...)
        self.tx = build_optimizer(cfg)
        # Moments follow their parameters' shardings; scalars (counters, the guard's
        # control) are replicated over the mesh.
        replicated = NamedSharding(self.mesh, P())
        opt_shardings = optax.tree_map_params(
            self.tx, lambda _, sharding: sharding, jax.eval_shape(self.tx.init, self.params),
            jax.tree.map(lambda x: x.sharding, self.params),
            transform_non_params=lambda _: replicated)
        self.opt_state = make_opt_state(self.tx, self.params, opt_shardings)
        self.guarded = cfg.optimizer.policy != "none"
        # The guard's policy class: its vocabulary names the regime codes in the records.
        self.policy = lbw_jax.POLICIES.get(cfg.optimizer.policy)
        self.batch_sharding = NamedSharding(self.mesh, P(None, BATCH_AXES, None))
        # Schedule-Free trains one point and is evaluated at another (its average).
        # (Also inside the guard: a guarded baseline is evaluated and probed as the bare one.)
        record = BASELINES.get(cfg.optimizer.get("baseline", "none"))
        self._eval_params = (jax.jit(record.eval_params) if record is not None and record.eval_params
                             else None)
        # What the baseline's record reads from its state (by name): its applied scale,
        # skipped steps or step-size estimate (Prodigy's estim_lr), logged as baseline_<key>.
        self._baseline_probe = record.probe if record is not None else None
        self._train_step = self._jit_train_step()
        self._eval_step = self._compile_eval_step()

    @classmethod
    def build(cls, cfg, data: Data, devices=None) -> "Trainer":
        """The trainer of ``cfg`` on ``data``: the model built or loaded and placed on the
        mesh, the optimizer state initialised there."""
        mesh = _mesh(cfg, devices)
        model = build_model(cfg, data.tokenizer.vocab_size, mesh)
        trainer = cls(cfg, data, mesh, model, lambda tx, params, shardings: jax.jit(
            tx.init, out_shardings=shardings)(params))
        if jax.process_count() > 1:
            # Arrays placed by device_put across processes are not all ones orbax can
            # write (seen on the CPU with gloo); a donated identity under jit re-makes
            # them as global arrays without copying, so step 0 can be checkpointed.
            shard = lambda tree: jax.tree.map(lambda x: x.sharding, tree)
            trainer.params, trainer.frozen = (
                jax.jit(lambda t: t, out_shardings=shard(t), donate_argnums=0)(t)
                for t in (trainer.params, trainer.frozen))
        return trainer

    @classmethod
    def abstract(cls, cfg, vocab_size: int, devices=None) -> "Trainer":
        """The trainer of ``cfg`` built from shapes only: parameters and optimizer state
        are ``jax.ShapeDtypeStruct``s with their shardings, nothing is allocated or
        loaded (a pretrained config needs ``model.name`` instead). For planning memory
        with ``lower_train_step().compile().memory_analysis()``; it cannot train."""
        mesh = _mesh(cfg, devices)
        graphdef, state = nnx.split(nnx.eval_shape(lambda: build_model(cfg, vocab_size, mesh)))
        model = nnx.merge(graphdef, _placed_shapes(state, model_shardings(state, mesh)))
        return cls(cfg, None, mesh, model, lambda tx, params, shardings: _placed_shapes(
            jax.eval_shape(tx.init, params), shardings))

    # The state that a checkpoint holds; the frozen base of a pretrained model is
    # reloaded from its source instead.
    def checkpoint_state(self):
        state = {"params": self.params, "opt_state": self.opt_state}
        if not self.cfg.model.pretrained:
            state["frozen"] = self.frozen
        return state

    def load_checkpoint_state(self, state):
        self.params, self.opt_state = state["params"], state["opt_state"]
        if "frozen" in state:
            self.frozen = state["frozen"]

    def _jit_train_step(self):
        loss_fn = make_loss(self.graphdef, chunk_tokens=self.cfg.model.loss_chunk_tokens)
        seed_key = jax.random.key(self.cfg.seed)

        def step(params, opt_state, frozen, batch, step_index, lr_factor):
            # Dropout keys depend only on (seed, step): a resumed run draws the same ones.
            params, opt_state, metrics = train_step(
                loss_fn, self.tx, params, opt_state, frozen, batch,
                step_key=jax.random.fold_in(seed_key, step_index),
                lr_factor=lr_factor)
            # The watchdog reads whether the parameters are still finite.
            metrics["param_norm"] = optax.tree.norm(params)
            if self.guarded:
                info = lbw_jax.telemetry(opt_state)
                metrics.update(multiplier=info["multiplier"], regime=info["regime"],
                               interventions=info["interventions"], skipped=info["skipped"])
                if "reason" in info:  # a law that names why it intervened (the governor)
                    metrics["reason"] = info["reason"]
            if self._baseline_probe is not None:
                metrics.update({f"baseline_{k}": v for k, v in self._baseline_probe(opt_state).items()})
            return params, opt_state, metrics

        shard = lambda tree: jax.tree.map(lambda x: x.sharding, tree)
        in_shardings = (shard(self.params), shard(self.opt_state), shard(self.frozen),
                        self.batch_sharding, None, None)
        return jax.jit(step, in_shardings=in_shardings,
                       out_shardings=in_shardings[:2] + (None,), donate_argnums=(0, 1))

    def flops_per_token(self) -> float:
        """Model FLOPs of one training token (``lbw_jax.train.records.speed``)."""
        lora = (sum(x.size for x in jax.tree.leaves(self.params)) if self.cfg.lora.enabled else 0)
        return speed.flops_per_token(self.arch, self.cfg.data.seq_len, lora_params=lora)

    def speed_meter(self) -> speed.SpeedMeter:
        return speed.SpeedMeter(self.cfg.train.batch_size * self.cfg.data.seq_len,
                                self.flops_per_token(), jax.device_count(),
                                speed.peak_flops(jax.devices()[0].device_kind))

    def lower_train_step(self):
        """The train step lowered for this trainer's state and batch shape (for
        ``.compile()``, its ``memory_analysis()`` and ``cost_analysis()``)."""
        cfg = self.cfg
        micro = cfg.train.batch_size // cfg.train.grad_accum
        batch = jax.ShapeDtypeStruct((cfg.train.grad_accum, micro, cfg.data.seq_len + 1),
                                     jnp.int32, sharding=self.batch_sharding)
        return self._train_step.lower(self.params, self.opt_state, self.frozen, batch,
                                      np.int32(0), np.float32(1.0))

    def compile_ahead(self):
        """Compiles the train step ahead of time and uses that executable from now on
        (so a benchmark can time compilation and then run what it timed)."""
        compiled = self.lower_train_step().compile()
        self._train_step = compiled
        return compiled

    def state_is_finite(self, state=None) -> bool:
        """Whether every floating-point value of ``state`` (default: this trainer's
        checkpoint state) is finite; one reduction on the devices."""
        state = self.checkpoint_state() if state is None else state
        return bool(_all_finite(state))

    def _compile_eval_step(self):
        chunk_tokens = self.cfg.model.loss_chunk_tokens

        def step(params, frozen, tokens, weights):
            model = nnx.merge(self.graphdef, params, frozen)
            hidden = model.hidden_states(tokens[:, :-1])  # no dropout key: deterministic
            nll = token_nll(hidden, model.head(), tokens[:, 1:], chunk_tokens=chunk_tokens)
            return jnp.sum(nll * weights[:, None]), jnp.sum(weights) * nll.shape[1]

        return jax.jit(step)

    def _global_batch(self, host_batch: np.ndarray, sharding) -> jax.Array:
        """Each process contributes its rows of the global batch."""
        if jax.process_count() == 1:
            return jax.device_put(host_batch, sharding)
        axis = 1 if host_batch.ndim == 3 else 0
        rows = host_batch.shape[axis] // jax.process_count()
        local = np.take(host_batch, range(jax.process_index() * rows,
                                          (jax.process_index() + 1) * rows), axis=axis)
        return jax.make_array_from_process_local_data(sharding, local, host_batch.shape)

    def run_step(self, step: int, batch_index: int | None = None, lr_factor: float = 1.0):
        """Runs optimizer step ``step`` (0-based) on global batch ``batch_index`` (default
        ``step``; ahead of it once a rollback has skipped batches), its update multiplied
        by ``lr_factor``; returns device metrics."""
        batch_index = step if batch_index is None else batch_index
        tokens = self.data.train.batch(batch_index)
        tokens = tokens.reshape(self.cfg.train.grad_accum, -1, tokens.shape[-1])
        batch = self._global_batch(tokens, self.batch_sharding)
        self.params, self.opt_state, metrics = self._train_step(
            self.params, self.opt_state, self.frozen, batch, np.int32(step),
            np.float32(lr_factor))
        return metrics

    def evaluate(self) -> dict:
        """Perplexity over the whole validation split (token-weighted mean NLL)."""
        windows, b = self.data.val_windows, self.cfg.train.batch_size
        pad = (-len(windows)) % b
        weights = np.concatenate([np.ones(len(windows), np.float32), np.zeros(pad, np.float32)])
        windows = np.concatenate([windows, np.zeros((pad, windows.shape[1]), windows.dtype)])
        sharding = NamedSharding(self.mesh, P(BATCH_AXES, None))
        w_sharding = NamedSharding(self.mesh, P(BATCH_AXES))
        # One batch in flight at a time: many independent programs with collectives in
        # flight at once deadlock XLA:CPU's rendezvous (seen with 8 host devices).
        params = self.params if self._eval_params is None else self._eval_params(self.opt_state, self.params)
        total = count = 0.0
        for i in range(0, len(windows), b):
            nll, n = self._eval_step(params, self.frozen,
                                     self._global_batch(windows[i:i + b], sharding),
                                     self._global_batch(weights[i:i + b], w_sharding))
            total, count = total + float(nll), count + float(n)
        mean = total / count
        return {"val_loss": mean, "val_ppl": float(np.exp(mean)), "val_tokens": int(count)}


# One compiled reduction over the whole state rather than one dispatch per leaf.
_all_finite = jax.jit(lbw_jax.all_finite)


def _placed_shapes(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


def _mesh(cfg, devices=None):
    """``cfg``'s mesh, checked against the batch: each micro-batch splits evenly over the
    data-parallel devices."""
    mesh = make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor, devices=devices)
    if cfg.train.batch_size % cfg.train.grad_accum:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must divide by "
                         f"train.grad_accum={cfg.train.grad_accum}")
    micro = cfg.train.batch_size // cfg.train.grad_accum
    batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if micro % batch_shards:
        raise ValueError(f"the micro-batch of {micro} does not split over the "
                         f"{batch_shards} data-parallel devices of the mesh")
    return mesh
