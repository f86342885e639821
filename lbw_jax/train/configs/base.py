"""Defaults shared by every config; each config file overrides what it needs."""

import ml_collections

from lbw_jax.train import optim
from lbw_jax.train.session import watchdog


def base_config() -> ml_collections.ConfigDict:
    """Every field a run reads, at its default, one section at a time."""
    c = ml_collections.ConfigDict()
    c.output_dir = "runs/default"
    c.resume = False            # also implied when output_dir already holds checkpoints
    c.seed = 0
    _model(c)
    _lora(c)
    _data(c)
    _optimizer(c)
    _train(c)
    _mesh(c)
    _distributed(c)
    _fault(c)
    return c


def _model(c) -> None:
    c.model = ml_collections.ConfigDict()
    c.model.pretrained = ""     # a Hugging Face folder or hub id; empty: train from scratch
    c.model.name = ""           # a named architecture (lbw_jax.train.models.NAMED_CONFIGS) from scratch
    c.model.arch = ml_collections.ConfigDict()   # or explicit DecoderConfig fields
    c.model.dtype = "float32"
    c.model.param_dtype = "float32"
    # What the backward pass recomputes of each block: none | full | dots_saveable
    # (lbw_jax.train.models.decoder.REMAT_POLICIES; a resume may change it).
    c.model.remat = "none"
    # The blocks' weights stacked and run under a scan: compile time independent of
    # depth (on in the named-model configs, lbw_jax/train/configs/finetune.py). It sets the checkpoint
    # layout, so a resume keeps it (HF export/import moves a model between layouts).
    # Off here: a small model compiles fast either way, and the default run and the
    # stress suite keep their recorded figures (a stacked init draws other numbers).
    c.model.scan_layers = False
    # The loss's LM-head matmul and cross-entropy run this many tokens of the micro-batch
    # at a time (lbw_jax/train/loss.py), never materialising all the logits. 0: auto (chunks of
    # at most 256 MiB of float32 logits; a 4k vocabulary never chunks); -1: all at once.
    c.model.loss_chunk_tokens = 0
    # The attention kernel: auto (cuDNN's fused attention on a GPU in bf16/fp16, XLA's
    # elsewhere) | cudnn (insist: an error where it cannot run) | xla (everywhere; the
    # fallback if cuDNN fails on a device). A resume may change it (the same function).
    c.model.attention = "auto"


def _lora(c) -> None:
    c.lora = ml_collections.ConfigDict()
    c.lora.enabled = False
    c.lora.rank = 16
    c.lora.alpha = 32.0
    c.lora.dropout = 0.05
    c.lora.targets = ("q", "k", "v", "o", "gate", "up", "down")
    # The adapters and their Adam moments, whatever model.param_dtype (a bf16 base): float32,
    # as PEFT keeps them. Runs made before this field existed kept them in model.param_dtype.
    c.lora.param_dtype = "float32"


def _data(c) -> None:
    c.data = ml_collections.ConfigDict()
    c.data.source = "austen"    # austen | shakespeare (both embedded) | files | hf
    c.data.path = ""            # files: a text file or a folder of .txt
    c.data.hf_name = "wikitext"
    c.data.hf_config = "wikitext-103-raw-v1"
    # For local data through a datasets builder, e.g. hf_name="text" with
    # {"train": "a.txt", "validation": "b.txt"}.
    c.data.hf_data_files = ml_collections.ConfigDict()
    c.data.tokenizer = "bpe"    # bpe (trained on the training split) | pretrained
    c.data.vocab_size = 4096    # bpe only
    c.data.seq_len = 128
    c.data.val_fraction = 0.05  # austen / files; hf datasets use their own validation split
    # A resume refuses data that changed since the run began (lbw_jax/train/data/fingerprint.py:
    # the corpus files' sizes and hashes, the split); True accepts the change, listed.
    c.data.accept_changes = False


