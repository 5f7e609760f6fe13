"""Deterministic, realistic readings for a city's sensors: storms passing over rain gauges, the flood wave they send
down the river past the water-level stations, buildings settling. Used by `cim sensors simulate` and `cim demo` so
that the twin moves, and by tests and benchmarks as a source of plausible data.

Every reading is a pure function of (scenario, sensor, time): the same scenario gives the same values on any
machine, live or back-filled.

- **Storms** repeat every `period_minutes`; each lasts `storm_minutes` and has the Chicago design-storm shape
  (Keifer & Chu 1957, the hyetograph of Chinese drainage design, GB 50014-2021) with a peak at `peak_ratio` of its
  duration, from the storm-intensity formula i = A (1 + C lg P) / (t + b)^n (mm/min; here A = 4, C = 0.8,
  b = 10 min, n = 0.7, P = 5 years: a generic curve whose peak is 75 mm/h, not a city's official one). Each storm
  has its own strength (0.2 to 1.2 times the design storm, drawn from the seed), so some storms cross the red
  threshold and some stay blue. The storm moves west to east at `storm_speed_kmh`; each gauge sees it with its own factor (0.8-1.2).
- **River levels** rise by the storm's strength times a Nash unit hydrograph (3 linear reservoirs of `nash_k_minutes`)
  of the storm's rainfall, delayed by each station's travel time (its distance downstream at `wave_speed_kmh`), on top
  of the station's base level; the rise of the design storm takes a station to 0.2 m above its warning level.
- **Settlement** drifts at each point's rate (mm/day) from when its monitoring began (`extra["since"]`), with a
  small daily (thermal) cycle and noise.

Noise is a deterministic hash of (seed, sensor, time), a few percent of the signal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from layers.sensing.values import now_utc

Kind = Literal["rainfall_rate", "water_level", "settlement"]
EPOCH = datetime(2024, 7, 20)  # storms are counted from here (UTC); any fixed instant would do


class Scenario(BaseModel):
    """The parameters of a simulated city (a value object: the same scenario gives the same readings)."""

    seed: int = 7
    period_minutes: float = Field(30.0, gt=0)
    storm_minutes: float = Field(12.0, gt=0)
    peak_ratio: float = Field(0.4, gt=0, lt=1)
    storm_speed_kmh: float = Field(30.0, gt=0)
    wave_speed_kmh: float = Field(6.0, gt=0)
    nash_k_minutes: float = Field(2.0, gt=0)
    return_period_years: float = Field(5.0, gt=0)

    def cycle(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The storm cycle of each time (s since EPOCH) and the seconds since that cycle began."""
        period = self.period_minutes * 60
        k = np.floor(t / period)
        return k, t - k * period

    def strength(self, k: np.ndarray) -> np.ndarray:
        """Each storm's strength relative to the design storm (0.2..1.2), from the seed."""
        return 0.2 + 1.0 * _hash(k, self.seed, 1)

    def hyetograph(self, s: np.ndarray) -> np.ndarray:
        """Rain intensity (mm/h) of the design storm `s` seconds after it began (0 outside it)."""
        a, c, b, n = 4.0, 0.8, 10.0, 0.7
        q = a * (1 + c * math.log10(self.return_period_years))
        dur = self.storm_minutes
        tm = np.asarray(s, dtype=float) / 60.0
        r = self.peak_ratio
        before = np.clip((r * dur - tm) / r, 0, None)
        after = np.clip((tm - r * dur) / (1 - r), 0, None)
        x = np.where(tm < r * dur, before, after)
        i = q * ((1 - n) * x + b) / (x + b) ** (1 + n)  # mm/min, the Chicago shape
        return np.where((tm >= 0) & (tm <= dur), i * 60.0, 0.0)

    def nash(self, s: np.ndarray) -> np.ndarray:
        """The river's response (peak 1) to the design storm, `s` seconds after the storm began."""
        return _nash_response(self.storm_minutes, self.peak_ratio, self.nash_k_minutes, self.return_period_years,
                              np.asarray(s, dtype=float))


