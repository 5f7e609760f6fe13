"""`cim sensors seed | simulate | import` through typer's CliRunner and `main` (exit codes), on a store holding
the sample city's `sensors` layer and a few buildings; and the simulator's readings against their definition."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pytest
import shapely
from typer.testing import CliRunner

from cli import app, main
from layers import LayerStore
from layers.sensing import SensingStore
from layers.sensing.sample import seed_sample_city
from layers.sensing.simulate import Scenario, SimSensor, clock_from, readings, seconds, simulate
from tests.support.mosquitto import mosquitto_broker
from tests.tiles.server_support import running_server
from tiles.server import ServerSettings, create_app
from tiles.server.auth import AccessStore, access_path

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


def cim(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["sensors", *args], catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample city's river stations (the committed `sensors` layer) and ten buildings near them."""
    root = tmp_path_factory.mktemp("sensors_cli")
    stations = gpd.read_file(REPO / "data" / "sample_city" / "sensors.gpkg")
    c = stations.to_crs(4490).geometry.union_all().centroid
    boxes = [shapely.box(c.x + i * 1e-3, c.y, c.x + i * 1e-3 + 2e-4, c.y + 2e-4) for i in range(10)]
    buildings = gpd.GeoDataFrame({"code": [f"B{i}" for i in range(10)], "name": [f"楼{i}" for i in range(10)],
                                  "height": [10.0 + 7 * i for i in range(10)]}, geometry=boxes, crs="EPSG:4490")
    buildings.to_file(root / "b.gpkg")
    path = root / "city.duckdb"
    with LayerStore(path) as s:
        s.import_file(REPO / "data" / "sample_city" / "sensors.gpkg", "sensors", "iot_sensing", security="internal")
        s.import_file(root / "b.gpkg", "buildings", "spatiotemporal_base", security="internal")
    return path


@pytest.fixture(scope="module")
def seeded(store: Path) -> Path:
    """The same store with the sample sensors seeded (whichever test of this module runs first on a worker)."""
    with SensingStore(store) as s:
        seed_sample_city(s)
    return store


def test_seed_then_simulate_into_the_store(store: Path) -> None:
    code, out = cim("seed", "--store", str(store), "--json")
    assert code == 0
    doc = json.loads(out)
    n_stations = len(gpd.read_file(REPO / "data" / "sample_city" / "sensors.gpkg"))
    assert doc["kinds"] == {"water_level": n_stations, "rainfall_rate": 6, "settlement": 6}
    assert json.loads(cim("seed", "--store", str(store), "--json")[1]) == doc  # seeded once
    code, out = cim("simulate", "--store", str(store), "--rate", "40", "--duration", "1.5", "--backfill", "1",
                    "--json")
    assert code == 0 and json.loads(out)["observations"] >= 20
    with SensingStore(store, read_only=True) as s:
        latest = s.latest()
        assert len(latest) == doc["sensors"] and all(r["result"] is not None for r in latest)
        stations = s.datastreams("water_level")
        assert stations.security.unique().tolist() == ["internal"]  # the layer's level
        assert all(abs(t["red"] - t["orange"] - 0.3) < 1e-9 for t in stations.thresholds)
        # 1 h of history every 5 minutes, then the live readings
        assert len(s.observations([int(stations.datastream_id[0])])) >= 12


