"""lbw_jax.train.run end to end: outputs, resume, signals, several processes, bad inputs."""

import json
import math
import os
import signal
import socket
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from harness_helpers import SMALL_FLAGS, run_cli, small_config
from lbw_jax.train.records.metrics import read_metrics
from lbw_jax.train.run import train


def _train_losses(run_dir):
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"}


def _final_state(run_dir, step):
    restored = ocp.StandardCheckpointer().restore(os.path.join(run_dir, "checkpoints", str(step), "state"))
    return jax.tree.leaves(restored)


@pytest.mark.slow
def test_default_cli_writes_metrics_tensorboard_and_plot(tmp_path):
    result = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=6", *SMALL_FLAGS])
    assert result.returncode == 0, result.stdout + result.stderr
    records = read_metrics(tmp_path)
    train_records = [r for r in records if r["kind"] == "train"]
    eval_records = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in eval_records] == [4, 6]
    for r in train_records:
        assert all(math.isfinite(r[k]) for k in ("loss", "ppl", "grad_norm", "multiplier"))
        assert r["regime_name"] in ("calm", "oscillation", "spike")
    assert all(math.isfinite(r["val_ppl"]) and r["val_ppl"] > 1 for r in eval_records)
    assert (tmp_path / "training.png").stat().st_size > 10_000
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 6 and math.isfinite(summary["val_ppl"])
    assert "summary:" in result.stdout


