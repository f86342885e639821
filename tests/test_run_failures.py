"""lbw_jax.train.run under failure: the watchdog, checkpoints kept only when good, resume
rules, one-line errors with exit codes, inputs, and records that are never damaged."""

import gzip
import json
import math
import re

import numpy as np
import orbax.checkpoint as ocp
import pytest

import lbw_jax

from harness_helpers import SMALL_FLAGS, run_cli, small_config, unguarded
from lbw_jax.train.errors import CheckpointError, ConfigError, DivergenceError, InputError
from lbw_jax.train.session.resume_rules import differences
from lbw_jax.train.records.metrics import read_metrics
from lbw_jax.train.run import apply_knobs, split_knob_flags, train


def _steps(run_dir, kind="train"):
    return [r["step"] for r in read_metrics(run_dir) if r["kind"] == kind]


def _checkpoint_steps(run_dir):
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def _one_error_line(result):
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "Event loop is closed" not in out, out
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), out
    return lines[-1]


# -- config errors: one line, exit 2, before anything is built --------------------------

@pytest.mark.parametrize("flag,named", [
    ("--config.optimizer.lr=nan", "optimizer.lr=nan"),
    ("--config.optimizer.lr=inf", "optimizer.lr=inf"),
    ("--config.train.grad_accum=0", "train.grad_accum=0"),
    ("--config.train.eval_every=0", "train.eval_every=0"),
    ("--config.optimizer.lrr=1e-3", "--config.optimizer.lrr: no such config field"),
    ("--config.optimizer.governor.min_scale=2", "optimizer.governor.min_scale=2.0 is invalid; "
                                                "allowed: a real number in (0.0, 1.0]"),
    ("--config.optimizer.policy_kwargs.min_scale=2", "optimizer.governor.min_scale=2"),  # deprecated form
    ("--config.optimizer.reflex.min_scale=0.5", "optimizer.reflex.min_scale=0.5: set, but "
                                                "optimizer.policy='governor'"),  # not the default law
    ("--config.optimizer.governor.warmup_steps=2.5", "optimizer.governor.warmup_steps"),
    ("--config.optimizer.policy=nonesuch", "optimizer.policy='nonesuch'; choose none or one of"),
])
def test_config_errors_are_one_line_with_exit_code_2(tmp_path, flag, named):
    result = run_cli(["--config.output_dir=" + str(tmp_path / "run"), flag], timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in _one_error_line(result)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("field,value,named", [
    ("batch_size", 0, "train.batch_size=0"), ("grad_accum", 0, "train.grad_accum=0"),
    ("eval_every", 0, "train.eval_every=0"), ("batch_size", 12, "divisible by train.grad_accum=8"),
])
def test_bad_numbers_are_refused_up_front(tmp_path, field, value, named):
    cfg = small_config(tmp_path, grad_accum=8 if value == 12 else 1)
    cfg.train[field] = value
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        train(cfg)


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        train(small_config(tmp_path / "file"))


def test_policy_knobs_are_config_fields_typed_by_their_defaults():
    from lbw_jax.train.configs.tiny import get_config
    from lbw_jax.train import optim

    cfg = get_config()
    cfg.lock()
    assert cfg.optimizer.policy == "governor"   # the default
    cfg.optimizer.governor.min_scale, cfg.optimizer.governor.use_trust = 0.5, False
    policy = optim.build_policy(cfg.optimizer.policy, optim.policy_knobs(cfg))
    assert (policy.min_scale, policy.use_trust) == (0.5, False)
    assert dict(cfg.optimizer.reflex) == lbw_jax.knobs.defaults(lbw_jax.Reflex)
    with pytest.raises(TypeError, match="warmup_steps"):
        cfg.optimizer.governor.warmup_steps = 2.5   # an integer knob: ml_collections refuses


def test_the_deprecated_policy_kwargs_form_is_moved_into_the_active_subtree():
    from lbw_jax.train.configs.tiny import get_config
    from lbw_jax.train import optim
    from lbw_jax.train.normalize import prepare_config

    argv, knobs = split_knob_flags(["prog", "--config.optimizer.policy=reflex",
                                    "--config.optimizer.policy_kwargs.min_scale=0.5",
                                    "--config.optimizer.policy_kwargs.use_max=False",
                                    "--config.train.steps=3"])
    assert argv == ["prog", "--config.optimizer.policy=reflex", "--config.train.steps=3"]
    cfg = get_config()
    cfg.lock()
    cfg.optimizer.policy = "reflex"   # what the flag in argv sets
    apply_knobs(cfg, knobs)
    notes = prepare_config(cfg)
    assert len(notes) == 1 and notes[0].startswith("optimizer.policy_kwargs is deprecated")
    assert cfg.optimizer.policy_kwargs.to_dict() == {}
    assert (cfg.optimizer.reflex.min_scale, cfg.optimizer.reflex.use_max) == (0.5, False)
    policy = optim.build_policy(cfg.optimizer.policy, optim.policy_knobs(cfg))
    assert (policy.min_scale, policy.use_max) == (0.5, False)
    cfg.optimizer.policy_kwargs = {"min_scale": 0.3}
    with pytest.raises(ConfigError, match=r"optimizer.policy_kwargs.min_scale=0.3 and "
                                          r"optimizer.reflex.min_scale=0.5: set it once"):
        prepare_config(cfg)


@pytest.mark.parametrize("guard,set_knob,named", [
    ("reflex", ("governor", "tolerance", 0.05), "optimizer.governor.tolerance=0.05: set, but "
                                                "optimizer.policy='reflex'"),
    ("none", ("reflex", "stats_every", 2), "optimizer.reflex.stats_every=2: set, but "
                                           "optimizer.policy='none'"),
    ("reflex", ("clip", "max_norm", 0.5), "optimizer.clip.max_norm=0.5: set, but"),
])
def test_knobs_of_a_policy_or_baseline_not_in_use_are_refused(tmp_path, guard, set_knob, named):
    cfg = unguarded(small_config(tmp_path))
    cfg.optimizer.policy = guard
    group, knob, value = set_knob
    cfg.optimizer[group][knob] = value
    with pytest.raises(ConfigError, match=re.escape(named)):
        train(cfg)


def test_a_governor_that_skips_longer_than_the_watchdog_tolerates_is_refused(tmp_path):
    """The governor accepts a run of outliers as a new level after its max_skips; a
    watchdog that rolls back sooner would undo what the guard was about to accept."""
    cfg = unguarded(small_config(tmp_path))
    cfg.optimizer.policy = "governor"
    cfg.optimizer.governor.max_skips = cfg.train.watchdog.max_skips + 1
    with pytest.raises(ConfigError, match=re.escape(
            "optimizer.governor.max_skips=21 is above train.watchdog.max_skips=20")):
        train(cfg)
    cfg.train.watchdog.max_skips = 21
    from lbw_jax.train.validate import check_config
    check_config(cfg)


# -- inputs -----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_single_file_corpus_is_split_into_documents_and_trains(tmp_path):
    from data_fixtures import austen_sample

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.txt").write_text(austen_sample(6))
    for path in (corpus / "book.txt", corpus):  # the file, and a folder holding only it
        cfg = small_config(tmp_path / f"run_{path.name}", steps=2, eval_every=2, checkpoint_every=2)
        cfg.data.source, cfg.data.path, cfg.data.vocab_size = "files", str(path), 300
        summary = train(cfg)
        assert math.isfinite(summary["val_ppl"]) and summary["val_tokens"] > 0


def test_a_latin1_file_is_decoded_with_a_warning_naming_it(tmp_path):
    from lbw_jax.train.data.dataset import NotUTF8Warning, file_documents

    (tmp_path / "a.txt").write_text("plain text\n\nmore", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    with pytest.warns(NotUTF8Warning, match="b.txt is not UTF-8"):
        docs = file_documents(tmp_path)
    assert docs[1] == "café crème"


def test_a_binary_file_is_refused_by_name(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.txt").write_text("Emma Woodhouse, handsome, clever, and rich. " * 400)
    (corpus / "blob.txt").write_bytes(np.random.default_rng(0).bytes(300_000))
    cfg = small_config(tmp_path / "run")
    cfg.data.source, cfg.data.path = "files", str(corpus)
    with pytest.raises(InputError, match=r"blob\.txt is not a text file: 2\d\.\d% of its "
                       r"characters are unprintable"):
        train(cfg)


def _corpus_with(tmp_path, name: str, content: bytes):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "book.txt").write_text("Emma Woodhouse, handsome, clever, and rich. " * 400)
    (corpus / name).write_bytes(content)
    cfg = small_config(tmp_path / "run")
    cfg.data.source, cfg.data.path = "files", str(corpus)
    return cfg


def test_bytes_that_latin1_decodes_to_printable_letters_are_still_refused(tmp_path):
    """Random bytes 0x80-0xFF decode as Latin-1 to no C0 control at all: the C1 controls
    (U+0080-U+009F, a quarter of them) are what gives them away."""
    noise = (np.random.default_rng(0).integers(0x80, 0x100, 300_000)).astype(np.uint8).tobytes()
    cfg = _corpus_with(tmp_path, "noise.txt", noise)
    with pytest.raises(InputError, match=r"noise\.txt is not a text file: 2\d\.\d% of its "
                       r"characters are unprintable"):
        train(cfg)


@pytest.mark.parametrize("content, named", [
    (gzip.compress(np.random.default_rng(0).bytes(20_000))[:5000], "EOFError"),  # (cut for real)
    (b"Mr. Knightley was one of the few. " * 100, "BadGzipFile"),
])
def test_a_gz_that_is_cut_short_or_not_gzip_is_one_input_error_naming_it(tmp_path, content, named):
    cfg = _corpus_with(tmp_path, "part.txt.gz", content)
    with pytest.raises(InputError, match=rf"part\.txt\.gz is not a whole gzip file \({named}"):
        train(cfg)


def test_an_empty_corpus_names_its_files(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n ")
    cfg = small_config(tmp_path / "run")
    cfg.data.source, cfg.data.path = "files", str(tmp_path / "empty.txt")
    with pytest.raises(InputError, match=r"the corpus is empty: .*empty\.txt holds no text"):
        train(cfg)
    (tmp_path / "short.txt").write_text("One paragraph only.")
    cfg.data.path = str(tmp_path / "short.txt")
    with pytest.raises(InputError, match=r"data\.path=.*short\.txt' has 1 document"):
        train(cfg)


@pytest.mark.parametrize("setting,value,named", [
    ("data.seq_len", 2048, "data.seq_len=2048 is above the model's max_position_embeddings=1024"),
    ("optimizer.baseline_kwargs", {"max_nrom": 0.5},
     "optimizer.baseline_kwargs.max_nrom: the clip baseline has no such knob; its knobs: max_norm"),
    ("optimizer.clip", {"max_norm": 0.0}, "optimizer.clip.max_norm=0.0 must be a finite positive"),
    ("optimizer.baseline_kwargs", {"max_norm": 0.0}, "max_norm=0.0 must be a finite positive"),
    ("optimizer.baseline_kwargs", {"window": 8}, "the zclip baseline has no such knob; its knobs: "
                                                 "alpha, z_threshold, warmup_steps, eps"),
])
def test_settings_that_would_be_ignored_are_refused(tmp_path, setting, value, named):
    cfg = small_config(tmp_path)
    cfg.model.arch.max_position_embeddings = 1024
    unguarded(cfg)
    cfg.optimizer.baseline = "zclip" if "window" in str(value) else "clip"
    section, key = setting.rsplit(".", 1)
    if key == "clip":
        cfg[section][key].update(value)
    else:
        cfg[section][key] = value
    with pytest.raises(ConfigError, match=re.escape(named)):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("guard", ["none", "reflex"])
def test_baseline_kwargs_without_a_baseline_are_refused(tmp_path, guard):
    cfg = small_config(tmp_path)
    if guard == "none":
        unguarded(cfg)
    cfg.optimizer.baseline_kwargs = {"max_norm": 0.5}
    with pytest.raises(ConfigError, match=r"baseline_kwargs=\{'max_norm': 0.5\} are set but "
                                          r"optimizer.baseline='none'"):
        train(cfg)


def test_an_offline_hub_model_or_dataset_is_one_line_saying_how_to_fetch_it(tmp_path, monkeypatch):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli(["--config", "lbw_jax/train/configs/qwen05b.py", "--config.output_dir=" + str(tmp_path / "run")],
                     env_extra=env, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_error_line(result)
    assert "'wikitext' is not in the local Hugging Face cache" in line
    assert "datasets.load_dataset('wikitext', 'wikitext-103-raw-v1')" in line
    from lbw_jax.train.models import PretrainedLoadError, load_pretrained

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(PretrainedLoadError, match=r"'Qwen/Qwen2.5-0.5B' is not in the local Hugging "
                                              r"Face cache .*hf download Qwen/Qwen2.5-0.5B"):
        load_pretrained("Qwen/Qwen2.5-0.5B")


def test_missing_corpus_names_the_setting(tmp_path):
    cfg = small_config(tmp_path / "run")
    cfg.data.source, cfg.data.path = "files", str(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="data.path=.*nope.txt does not exist"):
        train(cfg)


# -- the divergence watchdog ------------------------------------------------------------

@pytest.mark.slow
def test_lr_1e20_rolls_back_then_stops_with_exit_code_3_saving_nothing_non_finite(tmp_path):
    run = tmp_path / "run"
    result = run_cli(["--config.output_dir=" + str(run), "--config.train.steps=12",
                      "--config.optimizer.lr=1e20", *SMALL_FLAGS])
    assert result.returncode == 3, result.stdout + result.stderr
    line = _one_error_line(result)
    assert "diverged at step 1" in line and "3 rollback(s) used" in line
    assert result.stdout.count("rolled back to step 0") == 3
    events = [r for r in read_metrics(run) if r["kind"] == "watchdog"]
    assert [e["action"] for e in events] == ["rollback"] * 3 + ["stop"]
    assert [e["lr_factor"] for e in events[:3]] == [0.5, 0.25, 0.125]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["last_good_checkpoint"] == 0
    assert (run / "training.png").stat().st_size > 10_000  # the plot of a stopped run too
    assert _checkpoint_steps(run) == [0]  # nothing after the divergence was kept
    state = ocp.StandardCheckpointer().restore(run / "checkpoints" / "0" / "state")
    import jax
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state)
               if np.issubdtype(np.asarray(x).dtype, np.floating))


@pytest.mark.slow
def test_on_divergence_stop_raises_at_once(tmp_path):
    cfg = small_config(tmp_path, steps=12)
    cfg.optimizer.lr, cfg.train.on_divergence = 1e20, "stop"
    with pytest.raises(DivergenceError, match=r"stopped \(train.on_divergence=stop\)"):
        train(cfg)
    assert _checkpoint_steps(tmp_path) == [0]


@pytest.mark.slow
def test_watchdog_recovers_an_injected_1000x_lr_window_by_rollback(tmp_path):
    """The default model; a 1000x LR on batches 110-114 blows the loss up (perplexity past
    1e20). The run rolls back to step 100, skips the batches that led up to the event and
    ends within 10% of the clean run's validation perplexity. The cost is the LR dip at a
    point where the loss still falls fast, and it depends on the machine's floating-point
    order: +2.1% on 2026-11-26's CPU, +6.4% on 2026-12-01's (an AVX-512/AMX Xeon), with
    the same stack (docs/watchdog.md)."""
    from lbw_jax.train.configs.tiny import get_config

    def config(out, fault):
        cfg = get_config()
        cfg.output_dir = str(tmp_path / out)
        cfg.train.update(steps=160, batch_size=8, eval_every=160, checkpoint_every=20, log_every=5)
        if fault:
            cfg.fault.update(lr_factor=1000.0, first_batch=110, last_batch=115)
        return cfg

    clean = train(config("clean", False))
    faulted = train(config("faulted", True))
    assert clean["rollbacks"] == 0
    assert faulted["rollbacks"] == 1
    event = faulted["events"][0]
    assert event["action"] == "rollback" and event["to_step"] == 100 and event["onset"] > 110
    assert event["skipped_batches"][0] == 100 and event["skipped_batches"][1] > 115
    assert abs(faulted["val_ppl"] / clean["val_ppl"] - 1) < 0.10, (faulted["val_ppl"], clean["val_ppl"])
    train_steps = _steps(tmp_path / "faulted")
    assert train_steps == sorted(set(train_steps)) == list(range(1, 161))


# -- checkpoints ------------------------------------------------------------------------

@pytest.mark.slow
def test_flipped_bytes_are_detected_and_the_previous_good_checkpoint_is_used(tmp_path):
    train(small_config(tmp_path))
    assert _checkpoint_steps(tmp_path) == [0, 4, 8]
    assert sorted(p.name for p in (tmp_path / "checksums").iterdir()) == ["0.json", "4.json", "8.json"]
    data = max((p for p in (tmp_path / "checkpoints" / "8" / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[100:4196] = bytes(b ^ 0xFF for b in raw[100:4196])  # same size, different bytes
    data.write_bytes(bytes(raw))
    summary = train(small_config(tmp_path, steps=12))
    assert summary["resumed_from"] == 4
    assert (tmp_path / "checkpoints_unusable" / "8").is_dir()  # moved aside, not deleted
    assert _checkpoint_steps(tmp_path) == [4, 8, 12]
    assert _steps(tmp_path) == list(range(1, 13))


@pytest.mark.slow
def test_no_usable_checkpoint_is_one_line_exit_4_and_nothing_moves(tmp_path):
    train(small_config(tmp_path))
    for step in _checkpoint_steps(tmp_path):
        for f in (tmp_path / "checkpoints" / str(step) / "state").rglob("*"):
            if f.is_file() and f.stat().st_size > 1000:
                f.write_bytes(f.read_bytes()[:1000])  # truncated
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=12", *SMALL_FLAGS])
    assert result.returncode == 4, result.stdout + result.stderr
    line = _one_error_line(result)
    assert "no usable checkpoint" in line and "step 8:" in line and "step 0:" in line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_a_failed_write_is_a_checkpoint_error_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    original = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step == 8:
            raise OSError(28, "No space left on device")
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointError, match="could not write checkpoint 8.*No space left"):
        train(small_config(tmp_path))
    assert _checkpoint_steps(tmp_path) == [0, 4]


# -- resume rules -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_resume_that_changes_the_run_is_refused_and_leaves_the_folder_alone(tmp_path):
    train(small_config(tmp_path, steps=4))
    saved = {name: (tmp_path / name).read_bytes() for name in ("config.json", "tokenizer.json")}
    changed = small_config(tmp_path, steps=8)
    changed.seed, changed.model.arch.hidden_size = 1, 64
    with pytest.raises(ConfigError, match=r"model.arch.hidden_size: 32 -> 64; seed: 0 -> 1"):
        train(changed)
    assert {name: (tmp_path / name).read_bytes() for name in saved} == saved
    allowed = small_config(tmp_path, steps=8, log_every=1)  # may change: steps, cadence
    allowed.optimizer.lr = 1e-3   # and the LR, when asked for (tests/test_resume_changes.py)
    allowed.optimizer.accept_schedule_change = True
    assert train(allowed)["resumed_from"] == 4


@pytest.mark.slow
def test_a_run_from_before_scan_layers_resumes_only_in_its_own_layout(tmp_path):
    train(small_config(tmp_path, steps=4))
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["model"]["scan_layers"]     # as written by the code before the option existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    scanned = small_config(tmp_path, steps=8)
    scanned.model.scan_layers = True
    with pytest.raises(ConfigError, match=r"model.scan_layers: False -> True"):
        train(scanned)                    # the other layout: refused, named
    same = small_config(tmp_path, steps=8)
    same.model.remat, same.model.loss_chunk_tokens = "full", 64   # how it computes may change
    same.model.attention = "xla"
    assert train(same)["resumed_from"] == 4


def test_a_lora_run_from_before_lora_param_dtype_keeps_its_adapters_dtype():
    # Before lora.param_dtype, the adapters took model.param_dtype: a bf16-base LoRA run
    # held bf16 adapters, so resuming it under the float32 default is refused, named.
    saved = {"lora.enabled": True, "model.param_dtype": "bfloat16", "seed": 0}
    current = {"lora.enabled": True, "model.param_dtype": "bfloat16", "seed": 0,
               "lora.param_dtype": "float32"}
    assert differences(saved, current) == ["lora.param_dtype: 'bfloat16' -> 'float32'"]
    assert differences(saved, {**current, "lora.param_dtype": "bfloat16"}) == []
    # Without LoRA there are no adapters: the field cannot differ.
    assert differences({**saved, "lora.enabled": False}, {**current, "lora.enabled": False}) == []


@pytest.mark.slow
def test_a_scanned_run_checkpoints_and_resumes(tmp_path):
    cfg = small_config(tmp_path, steps=4)
    cfg.model.scan_layers, cfg.model.remat = True, "dots_saveable"
    first = train(cfg)
    cfg.train.steps = 8
    resumed = train(cfg)
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 8
    assert math.isfinite(resumed["val_loss"]) and resumed["val_loss"] < first["val_loss"] + 1.0


@pytest.mark.slow
def test_resume_truncates_metrics_so_no_step_is_recorded_twice(tmp_path):
    import shutil

    train(small_config(tmp_path, steps=6, log_every=1))
    # As if killed after logging step 6 but before checkpoint 6 was written.
    shutil.rmtree(tmp_path / "checkpoints" / "6")
    (tmp_path / "checksums" / "6.json").unlink()
    (tmp_path / "summary.json").unlink()
    summary = train(small_config(tmp_path, steps=8, log_every=1))
    assert summary["resumed_from"] == 4
    assert _steps(tmp_path) == list(range(1, 9))
    assert _steps(tmp_path, "eval") == [4, 8]
    # TensorBoard, read back with its own reader: the steps after 4 that the first
    # session logged are purged (purge_step), so each step is shown once.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    shown = [e.step for e in events.Scalars("train/loss")]
    assert shown == list(range(1, 9)), shown
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path) if r["kind"] == "train"}
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([losses[k] for k in shown])


@pytest.mark.slow
def test_rerunning_a_finished_run_leaves_its_summary_intact(tmp_path):
    train(small_config(tmp_path))
    before = (tmp_path / "summary.json").read_text()
    again = train(small_config(tmp_path))
    assert again["already_finished"] and (tmp_path / "summary.json").read_text() == before
    assert "val_ppl" in json.loads(before)


@pytest.mark.slow
def test_a_fresh_start_drops_what_an_earlier_attempt_logged(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 9, "kind": "train", "loss": 1.0}) + "\n"
        + json.dumps({"step": 3, "kind": "watchdog", "reason": "loss"}) + "\n")
    train(small_config(tmp_path, steps=2, eval_every=2, checkpoint_every=2))
    assert [(r["step"], r["kind"]) for r in read_metrics(tmp_path)] == [
        (1, "train"), (2, "train"), (2, "eval")]
