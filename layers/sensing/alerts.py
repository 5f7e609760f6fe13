"""Thresholds in the four Chinese warning levels and the alerts they open and close.

Chinese early-warning practice (e.g. GB/T 27962-2011 for meteorological warnings, the flood-control and
geological-hazard warning rules) grades a warning in four colours, from least to most severe: blue (蓝色, IV级),
yellow (黄色, III级), orange (橙色, II级), red (红色, I级). A Datastream carries its thresholds in its `properties`:

    {"thresholds": {"blue": 2.8, "yellow": 3.0, "orange": 3.2, "red": 3.5, "direction": "above",
                    "hysteresis": 0.05}}

Any subset of the levels may be given; `direction` `above` (a river level, a rainfall rate: higher is worse; the
default) wants them ascending, `below` (a reservoir drawn down, a pressure falling) descending. A reading is at the
most severe level whose threshold it reaches (>= for above, <= for below).

Alerts, one at a time per Datastream, evaluated in phenomenon-time order as observations are stored:
- a reading that reaches a level while no alert is open **opens** one (with the reading that opened it);
- while open, a reading at another level **escalates** or **de-escalates** it; falling back needs the reading to
  clear the current level's threshold by `hysteresis` (so a value dithering on a threshold does not flap);
- a reading below every threshold (by `hysteresis`) **closes** it, with the reading that closed it.
A reading older than the last one evaluated for its Datastream (a late or back-filled observation) is stored but
does not move alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from layers.sensing.errors import SensingInputError
from layers.sensing.values import iso

LEVELS: tuple[str, ...] = ("blue", "yellow", "orange", "red")
LEVEL_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}
LEVEL_GRADE = {"blue": "IV", "yellow": "III", "orange": "II", "red": "I"}
Level = Literal["blue", "yellow", "orange", "red"]
AlertEventKind = Literal["opened", "escalated", "deescalated", "closed"]


class Thresholds(BaseModel):
    """Warning thresholds of one Datastream (in its unit of measurement)."""

    model_config = ConfigDict(extra="forbid")

    blue: float | None = None
    yellow: float | None = None
    orange: float | None = None
    red: float | None = None
    direction: Literal["above", "below"] = "above"
    hysteresis: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        given = [(lv, getattr(self, lv)) for lv in LEVELS if getattr(self, lv) is not None]
        if not given:
            raise ValueError("give at least one of blue, yellow, orange, red")
        values = [v for _, v in given]
        ok = values == sorted(values) if self.direction == "above" else values == sorted(values, reverse=True)
        if not ok or len(set(values)) != len(values):
            want = "ascending" if self.direction == "above" else "descending"
            raise ValueError(f"thresholds must be strictly {want} from blue to red for direction "
                             f"{self.direction!r}: {dict(given)}")
        return self

    @cached_property
    def _levels(self) -> list[tuple[str, float]]:
        return [(lv, getattr(self, lv)) for lv in LEVELS if getattr(self, lv) is not None]

    def levels(self) -> list[tuple[str, float]]:
        """(level, threshold) from least to most severe, only the levels given."""
        return list(self._levels)

    def level(self, value: float) -> str | None:
        """The most severe level `value` reaches, or None."""
        out = None
        above = self.direction == "above"
        for lv, thr in self._levels:
            if (value >= thr) if above else (value <= thr):
                out = lv
            else:
                break
        return out

    def holds(self, value: float, level: str) -> bool:
        """True while `value` keeps an alert at `level` (its threshold, less the hysteresis)."""
        thr = getattr(self, level)
        return value >= thr - self.hysteresis if self.direction == "above" else value <= thr + self.hysteresis

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def parse_thresholds(properties: Any, what: str = "properties.thresholds") -> Thresholds | None:
    """The thresholds in a Datastream's properties, or None.

    Raises:
        SensingInputError: `thresholds` is present but malformed (the message says how).
    """
    if not isinstance(properties, dict) or properties.get("thresholds") is None:
        return None
    raw = properties["thresholds"]
    if not isinstance(raw, dict):
        raise SensingInputError(f"{what} must be an object such as "
                                f'{{"blue": 2.8, "yellow": 3.0, "orange": 3.2, "red": 3.5}}')
    try:
        return Thresholds.model_validate(raw)
    except ValidationError as exc:
        parts = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'thresholds'}: {e['msg']}" for e in exc.errors())
        raise SensingInputError(f"{what}: {parts}") from None


class Reading(BaseModel):
    """An observation as an alert records it."""

    observation_id: int | None = None
    result: float
    phenomenon_time: datetime

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result, "phenomenonTime": iso(self.phenomenon_time)}
        if self.observation_id is not None:
            out["observationId"] = self.observation_id
        return out


class Alert(BaseModel):
    """An alert of one Datastream: open (closed_at None) or closed."""

    id: int
    datastream_id: int
    level: str
    max_level: str
    direction: str
    threshold: float
    opened_at: datetime
    opened_by: Reading
    changed_at: datetime
    peak: Reading | None = None
    closed_at: datetime | None = None
    closed_by: Reading | None = None
    datastream: str | None = None
    thing_id: int | None = None
    thing: str | None = None
    observed_property: str | None = None
    unit: str | None = None
    security: str = "public"
    location: list[float] | None = None

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `/alerts` (camelCase, as the STA documents around it)."""
        return {
            "id": self.id, "status": "open" if self.open else "closed", "level": self.level,
            "levelZh": LEVEL_ZH[self.level], "grade": LEVEL_GRADE[self.level], "maxLevel": self.max_level,
            "direction": self.direction, "threshold": self.threshold,
            "openedAt": iso(self.opened_at), "openedBy": self.opened_by.to_dict(), "changedAt": iso(self.changed_at),
            "peak": self.peak.to_dict() if self.peak else None,
            "closedAt": iso(self.closed_at), "closedBy": self.closed_by.to_dict() if self.closed_by else None,
            "datastream": {"@iot.id": self.datastream_id, "name": self.datastream},
            "thing": {"@iot.id": self.thing_id, "name": self.thing}, "observedProperty": self.observed_property,
            "unit": self.unit, "location": self.location,
        }


