"""A resume notices what changed outside the config fields: the data (its fingerprint)
and the LR schedule from the resume step on."""

import json

import pytest

from data_fixtures import austen_sample
from harness_helpers import small_config, unguarded
from lbw_jax.train.errors import ConfigError, InputError
from lbw_jax.train.records.metrics import read_metrics
from lbw_jax.train.run import train


def _files_config(out, corpus, **overrides):
    cfg = small_config(out, **overrides)
    cfg.data.source, cfg.data.path, cfg.data.vocab_size = "files", str(corpus), 300
    return cfg


@pytest.mark.slow
def test_a_corpus_that_changed_is_refused_on_resume_unless_accepted(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text(austen_sample(6))
    (corpus / "b.txt").write_text(austen_sample(3))
    run = tmp_path / "run"
    train(_files_config(run, corpus, steps=4))
    record = json.loads((run / "data.json").read_text())
    assert [f["name"] for f in record["corpus"]["files"]] == ["a.txt", "b.txt"]
    assert record["split"]["val_tokens"] > 0
    with open(corpus / "b.txt", "a") as f:  # the corpus grows between two runs
        f.write("\n\n" + austen_sample(8)[-5000:])
    (corpus / "c.txt").write_text(austen_sample(2))
    with pytest.raises(InputError, match=r"the data of the run in .* changed since it began.*"
                       r"corpus\.files\.b\.txt\.bytes: \d+ -> \d+.*corpus\.files\.c\.txt\.bytes: "
                       r"\(absent\) -> \d+.*accept_changes=True"):
        train(_files_config(run, corpus, steps=8))
    assert json.loads((run / "data.json").read_text()) == record   # left as it was
    accepted = _files_config(run, corpus, steps=8)
    accepted.data.accept_changes = True
    assert train(accepted)["resumed_from"] == 4
    assert "resuming on changed data" in capsys.readouterr().out
    assert json.loads((run / "data.json").read_text()) != record


@pytest.mark.slow
def test_a_deleted_data_record_is_checked_against_the_checkpoints_digest(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(austen_sample(6))
    run = tmp_path / "run"
    train(_files_config(run, corpus, steps=4))
    (run / "data.json").unlink()
    corpus.write_text(austen_sample(7))
    with pytest.raises(InputError, match=r"the data's digest: .*data\.json is missing"):
        train(_files_config(run, corpus, steps=8))


@pytest.mark.slow
def test_raising_train_steps_on_a_cosine_schedule_is_refused_unless_the_horizon_is_kept(tmp_path):
    def cosine(steps, **optimizer):
        cfg = small_config(tmp_path, steps=steps)
        cfg.optimizer.schedule = "cosine"
        cfg.optimizer.update(optimizer)
        return cfg

    train(cosine(8))
    with pytest.raises(ConfigError, match=r"resuming at step 8 would change the LR schedule: .*"
                       r"cosine decay to step 8 .* cosine decay to step 16.* LR at step 8 would be "
                       r"0\.00\d+ instead of 0\.0003.*decay_steps=8"):
        train(cosine(16))
    kept = train(cosine(16, decay_steps=8))
    assert kept["resumed_from"] == 8
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path) if r["kind"] == "train"}
    assert lrs[9] == lrs[16] == pytest.approx(3e-4)   # the decay's floor, 10% of the peak
    assert lrs[1] == pytest.approx(3e-3)
    # A new LR is a new schedule too: refused unless asked for.
    with pytest.raises(ConfigError, match="accept_schedule_change=True"):
        train(cosine(24, decay_steps=8, lr=1e-3))
    assert train(cosine(24, decay_steps=8, lr=1e-3, accept_schedule_change=True))["resumed_from"] == 16


# -- policy knobs: config fields now, the policy_kwargs form before ----------------------

def _in_old_form(config_json: str) -> str:
    """A run's config.json as code before knobs were config fields wrote it: no knob
    subtrees, the active policy's non-default knobs in optimizer.policy_kwargs."""
    from lbw_jax.train import optim

    cfg = json.loads(config_json)
    opt = cfg["optimizer"]
    set_knobs = {k: v for k, v in opt[opt["policy"]].items()
                 if v != optim.knob_defaults(opt["policy"])[k]}
    for name in optim.knob_config():
        del opt[name]
    opt["policy_kwargs"], opt["baseline_kwargs"] = set_knobs, {}
    return json.dumps(cfg, indent=2)


@pytest.mark.slow
def test_a_run_folder_written_with_policy_kwargs_resumes(tmp_path):
    run = tmp_path / "run"
    train(small_config(run, steps=4))            # reflex, with stats_every=2
    config = run / "config.json"
    config.write_text(_in_old_form(config.read_text()))
    assert json.loads(config.read_text())["optimizer"]["policy_kwargs"] == {"stats_every": 2}
    resumed = train(small_config(run, steps=8))
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 8
    changed = small_config(run, steps=12)
    changed.optimizer.reflex.stats_every = 3     # not what the run was trained with
    with pytest.raises(ConfigError, match=r"Changed: optimizer\.reflex\.stats_every: 2 -> 3"):
        train(changed)
    knob_set_now = small_config(run, steps=12)
    knob_set_now.optimizer.reflex.min_scale = 0.5  # the old run used the default, 0.1
    with pytest.raises(ConfigError, match=r"Changed: optimizer\.reflex\.min_scale: 0\.1 -> 0\.5"):
        train(knob_set_now)