@dataclass(frozen=True)
class SimSensor:
    """One simulated sensor: its Datastream, kind, where it is, and its own parameters."""

    datastream_id: int
    kind: Kind
    lon: float
    lat: float
    index: int = 0
    base: float = 0.0  # water level: the base level (m); settlement: the settlement when monitoring began (mm)
    peak: float = 0.0  # water level: the level the design storm brings (m); settlement: the rate (mm/day)
    downstream_km: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _hash(x: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A deterministic uniform number in [0, 1) per value (splitmix64 of the value, seed and salt)."""
    v = (np.asarray(x, dtype=np.float64) * 1_000_003.0).astype(np.int64).astype(np.uint64)
    z = v + np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


_NASH_CACHE: dict[tuple[float, ...], tuple[np.ndarray, float]] = {}


def _nash_response(storm_minutes: float, peak_ratio: float, k_minutes: float, period: float, s: np.ndarray
                   ) -> np.ndarray:
    key = (storm_minutes, peak_ratio, k_minutes, period)
    if key not in _NASH_CACHE:
        dt = 10.0
        span = storm_minutes * 60 + 30 * k_minutes * 60
        grid = np.arange(0, span, dt)
        rain = Scenario(storm_minutes=storm_minutes, peak_ratio=peak_ratio, return_period_years=period).hyetograph(grid)
        k = k_minutes * 60
        uh = (grid / k) ** 2 * np.exp(-grid / k) / (2 * k)  # Nash: n = 3 reservoirs, Gamma(3, k)
        out = np.convolve(rain, uh)[: len(grid)] * dt
        _NASH_CACHE[key] = (out / out.max(), dt)
    curve, dt = _NASH_CACHE[key]
    idx = np.clip((s / dt).astype(np.int64), 0, len(curve) - 1)
    return np.where((s >= 0) & (s < len(curve) * dt), curve[idx], 0.0)


def seconds(t: datetime | np.ndarray | Sequence[datetime]) -> np.ndarray:
    """Seconds since EPOCH of naive-UTC datetimes (or datetime64)."""
    arr = np.asarray(t, dtype="datetime64[us]")
    return (arr - np.datetime64(EPOCH, "us")).astype(np.float64) / 1e6


def readings(scenario: Scenario, sensors: Sequence[SimSensor], t: np.ndarray) -> np.ndarray:
    """The reading of every sensor at every time.

    Args:
        scenario: the scenario.
        sensors: n sensors.
        t: (m,) float64 seconds since EPOCH.

    Returns:
        (n, m) float64: mm/h for rain gauges, m for water levels, mm for settlement, rounded to the gauge's resolution.
    """
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros((len(sensors), t.size))
    for i, s in enumerate(sensors):
        noise = _hash(t + 0.37 * s.index, scenario.seed, 2 + s.index) - 0.5
        if s.kind == "rainfall_rate":
            lag = (s.lon - 113.0) * 85.0 / scenario.storm_speed_kmh * 3600  # 85 km per degree of longitude here
            k, since = scenario.cycle(t - lag)
            factor = 0.8 + 0.4 * _hash(np.array([s.index]), scenario.seed, 3)[0]
            rain = scenario.strength(k) * factor * scenario.hyetograph(since)
            out[i] = np.round(np.clip(rain * (1 + 0.06 * noise), 0, None), 1)
        elif s.kind == "water_level":
            lag = s.downstream_km / scenario.wave_speed_kmh * 3600
            total = np.zeros_like(t)
            for back in (0, 1, 2):  # a wave can outlast its storm's cycle
                k, since = scenario.cycle(t - lag)
                since = since + back * scenario.period_minutes * 60
                total += scenario.strength(k - back) * scenario.nash(since)
            out[i] = np.round(s.base + (s.peak - s.base) * total + 0.01 * noise, 2)
        else:
            days = np.clip(t - float(s.extra.get("since", 0.0)), 0, None) / 86400.0
            out[i] = np.round(s.base + s.peak * days + 0.05 * np.sin(2 * math.pi * days) + 0.02 * noise, 2)
    return out


Publisher = Callable[[list[tuple[int, datetime, float]]], None]


def simulate(publish: Publisher, sensors: Sequence[SimSensor], scenario: Scenario | None = None, *,
             rate: float = 10.0, duration: float | None = None, clock: Callable[[], datetime] | None = None,
             stop: Callable[[], bool] | None = None, progress: Callable[[int], None] | None = None,
             tick: float | None = None) -> int:
    """Publish readings in real time: `rate` observations per second in total, the sensors in turn, each stamped
    with the time it is sent and valued by the scenario at that time (the library function behind
    `cim sensors simulate`). A run of `duration` seconds publishes the ceil(duration x rate) readings due in it
    (one at its start, one every 1/rate s): readings that fall due while a publication is slow go with the next one,
    and those still due when the time is up go in one last publication, so a starved run sends as many.

    Args:
        publish: sends a list of (datastream id, phenomenon time, result); see `mqtt_publisher`, `http_publisher`,
            `store_publisher`.
        sensors: the sensors.
        scenario: the scenario (default `Scenario()`).
        rate: observations per second (all sensors together).
        duration: seconds to run (None: until `stop()` is true or interrupted).
        clock: the time source (naive UTC; default the wall clock, `now_utc`); `clock_from(start)` replays the
            scenario from a chosen moment.
        stop: checked every tick.
        progress: called with the number of observations sent so far.
        tick: seconds between publications (default 1/rate, within 0.05..1): the readings due meanwhile go
            together.

    Returns:
        The number of observations published.
    """
    if rate <= 0 or not sensors:
        return 0
    scenario = scenario or Scenario()
    clock = clock or now_utc
    tick = tick or max(0.05, min(1.0, 1.0 / rate))
    # readings due at k / rate for k = 0, 1, ... while k / rate < duration (the tolerance keeps 1.2 s x 30 at 36)
    total = None if duration is None else max(1, math.ceil(duration * rate - 1e-9))
    start, sent, turn = time.monotonic(), 0, 0

    def publish_due(due: int) -> None:
        nonlocal sent, turn
        now = clock()
        batch = []
        t = seconds([now])
        for _ in range(due):
            s = sensors[turn % len(sensors)]
            turn += 1
            batch.append((s.datastream_id, now, float(readings(scenario, [s], t)[0, 0])))
        publish(batch)
        sent += len(batch)
        if progress is not None:
            progress(sent)

    while duration is None or time.monotonic() - start < duration:
        if stop is not None and stop():
            return sent
        due = int((time.monotonic() - start) * rate) + 1 - sent
        if total is not None:
            due = min(due, total - sent)
        if due > 0:
            publish_due(due)
        time.sleep(tick)
    if total is not None and sent < total and not (stop is not None and stop()):
        publish_due(total - sent)
    return sent


def clock_from(start: datetime) -> Callable[[], datetime]:
    """A clock (naive UTC) that reads `start` now and then runs at wall speed: readings, storms and the alerts they
    open happen as they did at `start`, whenever the simulation runs.

    Args:
        start: naive UTC.
    """
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def backfill_rows(sensors: Sequence[SimSensor], scenario: Scenario, end: datetime, hours: float = 24.0,
                  step_seconds: float = 300.0) -> list[tuple[int, datetime, float]]:
    """History for the hours before `end`: every sensor every `step_seconds`."""
    n = int(hours * 3600 / step_seconds)
    times = [end - timedelta(seconds=step_seconds * (n - j)) for j in range(n)]
    values = readings(scenario, sensors, seconds(times))
    return [(s.datastream_id, t, float(values[i, j])) for i, s in enumerate(sensors) for j, t in enumerate(times)]


def mqtt_publisher(host: str, port: int, *, client_id: str = "cim-simulate", qos: int = 1) -> tuple[Publisher, Any]:
    """A publisher to an MQTT broker (`v1.1/Datastreams(n)/Observations`); returns it and the paho client (call
    `loop_stop()` and `disconnect()` when done)."""
    import json

    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()

    def publish(rows: list[tuple[int, datetime, float]]) -> None:
        infos = [client.publish(f"v1.1/Datastreams({d})/Observations",
                                json.dumps({"phenomenonTime": t.isoformat() + "Z", "result": v}), qos=qos)
                 for d, t, v in rows]
        for info in infos:
            info.wait_for_publish(30)

    return publish, client


def http_publisher(server: str, api_key: str | None, *, timeout: float = 30.0) -> tuple[Publisher, Any]:
    """A publisher to a `cim serve --ingest` server (`CreateObservations`); returns it and the httpx client."""
    import httpx

    from layers.sensing.errors import SensingError

    client = httpx.Client(base_url=server.rstrip("/"), headers={"X-API-Key": api_key} if api_key else {},
                          timeout=timeout)

    def publish(rows: list[tuple[int, datetime, float]]) -> None:
        groups: dict[int, list[list[Any]]] = {}
        for d, t, v in rows:
            groups.setdefault(d, []).append([t.isoformat() + "Z", v])
        body = [{"Datastream": {"@iot.id": d}, "components": ["phenomenonTime", "result"], "dataArray": a}
                for d, a in groups.items()]
        r = client.post("/sta/v1.1/CreateObservations", json=body)
        if r.status_code != 201:
            raise SensingError(f"{server} refused the simulated readings ({r.status_code}): {r.text[:300]}")

    return publish, client


def store_publisher(sensing: Any) -> Publisher:
    """A publisher into an open, writable `SensingStore` of this process."""
    from layers.sensing.observations import ObsRow

    def publish(rows: list[tuple[int, datetime, float]]) -> None:
        sensing.add_observations([ObsRow(d, t, None, None, v, None, None, None, None, None, None) for d, t, v in rows])

    return publish


__all__ = ["EPOCH", "Scenario", "SimSensor", "backfill_rows", "clock_from", "http_publisher", "mqtt_publisher",
           "readings", "seconds", "simulate", "store_publisher"]