@dataclass
class AlertEvent:
    """A change of an alert, handed to listeners and the live stream after its batch is committed."""

    kind: AlertEventKind
    alert: Alert

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **self.alert.to_dict()}


@dataclass
class _State:
    alert: Alert | None
    last_time: datetime | None


class AlertEngine:
    """The alert state of every Datastream, advanced by batches of readings.

    `evaluate` computes the changes of a batch without touching the state; `apply` makes them the state once the
    batch is committed (so a failed commit changes nothing).
    """

    def __init__(self, next_id: int = 1) -> None:
        self.states: dict[int, _State] = {}
        self.next_id = next_id

    def load(self, open_alerts: list[Alert], last_times: dict[int, datetime]) -> None:
        """Start from the store: the open alerts and the last reading time of every Datastream."""
        self.states = {ds: _State(None, t) for ds, t in last_times.items()}
        for a in open_alerts:
            st = self.states.setdefault(a.datastream_id, _State(None, None))
            st.alert = a

    def evaluate(self, readings: list[tuple[int, int, datetime, float | None]],
                 thresholds: dict[int, Thresholds]) -> tuple[list[AlertEvent], dict[int, _State]]:
        """The alert events of a batch of readings (datastream, observation id, phenomenon time, numeric result).

        Returns:
            The events in order, and the new states of the Datastreams the batch touched (for `apply`).
        """
        events: list[AlertEvent] = []
        changed: dict[int, _State] = {}
        own: set[int] = set()  # Datastreams whose alert is this batch's copy (copied on first change, not before)
        next_id = self.next_id
        for ds, oid, t, value in sorted(readings, key=lambda r: (r[0], r[2], r[1])):
            st = changed.get(ds)
            if st is None:
                old = self.states.get(ds)
                st = _State(old.alert if old else None, old.last_time if old else None)
            if st.last_time is not None and t < st.last_time:
                continue
            st.last_time = t
            changed[ds] = st
            thr = thresholds.get(ds)
            if value is None:
                continue
            a = st.alert
            if a is not None and ds not in own and (thr is None or _moves(a, thr, value)):
                a = st.alert = a.model_copy()
                own.add(ds)
            if thr is None:
                if a is not None:  # thresholds were removed: the alert closes
                    reading = Reading(observation_id=oid, result=value, phenomenon_time=t)
                    a.closed_at, a.closed_by, a.changed_at = t, reading, t
                    events.append(AlertEvent("closed", a.model_copy()))
                    st.alert = None
                continue
            level = thr.level(value)
            if a is None:
                if level is not None:
                    reading = Reading(observation_id=oid, result=value, phenomenon_time=t)
                    a = Alert(id=next_id, datastream_id=ds, level=level, max_level=level, direction=thr.direction,
                              threshold=getattr(thr, level), opened_at=t, opened_by=reading, changed_at=t,
                              peak=reading)
                    next_id += 1
                    st.alert = a
                    own.add(ds)
                    events.append(AlertEvent("opened", a.model_copy()))
                continue
            if _worse(value, a.peak.result if a.peak else value, thr.direction):
                a.peak = Reading(observation_id=oid, result=value, phenomenon_time=t)
            current = LEVELS.index(a.level)
            new = LEVELS.index(level) if level is not None else -1
            if new > current:
                a.level, a.threshold, a.changed_at = LEVELS[new], getattr(thr, LEVELS[new]), t
                if new > LEVELS.index(a.max_level):
                    a.max_level = LEVELS[new]
                events.append(AlertEvent("escalated", a.model_copy()))
            elif new < current and not (getattr(thr, a.level) is not None and thr.holds(value, a.level)):
                # the most severe lower level the reading still holds (within the hysteresis), if any
                target = None
                for lv, _ in thr.levels():
                    if LEVELS.index(lv) < current and thr.holds(value, lv):
                        target = lv
                if target is None:
                    a.closed_at, a.changed_at = t, t
                    a.closed_by = Reading(observation_id=oid, result=value, phenomenon_time=t)
                    events.append(AlertEvent("closed", a.model_copy()))
                    st.alert = None
                else:
                    a.level, a.threshold, a.changed_at = target, getattr(thr, target), t
                    events.append(AlertEvent("deescalated", a.model_copy()))
        return events, changed

    def apply(self, changed: dict[int, _State], events: list[AlertEvent]) -> None:
        """Make a committed batch's changes the state."""
        self.states.update(changed)
        for e in events:
            self.next_id = max(self.next_id, e.alert.id + 1)

    def forget(self, datastream_ids: list[int]) -> None:
        """Drop the state of deleted Datastreams."""
        for ds in datastream_ids:
            self.states.pop(ds, None)


def _moves(a: Alert, thr: Thresholds, value: float) -> bool:
    """True when a reading changes an open alert (its peak or its level): only then is the alert copied."""
    if a.peak is None or _worse(value, a.peak.result, thr.direction):
        return True
    level = thr.level(value)
    current = LEVELS.index(a.level)
    new = LEVELS.index(level) if level is not None else -1
    return new != current


def _worse(value: float, than: float, direction: str) -> bool:
    return value > than if direction == "above" else value < than


__all__ = ["LEVELS", "LEVEL_GRADE", "LEVEL_ZH", "Alert", "AlertEngine", "AlertEvent", "Reading", "Thresholds",
           "parse_thresholds"]
