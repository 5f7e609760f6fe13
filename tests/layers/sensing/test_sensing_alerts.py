"""Thresholds in the four warning levels and the alert state machine, against hand-worked sequences."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from layers.sensing.alerts import AlertEngine, Thresholds, parse_thresholds
from layers.sensing.errors import SensingInputError

T0 = datetime(2024, 7, 20)


def run(values: list[float], thr: Thresholds, engine: AlertEngine | None = None, start: int = 0
        ) -> tuple[AlertEngine, list[tuple[str, str, str]]]:
    engine = engine or AlertEngine()
    readings = [(7, start + i + 1, T0 + timedelta(minutes=start + i), v) for i, v in enumerate(values)]
    events, changed = engine.evaluate(readings, {7: thr})
    engine.apply(changed, events)
    return engine, [(e.kind, e.alert.level, e.alert.max_level) for e in events]


def test_levels_above_and_below() -> None:
    above = Thresholds(blue=1, yellow=2, orange=3, red=4)
    assert [above.level(v) for v in (0.9, 1, 2.5, 3, 4.2)] == [None, "blue", "yellow", "orange", "red"]
    below = Thresholds(blue=50, red=10, direction="below")  # a reservoir drawn down
    assert [below.level(v) for v in (60, 50, 30, 10, 5)] == [None, "blue", "blue", "red", "red"]


def test_open_escalate_deescalate_close_with_hysteresis() -> None:
    thr = Thresholds(blue=1, yellow=2, orange=3, red=4, hysteresis=0.1)
    _, events = run([0.5, 1.0, 2.5, 3.95, 4.1, 3.95, 3.5, 2.95, 0.95, 0.85, 2.0], thr)
    assert events == [
        ("opened", "blue", "blue"), ("escalated", "yellow", "yellow"), ("escalated", "orange", "orange"),
        ("escalated", "red", "red"),
        ("deescalated", "orange", "red"),  # 3.95 stayed red (within 0.1 of 4), 3.5 cleared it
        ("deescalated", "blue", "red"),  # 2.95 held orange (within 0.1 of 3), 0.95 held blue
        ("closed", "blue", "red"),  # 0.85 cleared blue by more than the hysteresis
        ("opened", "yellow", "yellow"),  # a new alert
    ]


def test_late_readings_do_not_move_alerts() -> None:
    thr = Thresholds(blue=1)
    engine, events = run([0.5, 2.0], thr)
    assert events == [("opened", "blue", "blue")]
    # a back-filled reading older than the last one evaluated is ignored
    _, late = run([0.1], thr, engine, start=-10)
    assert late == []
    _, closing = run([0.1], thr, engine, start=5)
    assert closing == [("closed", "blue", "blue")]


def test_evaluate_does_not_change_state_until_apply() -> None:
    thr = Thresholds(blue=1)
    engine = AlertEngine()
    engine.evaluate([(7, 1, T0, 5.0)], {7: thr})  # a batch whose commit failed
    assert engine.states == {}
    _, events = run([5.0], thr, engine)
    assert events[0][0] == "opened" and engine.next_id == 2


@pytest.mark.parametrize("raw, message", [
    ({"blue": 3, "yellow": 2}, "ascending"),
    ({"blue": 1, "red": 5, "direction": "below"}, "descending"),
    ({}, "at least one"),
    ({"blue": 1, "purple": 2}, "purple"),
    ({"blue": "high"}, "blue"),
    ({"blue": 1, "hysteresis": -1}, "hysteresis"),
])
def test_bad_thresholds_name_the_problem(raw: dict, message: str) -> None:
    with pytest.raises(SensingInputError, match=message):
        parse_thresholds({"thresholds": raw})


def test_no_thresholds() -> None:
    assert parse_thresholds({"other": 1}) is None and parse_thresholds(None) is None
