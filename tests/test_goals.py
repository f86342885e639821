"""The goal check of train.stress.goals on small hand-made results."""

from train.stress.goals import ablation, check


def _results(gov_high, gov_best, eff, gov_cost):
    grid = lambda values: {str(lr): {"mean": v, "diverged": 0, "seeds": 3} for lr, v in zip((1e-3, 1e-2), values)}
    scen = lambda cost: {"nan_grad": {"summary": {"ppl_loss": cost, "survived": 3, "seeds": 3}}}
    arms = {"adamw": (10.0, 30.0), "reflex": (11.0, 14.0), "reflex_pro": (11.5, 13.0), "clip": (10.0, 29.0),
            "zclip": (10.0, 28.0), "spike_skip": (10.0, 30.0), "governor": (gov_best, gov_high),
            "effective_lr_governor": (10.5, eff)}
    return {"grid": {a: grid(v) for a, v in arms.items()}, "labels": {a: a for a in arms},
            "scenarios": {"adamw": scen(None), "reflex": scen(0.1), "governor": scen(gov_cost)}}


def test_goals_met_and_missed_are_told_apart():
    good = check(_results(gov_high=12.0, gov_best=10.05, eff=15.0, gov_cost=0.0), "governor", 3e-3)
    assert [ok for _, ok, _ in good] == [True, True, True, True, True]
    bad = check(_results(gov_high=13.5, gov_best=10.2, eff=13.0, gov_cost=0.2), "governor", 3e-3)
    verdict = {goal: ok for goal, ok, _ in bad}
    assert verdict["LR 0.01: below every rival"] is False          # reflex_pro has 13.0
    assert verdict["AdamW's best LR 0.001: within 1%"] is False     # +2%
    assert verdict["LR 0.01: below AdamW at its own mean effective LR"] is False
    assert verdict["nan_grad: survived, smallest cost"] is False    # reflex lost only 0.1
    assert "(-" not in dict((g, f) for g, _, f in bad)["LR 0.01: below every rival"]


def test_ablation_rows_show_the_change_against_the_full_policy():
    r = _results(gov_high=12.0, gov_best=10.05, eff=15.0, gov_cost=0.0)
    r["grid"]["governor_no_skip"] = dict(r["grid"]["governor"], **{"0.01": {"mean": 12.5, "diverged": 0, "seeds": 3}})
    r["labels"]["governor_no_skip"] = "no skip"
    r["scenarios"]["governor_no_skip"] = {"nan_grad": {"summary": {"ppl_loss": 0.3, "survived": 3, "seeds": 3}}}
    lines = ablation(r, r, "governor")
    row = next(line for line in lines if line.startswith("| no skip"))
    assert "12.50 (+0.50)" in row and "+0.30" in row
