"""Defaults of the stress suite (``python -m lbw_jax.train.stress``); stress configs start here."""

import ml_collections

from lbw_jax.train.configs.base import base_config


def stress_config(c: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Adds the suite's settings to ``c`` (a training config; ``base_config()`` if omitted)."""
    c = base_config() if c is None else c
    c.optimizer.policy = "none"        # the arms decide; this field is not read by the suite
    # The schedule users train with: linear warmup, then cosine decay to 10% of the peak over
    # the run. Under a constant LR any guard whose scale falls over the run acts as a decay
    # schedule and wins for that alone; "constant" stays available for that comparison.
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 30

    s = c.stress = ml_collections.ConfigDict()
    s.arms = ("adamw", "clip", "zclip", "spike_skip", "update_clip", "plateau", "reflex", "reflex_pro",
              "governor", "replay_reflex", "replay_reflex_pro", "replay_governor",
              "effective_lr_reflex", "effective_lr_reflex_pro", "effective_lr_governor")
    s.lrs = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
    s.seeds = 3                   # data orders; every seed starts from the same model
    s.steps = 300
    s.eval_every = 10
    s.eval_batches = 8            # fixed validation batches, the same for every cell
    s.max_cells = 0               # cells per batched program (0: all of an arm's); bounds memory

    # A shared start: train the model first so that a too-large step has something to destroy
    # (the paper fine-tunes a pretrained model). 0: start from the model as built/loaded.
    # It ends a cosine decay, like a released checkpoint, so every arm starts near a minimum.
    # A domain shift (the paper's setting): the base is pretrained full-parameter on this
    # corpus with its own tokenizer, cached as a Hugging Face folder (under cache, default
    # $LBW_JAX_CACHE/stress_bases), and every cell fine-tunes it on data.* with that
    # tokenizer (LoRA when lora.enabled). "": no shift, the pretraining below runs on data.*.
    s.base = ml_collections.ConfigDict({"source": "", "cache": ""})
    s.pretrain_steps = 1500
    s.pretrain_lr = 3e-3
    s.pretrain_warmup = 50

    s.diverge_ratio = 2.0         # diverged: non-finite, or this many times the start perplexity
    # The guard whose mean scale the arm "effective_lr" copies ("effective_lr_<arm>" names its own).
    s.effective_lr_of = "reflex"
    # Where the controls and replays run: "stressed" = the LRs above AdamW's best where it
    # ends more than stressed_above worse than there (elsewhere a guard can only match
    # AdamW, which the grid already shows); "all" = every LR.
    s.controls_at = "all"
    s.stressed_above = 0.05

    # Failure scenarios, injected into exactly the arms of fault_arms (any kind but a control).
    s.scenarios = ("burst", "lr_spike", "grad_x100", "nan_grad")
    s.fault_arms = ("adamw", "clip", "zclip", "spike_skip", "update_clip", "plateau", "reflex",
                    "reflex_pro", "governor", "replay_reflex", "replay_reflex_pro", "replay_governor")
    s.fault_seeds = 0             # seeds of the faulted runs (0: all of stress.seeds)
    s.scenario_lr = 1e-3
    s.inject_at = 150
    s.burst_len = 20
    s.lr_spike = 30.0
    s.lr_spike_len = 20
    s.grad_factor = 100.0
    s.recover_tolerance = 0.02

    s.sequential_cells = 3        # cells also run one at a time, for the timing comparison

    # Every arm's knobs are the training config's: optimizer.<policy or baseline> (their
    # published defaults, lbw_jax.train.optim.knob_config), so an arm is what lbw_jax.train.run builds from
    # the same settings. reduce_on_plateau is given a per-step cadence the suite can see
    # within 300 steps (its defaults are for per-epoch calls).
    c.optimizer.plateau.update(dict(factor=0.5, patience=5, accumulation_size=10, min_scale=0.01))
    # Named variants of a policy or baseline, run as arms of their own (the governor's
    # ablation, a baseline's calibrated start): each is optimizer.<policy> with the knobs in
    # its kwargs changed (a baseline variant is a baseline, a policy's is its ablation).
    s.variants = ml_collections.ConfigDict()
    return c
