"""The divergence watchdog's rules, step by step, and the LR multiplier after a rollback."""

import math

import pytest

from lbw_jax.train.session.position import Position
from lbw_jax.train.session.watchdog import Watchdog


def _feed(dog, losses, start=1, **extra):
    for i, loss in enumerate(losses):
        event = dog.observe(start + i, {"loss": loss, "param_norm": 1.0, **extra})
        if event is not None:
            return event
    return None


def test_non_finite_loss_or_parameter_norm_fires_at_once():
    event = Watchdog().observe(7, {"loss": math.nan, "param_norm": 1.0})
    assert (event.step, event.onset, event.reason) == (7, 7, "non-finite")
    event = Watchdog().observe(3, {"loss": 2.0, "param_norm": math.inf})
    assert event.reason == "non-finite" and "parameter norm" in event.detail


def test_loss_above_factor_for_patience_steps_fires_with_its_onset():
    dog = Watchdog(loss_factor=1.5, patience=3, level_decay=0.5)
    assert _feed(dog, [4.0, 4.0]) is None
    assert dog.level == 4.0
    # 6.0 is exactly 1.5 x 4: not above. Then three steps above it: fires on the third.
    assert _feed(dog, [6.0], start=3) is None
    assert dog.level == 5.0  # 0.5 * 4 + 0.5 * 6
    event = _feed(dog, [7.6, 8.0, 9.0], start=4)
    assert (event.step, event.onset, event.reason) == (6, 4, "loss")
    assert dog.level == 5.0  # frozen while above the bar


def test_a_short_excursion_resets_the_streak():
    dog = Watchdog(loss_factor=1.5, patience=3, level_decay=0.0)
    assert _feed(dog, [4.0, 7.0, 7.0, 4.0, 7.0, 7.0, 4.0]) is None
    assert dog.over == 0 and dog.level == 4.0


def test_more_than_max_skips_consecutive_skips_fires():
    dog = Watchdog(max_skips=2)
    for step, total in enumerate([0, 1, 2], start=1):  # steps 2 and 3 are skipped
        assert dog.observe(step, {"loss": 3.0, "param_norm": 1.0, "skipped": total}) is None
    assert dog.observe(4, {"loss": 3.0, "param_norm": 1.0, "skipped": 2}) is None  # applied
    for step, total in [(5, 3), (6, 4)]:
        assert dog.observe(step, {"loss": 3.0, "param_norm": 1.0, "skipped": total}) is None
    event = dog.observe(7, {"loss": 3.0, "param_norm": 1.0, "skipped": 5})
    assert (event.step, event.onset, event.reason) == (7, 5, "skips")


def test_a_loss_excursion_after_a_skip_streak_dates_from_the_first_skip():
    """A guard that skips the first steps after damage (their loss is an outlier), then
    accepts the new level: the loss rule fires after the streak, and its onset is the
    streak's first step, so a rollback does not stop at a checkpoint saved inside it."""
    dog = Watchdog(loss_factor=1.5, patience=3, level_decay=0.0, max_skips=20)
    assert _feed(dog, [4.0, 4.0]) is None
    for step, total in [(3, 1), (4, 2), (5, 3)]:         # skipped: loss of damaged params
        assert dog.observe(step, {"loss": 80.0, "param_norm": 1.0, "skipped": total}) is None
    event = _feed(dog, [80.0, 80.0, 80.0], start=6, skipped=3)
    assert (event.step, event.onset, event.reason) == (8, 3, "loss")
    # A calm step between them makes the excursion a stretch of its own.
    dog = Watchdog(loss_factor=1.5, patience=3, level_decay=0.0, max_skips=20)
    assert _feed(dog, [4.0, 4.0]) is None
    assert dog.observe(3, {"loss": 80.0, "param_norm": 1.0, "skipped": 1}) is None
    assert _feed(dog, [4.0], start=4, skipped=1) is None
    event = _feed(dog, [80.0, 80.0, 80.0], start=5, skipped=1)
    assert (event.step, event.onset) == (7, 5)


def test_state_round_trips_so_a_resume_sees_the_same_watchdog():
    a = Watchdog(patience=4)
    _feed(a, [4.0, 4.0, 7.0])
    b = Watchdog(patience=4)
    b.load_state(a.state())
    assert b.state() == a.state()
    assert _feed(a, [7.0, 7.0, 7.0], start=4) == _feed(b, [7.0, 7.0, 7.0], start=4)


@pytest.mark.parametrize("step,expected", [(40, 0.5), (65, 0.625), (140, 1.0), (500, 1.0)])
def test_lr_multiplier_recovers_linearly_after_a_rollback(step, expected):
    pos = Position(step=step, lr_factor=0.5, rollback_step=40)
    assert pos.lr_factor_at(100) == pytest.approx(expected)
    assert pos.lr_factor_at(0) == 0.5  # no recovery: stays lowered