@pytest.mark.slow
def test_the_default_guard_is_the_governor_and_its_records_name_its_reasons(tmp_path):
    flags = [f for f in SMALL_FLAGS if ".policy=" not in f and ".reflex." not in f]
    result = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=4", *flags])
    assert result.returncode == 0, result.stdout + result.stderr
    train_records = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    assert len(train_records) == 4
    assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["policy"] == "governor"
    # Four steps from initialization: the loss falls on each (no harm to cut for), the trust
    # region clamps from applied step 11 (trust_from) on, and nothing overshoots; so every
    # record names the calm regime and no reason, and the summary's counts are all 0.
    losses = [r["loss"] for r in train_records]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert [(r["regime_name"], r["reason_name"]) for r in train_records] == [("calm", "none")] * 4
    summary = json.loads((tmp_path / "summary.json").read_text())
    counts = ("guard_step_limits", "guard_cuts", "guard_brakes", "guard_interventions", "skipped_steps")
    assert {k: summary[k] for k in counts} == dict.fromkeys(counts, 0)
    assert summary["guard_multiplier"] == 1.0


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path):
    full = small_config(tmp_path / "full")
    train(full)
    part = small_config(tmp_path / "part", steps=4)
    train(part)
    resumed = small_config(tmp_path / "part")   # same folder: continues from step 4
    summary = train(resumed)
    assert summary["resumed_from"] == 4
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "part")
    for a, b in zip(_final_state(tmp_path / "full", 8), _final_state(tmp_path / "part", 8)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_a_checkpoint_and_exits_with_its_code(tmp_path, sig, code):
    proc = run_cli(["--config.output_dir=" + str(tmp_path), "--config.train.steps=100000",
                    "--config.train.checkpoint_every=100000", "--config.train.eval_every=100000",
                    *SMALL_FLAGS[:-3], "--config.train.log_every=1"], wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = tmp_path / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == code, out
    name = signal.Signals(sig).name
    assert f"{name}: saved a checkpoint at step" in out
    saved = int(out.split("saved a checkpoint at step ")[1].split()[0])
    assert saved >= 3
    assert (tmp_path / "checkpoints" / str(saved)).is_dir()
    assert (tmp_path / "checksums" / f"{saved}.json").is_file()  # verified before exiting


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(out, flags) -> list[str]:
    """``lbw_jax.train.run`` as two processes of one run (gloo on localhost); their outputs."""
    port = _free_port()
    procs = [run_cli(["--config.output_dir=" + str(out), *flags,
                      f"--config.distributed.coordinator=127.0.0.1:{port}",
                      "--config.distributed.num_processes=2",
                      f"--config.distributed.process_id={i}"], devices=1, wait=False)
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return outs


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    flags = [*SMALL_FLAGS, "--config.train.steps=4", "--config.train.eval_every=4"]
    single = run_cli(["--config.output_dir=" + str(tmp_path / "one"), *flags], devices=2)
    assert single.returncode == 0, single.stdout + single.stderr
    outs = _run_two_processes(tmp_path / "two", flags)
    one, two = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert one.keys() == two.keys() == {1, 2, 3, 4}
    np.testing.assert_allclose([two[k] for k in sorted(two)], [one[k] for k in sorted(one)],
                               rtol=1e-5)


@pytest.mark.slow
def test_a_rollback_across_two_processes_matches_one_process(tmp_path):
    """An injected x1e20 step on batches 5-6 makes the loss non-finite; both processes
    roll back to step 4 together, skip the batches and finish like one process does."""
    flags = [*SMALL_FLAGS, "--config.train.steps=12", "--config.train.log_every=1",
             "--config.fault.lr_factor=1e20", "--config.fault.first_batch=5",
             "--config.fault.last_batch=7"]
    single = run_cli(["--config.output_dir=" + str(tmp_path / "one"), *flags], devices=2)
    assert single.returncode == 0, single.stdout + single.stderr
    outs = _run_two_processes(tmp_path / "two", flags)
    assert "rolled back to step 4" in outs[0]
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two")]
    assert [s["rollbacks"] for s in summaries] == [1, 1]
    assert summaries[0]["events"][0]["to_step"] == summaries[1]["events"][0]["to_step"] == 4
    one, two = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert one.keys() == two.keys() == set(range(1, 13))
    np.testing.assert_allclose([two[k] for k in sorted(two)], [one[k] for k in sorted(one)],
                               rtol=1e-5)


@pytest.mark.slow
def test_unknown_config_key_is_one_line_and_exit_code_2(tmp_path):
    result = run_cli(["--config.output_dir=" + str(tmp_path), "--config.optimizer.lrr=1e-3"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        'error: command line: --config.optimizer.lrr: no such config field '
        '(did you mean "lr" instead of "lrr"?)')


@pytest.mark.slow
def test_corpus_too_small_for_one_batch(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"doc{i}.txt").write_text("a short document. " * 20)
    cfg = small_config(tmp_path / "run")
    cfg.data.source, cfg.data.path, cfg.data.vocab_size = "files", str(corpus), 300
    with pytest.raises(ValueError, match="fewer than one batch of 8"):
        train(cfg)


@pytest.mark.slow
def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    # batch 16: two micro-batches of 8 still split over the 8 test devices
    one = train(small_config(tmp_path / "one", steps=3, eval_every=3, checkpoint_every=3,
                             batch_size=16))
    two = train(small_config(tmp_path / "two", steps=3, eval_every=3, checkpoint_every=3,
                             batch_size=16, grad_accum=2))
    a, b = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-5)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-5)


@pytest.mark.slow
def test_pretrained_lora_run_on_a_datasets_corpus(tmp_path):
    """The real configs' path, offline: a pretrained HF checkpoint and its tokenizer,
    LoRA, and a corpus read by `datasets` (the `text` builder on local files)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from data_fixtures import austen_sample

    text = austen_sample()
    (tmp_path / "train.txt").write_text(text[: len(text) * 9 // 10])
    (tmp_path / "valid.txt").write_text(text[len(text) * 9 // 10:])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    model_dir = tmp_path / "model"
    fast.save_pretrained(model_dir)
    hf_config = transformers.Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=1, max_position_embeddings=64)
    transformers.Qwen2ForCausalLM(hf_config).save_pretrained(model_dir)

    cfg = small_config(tmp_path / "run", steps=4)
    cfg.model.pretrained = str(model_dir)
    cfg.lora.enabled, cfg.lora.rank = True, 4
    cfg.data.source, cfg.data.tokenizer, cfg.data.hf_name, cfg.data.hf_config = "hf", "pretrained", "text", ""
    cfg.data.hf_data_files = {"train": str(tmp_path / "train.txt"),
                              "validation": str(tmp_path / "valid.txt")}
    summary = train(cfg)
    assert math.isfinite(summary["val_ppl"])
    losses = _train_losses(tmp_path / "run")
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses.values())
    # The frozen base is reloaded from its source, so the checkpoint holds only adapters.
    saved = ocp.StandardCheckpointer().restore(tmp_path / "run" / "checkpoints" / "4" / "state")
    assert "frozen" not in saved
    assert all("lora" in "/".join(map(str, path)) for path, _ in
               jax.tree_util.tree_flatten_with_path(saved["params"])[0])


@pytest.mark.slow
def test_a_signal_during_an_in_process_run_saves_and_then_reaches_the_callers_handler(tmp_path):
    """In-process (a test runner, a user's script), a SIGTERM ends the run with a
    checkpoint and is then handed to the caller's own handler: a signal meant to stop
    the caller stops it, and a stopped run is never taken for a finished one."""
    import threading

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    cfg = small_config(tmp_path, steps=100000, checkpoint_every=100000, eval_every=100000, log_every=1)

    def send_after_three_steps():
        metrics, deadline = tmp_path / "metrics.jsonl", time.time() + 300
        while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_after_three_steps, daemon=True)
    sender.start()
    try:
        summary = train(cfg)
    finally:
        signal.signal(signal.SIGTERM, previous)
        sender.join(timeout=60)
    assert received == [signal.SIGTERM]                     # handed on, once
    assert summary["signal"] == "SIGTERM" and summary["stopped_at"] >= 3
    assert (tmp_path / "checkpoints" / str(summary["stopped_at"])).is_dir()


def _room_config(out_dir, **overrides):
    cfg = small_config(out_dir, **overrides)
    cfg.optimizer.policy = "governor"
    cfg.optimizer.reflex.stats_every = 10   # small_config's reflex knob, back to its default
    # An LR whose proposals run past their critical step from the first steps (the level acts
    # only there), and a fraction low enough that it cuts.
    cfg.optimizer.lr = 1.0
    cfg.optimizer.governor.update(use_room=True, room_fraction=0.02)
    return cfg


@pytest.mark.slow
def test_the_room_probe_runs_in_lbw_train_and_resumes_bit_identically(tmp_path):
    """``governor(use_room=True)`` through ``lbw_jax.train.run``: the train step hands it the
    loss function, so it probes (a burst from the start) and its level cuts; its state
    checkpoints and a resumed run continues bit for bit."""
    summary = train(_room_config(tmp_path / "full"))
    assert summary["guard_probes"] >= 8 and summary["guard_room_cuts"] > 0
    train(_room_config(tmp_path / "part", steps=4))
    resumed = train(_room_config(tmp_path / "part"))
    assert resumed["resumed_from"] == 4 and resumed["guard_probes"] == summary["guard_probes"]
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "part")
    for a, b in zip(_final_state(tmp_path / "full", 8), _final_state(tmp_path / "part", 8)):
        np.testing.assert_array_equal(a, b)