def test_import_history_file_and_bad_files(seeded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    store = seeded
    with SensingStore(store, read_only=True) as s:
        ds = int(s.datastreams("rainfall_rate").datastream_id[0])
    good = tmp_path / "rain.csv"
    good.write_text("datastream_id,phenomenon_time,result\n" + "".join(
        f"{ds},2024-07-20T{h:02d}:00:00+08:00,{h * 1.5}\n" for h in range(10)))
    code, out = cim("import", str(good), "--store", str(store), "--json")
    assert code == 0 and json.loads(out)["stored"] == 10 and json.loads(out)["first_time"] == "2024-07-19T16:00:00Z"
    bad = tmp_path / "bad.csv"
    bad.write_text(f"datastream_id,phenomenon_time,result\n{ds},yesterday,1\n")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("datastream_id,phenomenon_time,result\n99999,2024-07-20T00:00:00Z,1\n")
    for path, message in ((bad, "'yesterday' is not an ISO 8601 time"), (unknown, "no Datastream 99999")):
        with pytest.raises(SystemExit) as exc:
            main(["sensors", "import", str(path), "--store", str(store)])
        assert exc.value.code == 2 and message in " ".join(capsys.readouterr().err.split())
    with SensingStore(store, read_only=True) as s:
        assert len(s.observations([ds], end="2024-08-01T00:00:00Z")) == 10  # the bad files stored nothing


def test_simulated_readings_follow_their_definition() -> None:
    sc = Scenario(period_minutes=10, storm_minutes=4, nash_k_minutes=1)
    gauge = SimSensor(1, "rainfall_rate", 113.30, 40.09, index=100)
    station = SimSensor(2, "water_level", 113.30, 40.09, index=0, base=1036.0, peak=1038.0, downstream_km=1.5)
    t = seconds([datetime(2026, 12, 1) + timedelta(seconds=10 * k) for k in range(6 * 60)])  # one hour
    r = readings(sc, [gauge, station], t)
    assert np.array_equal(r, readings(sc, [gauge, station], t))  # deterministic
    rain, level = r
    cycle, since = sc.cycle(t - (113.30 - 113.0) * 85.0 / sc.storm_speed_kmh * 3600)
    assert (rain[since > sc.storm_minutes * 60] == 0).all() and rain.max() > 10  # it rains only during storms
    assert level.min() >= 1036.0 - 0.01 and level.max() <= 1038.0 + 0.5  # base .. about peak x strength
    # the wave peaks after the rain: the station's level lags the gauge
    assert np.argmax(level[:60]) > np.argmax(rain[:60])


def test_simulate_through_a_server_by_http_and_by_mqtt(seeded: Path, tmp_path: Path) -> None:
    """`cim sensors simulate --server` posts CreateObservations; with `--mqtt` it publishes to a real mosquitto the
    server subscribes to; every reading sent is stored, on the sample sensors the server lists."""
    with AccessStore(access_path(seeded)) as acc:
        key = acc.create("internal,sensing:write").key
    with mosquitto_broker(tmp_path / "broker") as broker:
        app = create_app(ServerSettings(store=seeded, mqtt=broker.address, mqtt_client_id="cim-sim-test",
                                        log_requests=False))
        with running_server(app) as base, httpx.Client(base_url=base, headers={"X-API-Key": key}) as c:
            def stored() -> int:
                return c.get("/sta/v1.1/Observations", params={"$count": "true", "$top": "0"}).json()["@iot.count"]

            before = stored()
            code, out = cim("simulate", "--server", base, "--api-key", key, "--rate", "30", "--duration", "1.2",
                            "--json")
            http = json.loads(out)
            assert code == 0 and http["to"] == base and http["observations"] == 36  # ceil(1.2 s x 30 / s)
            assert stored() == before + http["observations"]  # the response came after the commit
            code, out = cim("simulate", "--server", base, "--api-key", key, "--mqtt", broker.address, "--rate", "30",
                            "--duration", "1.2", "--json")
            mq = json.loads(out)
            assert code == 0 and mq["to"] == broker.address and mq["observations"] == 36
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and stored() < before + http["observations"] + mq["observations"]:
                time.sleep(0.1)
            status = c.get("/sensing/status").json()["mqtt"]
            assert status["received"] == status["stored"] == mq["observations"] and status["rejected"] == 0
            assert stored() == before + http["observations"] + mq["observations"]
            # the readings went to the sample sensors, with their simulated values
            latest = {r["properties"]["observedProperty"] for r in c.get("/sensing/latest").json()["features"]
                      if r["properties"]["result"] is not None}
            assert {"water_level", "rainfall_rate", "settlement"} <= latest


def test_a_starved_run_sends_every_reading_due_in_its_duration() -> None:
    """A publisher slower than the rate (a loaded server, a starved process) gets the readings that fell due
    meanwhile in its next call, and those due when the time is up in one last call: 0.5 s at 30 / s is 15 readings
    whatever the speed, the sensors in turn; a stop ends the run without that last call."""
    sensors = [SimSensor(k, "rainfall_rate", 113.30, 40.09, index=100 + k) for k in (1, 2, 3)]
    batches: list[list[tuple[int, datetime, float]]] = []

    def slow(batch: list[tuple[int, datetime, float]]) -> None:
        batches.append(batch)
        time.sleep(0.35)

    assert simulate(slow, sensors, rate=30, duration=0.5) == 15
    assert 2 <= len(batches) <= 3 and len(batches[0]) == 1  # the first reading at once, the rest caught up
    assert [ds for b in batches for ds, _, _ in b] == [1, 2, 3] * 5
    calls: list[int] = []
    stopped = simulate(lambda b: calls.append(len(b)), sensors, rate=30, duration=5.0, stop=lambda: len(calls) >= 2,
                       tick=0.05)
    assert stopped == sum(calls) < 150 and len(calls) == 2


def test_a_pinned_clock_replays_its_moment_at_wall_speed() -> None:
    """`simulate(..., clock=clock_from(start))` (what `cim demo --sensor-time` does): readings stamped from `start`
    on, each the scenario's value at its stamp, whenever the simulation runs."""
    start = datetime(2026, 9, 9, 19, 29, 30)
    clock = clock_from(start)
    assert timedelta(0) <= clock() - start < timedelta(seconds=1)
    sc = Scenario(period_minutes=10, storm_minutes=4, nash_k_minutes=1)
    sensors = [SimSensor(1, "rainfall_rate", 113.30, 40.09, index=100),
               SimSensor(2, "water_level", 113.30, 40.09, index=0, base=1036.0, peak=1038.0, downstream_km=1.5)]
    rows: list[tuple[int, datetime, float]] = []
    sent = simulate(rows.extend, sensors, sc, rate=20, duration=0.5, clock=clock, tick=0.05)
    assert sent == len(rows) == 10
    stamps = [t for _, t, _ in rows]
    assert stamps == sorted(stamps) and start <= stamps[0] and stamps[-1] - start < timedelta(seconds=5)
    by_id = {s.datastream_id: s for s in sensors}
    assert all(v == readings(sc, [by_id[ds]], seconds([t]))[0, 0] for ds, t, v in rows)