def _optimizer(c) -> None:
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.lr = 3e-3
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.95
    c.optimizer.weight_decay = 0.01
    c.optimizer.warmup_steps = 0
    c.optimizer.schedule = "constant"   # constant | cosine
    # The cosine decay ends here (0: at train.steps); the LR stays at its floor after it.
    # Set it to keep a decay's horizon when a resume raises train.steps.
    c.optimizer.decay_steps = 0
    # A resume refuses a schedule that gives another LR from the resume step on (a new
    # train.steps on cosine, a new lr, warmup or schedule); True accepts it, with a notice.
    c.optimizer.accept_schedule_change = False
    # governor (lbw-jax's own law, the default) | reflex | reflex_pro (the reference laws) | none
    c.optimizer.policy = "governor"
    c.optimizer.skip_non_finite = True  # the guard skips non-finite steps (docs/guard.md, Cost)
    # Or, with policy="none", one baseline around AdamW or in its place (the registry
    # lbw_jax.train.baseline_registry.BASELINES): clip, zclip, spike_skip, update_clip, plateau, mechanize;
    # the LR-free prodigy and dadapt_adamw (optimizer.lr is not read: their learning_rate
    # knob multiplies the step size they estimate, on the schedule's shape); and
    # schedule_free_adamw (optimizer.lr with its own warmup and no decay: schedule=constant).
    c.optimizer.baseline = "none"
    # The knobs of every policy and baseline at their defaults, one subtree each and made
    # from their declarations (lbw_jax.train.optim.knob_config): optimizer.governor.tolerance,
    # optimizer.clip.max_norm... Only the active one's may be set away from its default.
    c.optimizer.update(optim.knob_config())
    # Deprecated: the form before knobs were config fields; what is set here is moved
    # into the active subtree when the run starts (lbw_jax.train.normalize.fold_deprecated_knobs).
    c.optimizer.policy_kwargs = ml_collections.ConfigDict()
    c.optimizer.baseline_kwargs = ml_collections.ConfigDict()


def _train(c) -> None:
    c.train = ml_collections.ConfigDict()
    c.train.steps = 300
    c.train.batch_size = 16     # global, per optimizer step
    c.train.grad_accum = 1      # micro-batches per step (batch_size must divide)
    c.train.log_every = 10
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    c.train.keep_checkpoints = 3
    # The divergence watchdog (lbw_jax/train/session/watchdog.py; docs/train_run.md, "The divergence
    # watchdog"): "rollback" restores the last good checkpoint, skips the batches that led
    # up to the event and lowers the LR; "stop" exits with code 3. It fires on a non-finite
    # loss or parameter norm, the loss above loss_factor x its running level for `patience`
    # steps, or more than max_skips consecutive skipped steps.
    c.train.on_divergence = "rollback"   # rollback | stop
    c.train.watchdog = watchdog.config()  # its settings, explained in lbw_jax.train.session.watchdog.DEFAULTS


def _mesh(c) -> None:
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1


def _distributed(c) -> None:
    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = ""   # host:port; empty: single process unless the cluster says
    c.distributed.num_processes = 1
    c.distributed.process_id = 0
    # How long each process waits for all the others to join (jax.distributed.initialize's
    # initialization_timeout): processes a scheduler starts at different times must all be
    # up within it; a process that never joins ends the others here, exit code 5.
    c.distributed.init_timeout_s = 300
    # How long a process may stay silent (no heartbeat to JAX's coordination service) before
    # the service takes it for dead and ends the others (lbw_jax/train/session/peers.py). A
    # survivor whose collective with a dead process fails exits at once (code 5, one line);
    # this bounds the rest (a hang). Long enough that a compile or a checkpoint never starves
    # the heartbeats (they have their own thread), short enough to free a dead job's hosts.
    c.distributed.peer_timeout_s = 60

    # Fault injection, for testing the watchdog: the optimizer step is multiplied by
    # lr_factor (for AdamW exactly an LR lr_factor times larger) on the batches
    # [first_batch, last_batch) of the data order. Batches, not steps: a rollback
    # skips them, as it would skip bad data.


def _fault(c) -> None:
    c.fault = ml_collections.ConfigDict()
    c.fault.lr_factor = 1.0
    c.fault.first_batch = 0
    c.fault.last_batch = 0
