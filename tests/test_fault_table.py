"""The failure-scenario table (lbw_jax.train.stress.report.fault_table) and its standings
(lbw_jax.train.stress.metrics.summary.fault_standings) on small hand-made results, worked out by hand."""

import json
import math

import pytest

from lbw_jax.train.stress.report import fault_table
from lbw_jax.train.stress.metrics import summary


def test_fault_standings_tie_inside_the_larger_clean_spread():
    """Costs 0.5, 0.7, 1.2 and a failed arm, clean spreads 0.1, 0.3, 0.1: 0.7 is 0.2 above
    the best, inside its own spread 0.3 (a tie); 1.2 is 0.7 above, outside 0.1 (worse)."""
    st = summary.fault_standings({"a": 0.5, "b": 0.7, "c": 1.2, "d": math.nan},
                                 {"a": 0.1, "b": 0.3, "c": 0.1})
    assert {k: v["standing"] for k, v in st.items()} == {"a": "best", "b": "tie", "c": "worse", "d": "failed"}
    assert st["b"]["diff"] == pytest.approx(0.2) and st["b"]["spread"] == 0.3
    assert st["c"]["diff"] == pytest.approx(0.7) and st["c"]["spread"] == 0.1
    assert all(v["best"] == "a" for v in st.values())
    # The best arm's spread counts too: b's 0.2 is a tie when a is the noisy one.
    assert summary.fault_standings({"a": 0.5, "b": 0.7}, {"a": 0.25, "b": 0.0})["b"]["standing"] == "tie"
    assert summary.fault_standings({"a": 0.5, "b": 0.7}, {})["b"]["standing"] == "worse"
    assert summary.fault_standings({"a": math.nan}, {})["a"]["standing"] == "failed"
    # clean_spread reads both grids: LR keys as numbers (live) or as text (results.json).
    assert summary.clean_spread({"a": {0.001: {"std": 0.4}}}, "a", 1e-3) == 0.4
    assert summary.clean_spread({"a": {"0.001": {"std": None}}}, "a", 1e-3) == 0.0
    assert summary.clean_spread({"a": {"0.01": {"std": 0.4}}}, "a", 1e-3) == 0.0


def _results():
    row = lambda std: {"mean": 20.0, "std": std, "seeds": 3}
    outcome = lambda cost, survived=1: {"summary": {
        "survived": survived, "seeds": 1, "before": 30.0, "after": None if cost is None else 20.0 + cost,
        "ppl_loss": cost, "recovered": survived, "steps_to_recover": 20.0 if survived else None}}
    return json.loads(json.dumps({
        "config": {"stress": {"scenario_lr": 1e-3}},
        "labels": {"adamw": "AdamW", "clip": "AdamW + clip", "governor": "lbw_guard(governor)"},
        "grid": {"adamw": {"0.001": row(0.1)}, "clip": {"0.001": row(0.1)}, "governor": {"0.001": row(0.3)}},
        "scenarios": {"adamw": {"burst": outcome(None, 0), "nan_grad": outcome(None, 0)},
                      "clip": {"burst": outcome(0.5), "nan_grad": outcome(0.2)},
                      "governor": {"burst": outcome(0.7), "nan_grad": outcome(0.0)}}}))


def test_fault_table_rows_by_hand():
    """burst: clip +0.50 is the best, the governor's +0.70 is 0.20 above it, inside the
    governor's clean spread 0.30: a tie. nan_grad: the governor's 0.00 is the best, clip's
    +0.20 is inside 0.30 too. AdamW failed both."""
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in fault_table.rows(_results())}
    assert rows[("lbw_guard(governor)", "burst")] == (
        "| lbw_guard(governor) | burst | 1/1 | 30.00 → 20.70 | 0.70 | 0.30 | tie (+0.20 vs AdamW + clip) | 1/1 | 20 |")
    assert "| 0.10 | best |" in rows[("AdamW + clip", "burst")]
    assert "| tie (+0.20 vs lbw_guard(governor)) |" in rows[("AdamW + clip", "nan_grad")]
    assert rows[("AdamW", "burst")] == "| AdamW | burst | 0/1 | 30.00 → — | — | 0.10 | — | 0/1 | — |"
    assert list(rows)[:2] == [("AdamW", "burst"), ("AdamW", "nan_grad")]   # the results' order


@pytest.mark.slow
def test_fault_table_cli_prints_the_table_or_one_line(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results()))
    assert fault_table.main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == fault_table.HEADER and len(out) == 2 + 6
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**_results(), "scenarios": {}}))
    for bad in (empty, tmp_path / "missing.json"):
        assert fault_table.main([str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