def test_the_resume_check_compares_the_active_policys_knobs_only():
    from lbw_jax.train.session.resume_rules import differences

    saved = {"optimizer.policy": "reflex", "optimizer.baseline": "none",
             "optimizer.reflex.stats_every": 2, "optimizer.governor.tolerance": 0.03}
    same = dict(saved)
    assert differences(saved, same) == []
    # Another policy's subtree does nothing in this run (its defaults may change between
    # versions): not compared.
    assert differences(saved, {**saved, "optimizer.governor.tolerance": 0.05}) == []
    assert differences(saved, {**saved, "optimizer.reflex.stats_every": 4}) == [
        "optimizer.reflex.stats_every: 2 -> 4"]
    old = {"optimizer.policy": "reflex", "optimizer.policy_kwargs.stats_every": 2}
    assert differences(old, same) == []
    assert differences(old, {**same, "optimizer.reflex.ema_decay": 0.5}) == [
        "optimizer.reflex.ema_decay: 0.85 -> 0.5"]


def test_a_governor_run_from_before_grad_noise_used_its_min_noise_for_the_gradient_norm():
    from lbw_jax.train.session.resume_rules import differences

    saved = {"optimizer.policy": "governor", "optimizer.baseline": "none",
             "optimizer.governor.min_noise": 0.01}
    now = {**saved, "optimizer.governor.grad_noise": 0.25}
    assert differences(saved, now) == ["optimizer.governor.grad_noise: 0.01 -> 0.25"]
    assert differences(saved, {**now, "optimizer.governor.grad_noise": 0.01}) == []
    # A run under another guard never read the governor's knobs.
    other = {**saved, "optimizer.policy": "reflex"}
    assert differences(other, {**other, "optimizer.governor.grad_noise": 0.25}) == []


def test_a_governor_run_without_the_brake_is_not_resumed_with_it():
    from lbw_jax.train.session.resume_rules import differences

    # Saved with the brake off (the knob recorded as False) or before the knob existed.
    for saved in ({"optimizer.policy": "governor", "optimizer.baseline": "none",
                   "optimizer.governor.use_overshoot": False},
                  {"optimizer.policy": "governor", "optimizer.baseline": "none"}):
        now = {**saved, "optimizer.governor.use_overshoot": True}
        assert differences(saved, now) == ["optimizer.governor.use_overshoot: False -> True"]
        assert differences(saved, {**now, "optimizer.governor.use_overshoot": False}) == []


def test_a_governor_v3_run_is_not_resumed_with_the_room_probe():
    from lbw_jax.train.session.resume_rules import differences

    # v4 turned the room probe on and probes every 25 steps while held (v3.0 runs recorded
    # use_room False and probe_held 5); a run from before the knobs existed had no probe.
    base = {"optimizer.policy": "governor", "optimizer.baseline": "none"}
    now = {**base, "optimizer.governor.use_room": True, "optimizer.governor.probe_held": 25}
    recorded = {**base, "optimizer.governor.use_room": False, "optimizer.governor.probe_held": 5}
    assert differences(recorded, now) == ["optimizer.governor.probe_held: 5 -> 25",
                                          "optimizer.governor.use_room: False -> True"]
    assert differences(recorded, recorded) == []
    assert differences(base, now) == ["optimizer.governor.use_room: False -> True"]
    assert differences(base, {**now, "optimizer.governor.use_room": False}) == []


def test_a_guard_over_a_baseline_resumes_with_the_guard_knobs_it_was_saved_with(tmp_path):
    from lbw_jax.train.normalize import prepare_config
    from lbw_jax.train.session.resume_rules import check_resume, keep_saved_guard_knobs

    def guarded():
        cfg = unguarded(small_config(tmp_path / "run"))
        cfg.optimizer.update(policy="governor", baseline="dadapt_adamw")
        prepare_config(cfg)
        return cfg

    cfg = guarded()
    assert cfg.optimizer.governor.room_cap is False          # what a new run over it takes
    saved = json.loads(cfg.to_json_best_effort())
    assert keep_saved_guard_knobs(json.dumps(saved), cfg) == []   # saved as it runs: nothing kept
    saved["optimizer"]["governor"]["room_cap"] = True         # saved before the record's knob
    with pytest.raises(ConfigError, match=r"optimizer\.governor\.room_cap: True -> False"):
        check_resume(json.dumps(saved), cfg)
    notes = keep_saved_guard_knobs(json.dumps(saved), cfg)
    assert cfg.optimizer.governor.room_cap is True
    assert [n.split(":")[0] for n in notes] == ["optimizer.governor.room_cap=True"]
    assert "kept from the saved run" in notes[0] and "dadapt_adamw" in notes[0]
    check_resume(json.dumps(saved), cfg)                      # nothing left to refuse
    # Another knob the user changed is still refused.
    other = guarded()
    other.optimizer.governor.tolerance = 0.2
    keep_saved_guard_knobs(json.dumps(saved), other)
    with pytest.raises(ConfigError, match=r"optimizer\.governor\.tolerance"):
        check_resume(json.dumps(saved), other)
