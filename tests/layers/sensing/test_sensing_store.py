"""`SensingStore` on a DuckDB file: the STA data model, every query option against answers computed in Python,
access control, writes (deep insert, patch, put, delete), the frames analyses use, alerts across reopening."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layers.sensing import Access, SensingStore
from layers.sensing.errors import (
    EntityNotFoundError,
    QueryError,
    ReadOnlySensingError,
    SensingInputError,
    WriteForbiddenError,
)
from layers.sensing.observations import parse_observation
from layers.sensing.values import iso
from tests.support.sensing import HOURS, T0, THINGS, populate, series, thing_doc, times

PUBLIC = Access()
INTERNAL = Access(levels=("public", "internal"))
WRITER = Access(levels=("public", "internal"), write=True)
BASE = "http://h/sta/v1.1"
BOX = "POLYGON ((113.31 40.095, 113.33 40.095, 113.33 40.105, 113.31 40.105, 113.31 40.095))"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SensingStore]:
    """Three Things (public, internal, confidential) with 48 hourly readings each; read by most tests."""
    path = tmp_path_factory.mktemp("sensing") / "city.duckdb"
    with SensingStore(path) as s:
        populate(s)
        yield s


def ids(doc: dict) -> list[int]:
    return [e["@iot.id"] for e in doc["value"]]


def get(s: SensingStore, path: str, access: Access | None = None, **params: str) -> dict:
    return s.get(path, {f"${k}": v for k, v in params.items()}, access or Access(("public", "internal",
                                                                                   "confidential")), base=BASE)


# ---------------------------------------------------------------------- data model
def test_deep_insert_made_every_related_entity(city: SensingStore) -> None:
    thing = get(city, "Things(1)", expand="Locations,HistoricalLocations($expand=Locations),"
                                          "Datastreams($expand=Sensor,ObservedProperty,Thing)")
    assert thing["name"] == THINGS[0][0] and thing["properties"]["security"] == "public"
    assert thing["Locations"][0]["location"] == {"type": "Point", "coordinates": [113.3, 40.09]}
    assert len(thing["HistoricalLocations"]) == 1
    assert thing["HistoricalLocations"][0]["Locations"][0]["@iot.id"] == thing["Locations"][0]["@iot.id"]
    ds = thing["Datastreams"][0]
    assert ds["Sensor"]["name"] == "sensor 1" and ds["ObservedProperty"]["name"] == "water_level"
    assert ds["Thing"]["@iot.id"] == 1 and ds["unitOfMeasurement"]["symbol"] == "m"
    # computed: the Datastream's time extent and observed area (its one feature of interest, a point)
    assert ds["phenomenonTime"] == f"{T0.isoformat()}Z/{(T0 + timedelta(hours=HOURS - 1)).isoformat()}Z"
    assert ds["observedArea"] == {"type": "Point", "coordinates": [113.3, 40.09]}
    assert thing["Datastreams@iot.navigationLink"] == f"{BASE}/Things(1)/Datastreams"


def test_observations_got_a_feature_of_interest_from_the_location(city: SensingStore) -> None:
    foi = get(city, "Observations(1)/FeatureOfInterest")
    assert foi["feature"] == {"type": "Point", "coordinates": [113.3, 40.09]}
    assert get(city, f"FeaturesOfInterest({foi['@iot.id']})/Observations", count="true", top="1")["@iot.count"] \
        == HOURS


def test_property_value_and_ref(city: SensingStore) -> None:
    assert get(city, "Things(2)/name") == {"name": THINGS[1][0]}
    assert str(city.get("Things(2)/name/$value")) == THINGS[1][0]
    assert get(city, "Things(1)/Datastreams/$ref")["value"] == [{"@iot.selfLink": f"{BASE}/Datastreams(1)"}]


# ---------------------------------------------------------------------- query options vs Python
def test_paging_count_and_next_link(city: SensingStore) -> None:
    page = get(city, "Datastreams(1)/Observations", top="10", skip="5", count="true", orderby="phenomenonTime")
    assert page["@iot.count"] == HOURS and len(page["value"]) == 10
    assert page["value"][0]["phenomenonTime"] == f"{(T0 + timedelta(hours=5)).isoformat()}Z"
    nxt = page["@iot.nextLink"]
    assert "$skip=15" in nxt and "$top=10" in nxt and "$orderby=phenomenonTime" in nxt
    last = get(city, "Datastreams(1)/Observations", top="10", skip=str(HOURS - 3))
    assert len(last["value"]) == 3 and "@iot.nextLink" not in last


def test_filter_by_result_and_time_matches_python(city: SensingStore) -> None:
    values = series(0)
    lo, hi = T0 + timedelta(hours=10), T0 + timedelta(hours=30)
    want = [i + 1 for i, (t, v) in enumerate(zip(times(), values, strict=True)) if v > 3.0 and lo <= t < hi]
    got = get(city, "Observations", filter=f"Datastream/id eq 1 and result gt 3.0 and phenomenonTime ge "
                                           f"{lo.isoformat()}Z and phenomenonTime lt {hi.isoformat()}Z", top="1000")
    assert ids(got) == want and want


def test_orderby_descending_and_select(city: SensingStore) -> None:
    got = get(city, "Datastreams(2)/Observations", orderby="result desc", top="3", select="result,phenomenonTime")
    assert [o["result"] for o in got["value"]] == sorted(series(1), reverse=True)[:3]
    assert set(got["value"][0]) == {"result", "phenomenonTime"}


def test_expand_latest_observation_per_datastream(city: SensingStore) -> None:
    got = get(city, "Datastreams", expand="Observations($orderby=phenomenonTime desc;$top=1;$select=result)")
    assert [d["Observations"] for d in got["value"]] == [[{"result": float(series(i)[-1])}] for i in range(3)]
    assert all("Observations@iot.nextLink" in d for d in got["value"])


@pytest.mark.parametrize("expr, want", [
    (f"geo.intersects(Locations/location, geography'{BOX}')", [2]),
    (f"st_within(Locations/location, geography'{BOX}')", [2]),
    ("geo.distance(Locations/location, geography'POINT (113.3 40.09)') lt 0.001", [1]),
    ("Datastreams/ObservedProperty/name eq 'settlement'", [3]),
    ("startswith(name, '御河')", [1]),
    ("substringof('量站', name)", [2]),
    ("properties/security eq 'internal'", [2]),
    ("properties/river eq '御河' and not (id eq 2)", [1, 3]),
    ("length(name) gt 5", [1, 3]),
    ("Datastreams/Observations/result ge 42", [2]),  # only the rain gauge peaks at 42.5
    ("year(Datastreams/phenomenonTime) eq 2024 and month(Datastreams/phenomenonTime) eq 7", [1, 2, 3]),
    ("name eq 'x'' OR 1=1 --'", []),  # text is a parameter, never SQL
])
def test_filters_on_things(city: SensingStore, expr: str, want: list[int]) -> None:
    assert ids(get(city, "Things", filter=expr)) == want


def test_filter_on_interval_and_geometry_of_observations(city: SensingStore) -> None:
    got = get(city, "Observations", filter=f"geo.intersects(FeatureOfInterest/feature, geography'{BOX}') and "
                                           f"phenomenonTime lt {(T0 + timedelta(hours=2)).isoformat()}Z", top="100")
    assert ids(got) == [HOURS + 1, HOURS + 2]


@pytest.mark.parametrize("params", [
    {"$filter": "nosuch eq 1"}, {"$filter": "name gt 3"}, {"$filter": "result eq geography'POINT (1 1)'"},
    {"$orderby": "Datastream/name"}, {"$select": "nosuch"}, {"$expand": "Nothing"}, {"$filter": "name"},
    {"$filter": "geo.intersects(name, geography'POINT (1 1)')"}, {"$filter": "Datastreams eq 1"},
])
def test_bad_queries_are_query_errors(city: SensingStore, params: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        city.get("Things", params, base=BASE)


def test_bad_paths(city: SensingStore) -> None:
    with pytest.raises(EntityNotFoundError):
        city.get("Things(99)")
    with pytest.raises(EntityNotFoundError):
        city.get("Things(1)/Datastreams(2)")  # exists, but not Thing 1's
    with pytest.raises(EntityNotFoundError):
        city.get("Nothing")
    with pytest.raises(QueryError):
        city.get("Things/Datastreams")


# ---------------------------------------------------------------------- access control
def test_hidden_things_are_absent_everywhere(city: SensingStore) -> None:
    assert ids(get(city, "Things", PUBLIC)) == [1]
    assert ids(get(city, "Things", INTERNAL)) == [1, 2]
    assert ids(get(city, "Datastreams", PUBLIC)) == [1]
    assert get(city, "Observations", PUBLIC, count="true", top="1")["@iot.count"] == HOURS
    assert len(ids(get(city, "Locations", PUBLIC))) == 1
    assert len(ids(get(city, "Sensors", INTERNAL))) == 2
    assert len(ids(get(city, "FeaturesOfInterest", PUBLIC))) == 1
    for path in ("Things(3)", "Datastreams(3)", f"Observations({2 * HOURS + 1})", "Things(3)/Datastreams",
                 "Datastreams(3)/Observations", "Things(2)/Locations"):
        with pytest.raises(EntityNotFoundError):
            get(city, path, PUBLIC)
    # a filter path through hidden entities reveals nothing about them
    assert ids(get(city, "Locations", PUBLIC, filter=f"Things/name eq '{THINGS[2][0]}'")) == []
    assert ids(get(city, "Sensors", INTERNAL, expand="Datastreams")) == [1, 2]
    sensors = get(city, "ObservedProperties", PUBLIC, expand="Datastreams")["value"]
    assert [len(o["Datastreams"]) for o in sensors] == [1]


def test_frames_respect_access(city: SensingStore) -> None:
    assert city.datastreams(access=PUBLIC).datastream_id.tolist() == [1]
    with pytest.raises(EntityNotFoundError):
        city.observations([3], access=INTERNAL)
    assert [r["datastream"] for r in city.latest(INTERNAL)] == [1, 2]
    assert {a.datastream_id for a in city.alerts(PUBLIC)} == {1}


# ---------------------------------------------------------------------- frames for analyses
def test_datastreams_frame(city: SensingStore) -> None:
    gdf = city.datastreams(observed_property="urn:cim:property:rainfall_rate")
    assert gdf.datastream_id.tolist() == [2] and gdf.crs.to_epsg() == 4490
    assert (gdf.geometry.x[0], gdf.geometry.y[0]) == (113.32, 40.10)
    assert gdf.unit[0] == "mm/h" and gdf.thresholds[0]["orange"] == 35
    assert gdf.last_result[0] == series(1)[-1]


def test_observations_frame_window(city: SensingStore) -> None:
    frame = city.observations([2, 1], start=T0 + timedelta(hours=2), end=f"{(T0 + timedelta(hours=5)).isoformat()}Z")
    assert frame.datastream_id.tolist() == [1, 1, 1, 2, 2, 2]
    assert frame.phenomenon_time.tolist() == [pd.Timestamp(T0 + timedelta(hours=h)) for h in (2, 3, 4)] * 2
    np.testing.assert_array_equal(frame.result.to_numpy()[:3], series(0)[2:5])
    assert frame.result.dtype == np.float64


def test_latest_now_and_replayed(city: SensingStore) -> None:
    now = {r["datastream"]: r for r in city.latest()}
    assert now[1]["result"] == series(0)[-1] and now[1]["level"] is None
    at = T0 + timedelta(hours=24, minutes=30)
    past = {r["datastream"]: r for r in city.latest(at=f"{at.isoformat()}Z")}
    assert past[1]["result"] == series(0)[24] and past[1]["level"] == "orange"
    assert past[1]["location"] == [113.3, 40.09]


def test_each_series_opened_and_closed_one_alert(city: SensingStore) -> None:
    alerts = sorted(city.alerts(), key=lambda a: a.datastream_id)
    assert [(a.datastream_id, a.open, a.max_level) for a in alerts] == [(1, False, "orange"), (2, False, "orange"),
                                                                       (3, False, "orange")]
    a = alerts[0]
    first = next(i for i, v in enumerate(series(0)) if v >= 2.0)
    assert a.opened_by.result == series(0)[first] and a.opened_at == T0 + timedelta(hours=first)
    assert a.peak.result == max(series(0))
    doc = a.to_dict()
    assert (doc["status"], doc["maxLevel"], doc["level"], doc["levelZh"]) == ("closed", "orange", "blue", "蓝色")
    assert doc["thing"]["name"] == THINGS[0][0] and doc["unit"] == "m" and doc["location"] == [113.3, 40.09]


# ---------------------------------------------------------------------- writes
def test_write_lifecycle_and_cascade(tmp_path: Path) -> None:
    with SensingStore(tmp_path / "w.duckdb") as s:
        populate(s)
        s.update("Things(1)", {"description": "changed", "properties": {"security": "internal"}})
        assert ids(get(s, "Things", PUBLIC)) == []  # it moved up: the public no longer see it, nor its stream
        assert get(s, "Datastreams(1)", INTERNAL)["name"].startswith(THINGS[0][0])
        s.update("Things(1)", [{"op": "replace", "path": "/name", "value": "renamed"},
                               {"op": "remove", "path": "/properties"}], mode="json-patch")
        assert get(s, "Things(1)", PUBLIC)["name"] == "renamed"  # no properties: public again
        assert s.latest(PUBLIC)[0]["thingName"] == "renamed"  # latest's kept entity part follows entity writes
        with pytest.raises(SensingInputError, match="needs name"):
            s.update("Things(1)", {"description": "only"}, mode="put")
        s.update("Sensors(1)", {"name": "new sensor", "description": "", "encodingType": "text/html",
                                "metadata": "m"}, mode="put")
        s.update("Observations(1)", {"result": 9.5})
        assert get(s, "Observations(1)")["result"] == 9.5
        s.delete("Things(1)")
        assert ids(get(s, "Datastreams")) == [2, 3] and [r["datastream"] for r in s.latest()] == [2, 3]
        assert get(s, "Observations", count="true", top="1")["@iot.count"] == 2 * HOURS
        assert ids(get(s, "Sensors")) == [1, 2, 3]  # Sensors are independent of Things
        s.delete("Sensors(2)")  # takes its Datastream and that Datastream's observations
        assert ids(get(s, "Datastreams")) == [3] and {a.datastream_id for a in s.alerts()} == {3}
        s.delete(f"Observations({3 * HOURS})")  # the latest reading of Datastream 3
        assert s.latest()[0]["result"] == series(2)[-2]


def test_bad_writes_store_nothing(tmp_path: Path) -> None:
    with SensingStore(tmp_path / "b.duckdb") as s:
        populate(s)
        before = {n: get(s, n, count="true", top="0")["@iot.count"] for n in ("Things", "Locations", "Sensors",
                                                                               "Datastreams", "Observations")}
        bad = thing_doc(0)
        bad["Datastreams"][0]["Sensor"] = {"@iot.id": 99}  # fails after the Thing and Location were inserted
        with pytest.raises(EntityNotFoundError, match="Sensor 99"):
            s.create("Things", bad)
        for doc, message in [({"name": "x", "nosuch": 1}, "unknown member"), ({"description": "x"}, "no name"),
                             ({"name": "x", "Locations": [{"name": "l", "location": {"type": "Point",
                                                                                     "coordinates": [500, 40]}}]},
                              "outside longitude"),
                             ({"name": "x", "properties": {"security": "secret"}}, "not one of")]:
            with pytest.raises(SensingInputError, match=message):
                s.create("Things", doc)
        ds = thing_doc(0)["Datastreams"][0]
        with pytest.raises(SensingInputError, match="ascending"):
            s.create("Datastreams", {**ds, "Thing": {"@iot.id": 1}, "Sensor": {"@iot.id": 1},
                                     "ObservedProperty": {"@iot.id": 1},
                                     "properties": {"thresholds": {"blue": 5, "red": 1}}})
        rows = [parse_observation({"result": 1.0}, datastream_id=1), parse_observation({"result": "high"},
                                                                                       datastream_id=1)]
        with pytest.raises(SensingInputError, match="not a number"):
            s.add_observations(rows)  # one bad row: neither is stored
        with pytest.raises(EntityNotFoundError):
            s.add_observations([parse_observation({"result": 1.0}, datastream_id=77)])
        with pytest.raises(SensingInputError):
            s.create_observations([{"Datastream": {"@iot.id": 1}, "components": ["result"],
                                    "dataArray": [[1.0], [None]]}])
        after = {n: get(s, n, count="true", top="0")["@iot.count"] for n in before}
        assert after == before


def test_write_access(tmp_path: Path) -> None:
    with SensingStore(tmp_path / "a.duckdb") as s:
        populate(s)
        with pytest.raises(WriteForbiddenError):
            s.create("Things", {"name": "x"}, INTERNAL)  # may read, may not write
        with pytest.raises(WriteForbiddenError, match="clearance"):
            s.create("Things", {"name": "x", "properties": {"security": "confidential"}}, WRITER)
        with pytest.raises(EntityNotFoundError):
            s.update("Things(3)", {"name": "y"}, WRITER)  # hidden: as if it did not exist
        with pytest.raises(EntityNotFoundError):
            s.add_observations([parse_observation({"result": 1.0}, datastream_id=3)], WRITER)
        created = s.create("Things(2)/Datastreams", {**thing_doc(1)["Datastreams"][0], "Sensor": {"@iot.id": 2},
                                                     "ObservedProperty": {"@iot.id": 2}}, WRITER)
        assert get(s, f"Datastreams({created.id})/Thing", INTERNAL)["@iot.id"] == 2


def test_alert_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "r.duckdb"
    with SensingStore(path) as s:
        s.create("Things", thing_doc(0))
        s.add_observations([parse_observation({"phenomenonTime": "2024-07-20T00:00:00Z", "result": 4.5},
                                              datastream_id=1)])
        assert [a.level for a in s.alerts(status="open")] == ["orange"]
    with SensingStore(path) as s:
        seen = []
        s.on_alert(seen.append)
        s.add_observations([parse_observation({"phenomenonTime": "2024-07-20T01:00:00Z", "result": 0.5},
                                              datastream_id=1)])
        s.dispatcher.join()
        assert [(e.kind, e.alert.id) for e in seen] == [("closed", 1)]
        assert s.alerts(status="open") == [] and s.alerts()[0].closed_by.result == 0.5


def test_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.duckdb"
    with SensingStore(path) as s:
        populate(s)
    with SensingStore(path, read_only=True) as s:
        assert len(ids(get(s, "Things"))) == 3
        with pytest.raises(ReadOnlySensingError, match="--ingest"):
            s.create("Things", {"name": "x"})
        with pytest.raises(ReadOnlySensingError):
            s.add_observations([parse_observation({"result": 1.0}, datastream_id=1)])


def test_data_array_column_path_equals_the_row_path(tmp_path: Path) -> None:
    """CreateObservations entries in the common shape are converted column-wise; the rest go row by row. Both give
    the same stored values, and the returned links follow the request's row order."""
    from layers.sensing.entities import OM_TRUTH
    from layers.sensing.observations import data_array_table, parse_data_array, rows_table

    body = [{"Datastream": {"@iot.id": 1}, "components": ["phenomenonTime", "result", "resultTime"],
             "dataArray": [["2024-07-20T08:00:00+08:00", 1, "2024-07-20T00:00:05Z"],
                           ["2024-07-20T00:01:00.25Z", 2.5, None]]},
            {"Datastream": {"@iot.id": 4}, "components": ["result", "phenomenonTime"],
             "dataArray": [[True, "2024-07-20T00:02:00Z"]]},  # booleans take the row path
            {"Datastream": {"@iot.id": 1}, "components": ["phenomenonTime", "result"],
             "dataArray": [["2024-07-20T00:03:00Z", 3.75]]}]
    fast = data_array_table(body)
    slow = rows_table([r for g in parse_data_array(body) for r in g])
    assert fast.to_pylist() == slow.to_pylist()
    assert fast["result_json"].to_pylist()[:2] == ["1", None]  # an integer stays an integer
    with SensingStore(tmp_path / "d.duckdb") as s:
        populate(s)
        s.create("Datastreams", {**thing_doc(0)["Datastreams"][0], "name": "door", "observationType": OM_TRUTH,
                                 "properties": {}, "Thing": {"@iot.id": 1}, "Sensor": {"@iot.id": 1},
                                 "ObservedProperty": {"@iot.id": 1}})
        links = s.create_observations(body, base="B")
        got = [get(s, link[2:]) for link in links]
        assert [o["result"] for o in got] == [1, 2.5, True, 3.75]
        assert [o["phenomenonTime"] for o in got] == ["2024-07-20T00:00:00Z", "2024-07-20T00:01:00.250Z",
                                                      "2024-07-20T00:02:00Z", "2024-07-20T00:03:00Z"]
        assert got[0]["resultTime"] == "2024-07-20T00:00:05Z" and got[1]["resultTime"] is None


def test_latest_follows_each_committed_batch_and_hands_out_read_only_entries(tmp_path: Path) -> None:
    """`latest()` keeps its answer between calls: each commit must refresh the Datastreams it wrote (a newer reading
    replaces, an older one does not), leave the others as they were, and never change an answer already given."""
    import copy

    later = T0 + timedelta(hours=HOURS)
    with SensingStore(tmp_path / "l.duckdb") as s:
        populate(s)
        before = {r["datastream"]: r for r in s.latest()}
        assert before[1]["result"] == series(0)[-1] and before[1]["level"] is None
        s.add_observations([parse_observation({"phenomenonTime": iso(later), "result": 4.2}, datastream_id=1),
                            parse_observation({"phenomenonTime": iso(T0 - timedelta(hours=1)), "result": 9.0},
                                              datastream_id=2)])
        after = {r["datastream"]: r for r in s.latest()}
        assert (after[1]["result"], after[1]["level"], after[1]["phenomenonTime"]) == (4.2, "orange", iso(later))
        assert after[2] == before[2] and after[3] is before[3]  # an older reading is not the latest
        assert before[1]["result"] == series(0)[-1]  # the answer given before the batch is unchanged
        s.add_observations([parse_observation({"phenomenonTime": iso(later), "result": 60.0}, datastream_id=2)])
        assert {r["datastream"]: r["level"] for r in s.latest(INTERNAL)} == {1: "orange", 2: "red"}
        with pytest.raises(TypeError, match="read-only"):
            after[1]["result"] = 0.0
        with pytest.raises(TypeError, match="read-only"):
            after[1].update(result=0.0)
        mine = copy.deepcopy(after[1])
        mine["result"] = 0.0
        assert dict(after[1])["result"] == 4.2 and s.latest()[0]["result"] == 4.2


def test_latest_geojson_is_latest_as_features_kept_until_the_next_commit(tmp_path: Path) -> None:
    import json

    def expected(s: SensingStore, access: Access, prop: str | None = None) -> dict:
        return {"type": "FeatureCollection", "at": None, "features": [
            {"type": "Feature", "id": r["datastream"], "geometry": {"type": "Point", "coordinates": r["location"]},
             "properties": {k: v for k, v in r.items() if k != "location"}}
            for r in s.latest(access, observed_property=prop)]}

    with SensingStore(tmp_path / "g.duckdb") as s:
        populate(s)
        body = s.latest_geojson(INTERNAL)
        assert json.loads(body) == expected(s, INTERNAL) and [f["id"] for f in json.loads(body)["features"]] == [1, 2]
        assert s.latest_geojson(INTERNAL) is body  # kept
        assert [f["id"] for f in json.loads(s.latest_geojson(PUBLIC))["features"]] == [1]
        assert json.loads(s.latest_geojson(INTERNAL, observed_property="rainfall_rate")) == expected(
            s, INTERNAL, "rainfall_rate")
        s.add_observations([parse_observation({"phenomenonTime": iso(T0 + timedelta(hours=HOURS)), "result": 4.2},
                                              datastream_id=1)])
        after = s.latest_geojson(INTERNAL)
        assert after is not body and json.loads(after) == expected(s, INTERNAL)
        assert json.loads(after)["features"][0]["properties"]["result"] == 4.2
        s.update("Things(1)", {"name": "renamed"})  # an entity write
        assert json.loads(s.latest_geojson(PUBLIC))["features"][0]["properties"]["thingName"] == "renamed"


@pytest.mark.timeout(180)
def test_a_batch_commits_after_the_same_session_created_many_things_and_read_them(tmp_path: Path) -> None:
    """The COMMIT that never returned (bench_sensing: 10,000 Things, then 100,000 readings in the same session): the
    writer thread's `fetchone()` of the next observation id left its own cursor's read transaction open, and the
    automatic checkpoint of its batch's COMMIT (due once the WAL passed 16 MB) waited for that transaction's table
    locks forever. A 1 KB checkpoint threshold makes every commit checkpoint, so the pattern shows at a small size.
    Before the fix this test hung already at the first `create` (the `fetchone()`s of opening the store, on its
    connection), and with only the writer's lookup restored it hangs at the batch; reads through navigation (this
    thread's cursor) must not block it either."""
    from layers.sensing.observations import ObsRow, rows_table

    with SensingStore(tmp_path / "c.duckdb") as s:
        s.connection.execute("SET checkpoint_threshold = '1KB'")
        s.create("Sensors", {"name": "gauge", "description": "", "encodingType": "text/html", "metadata": ""})
        s.create("ObservedProperties", {"name": "water_level", "definition": "urn:wl", "description": ""})
        doc = thing_doc(0)
        ds = {**doc["Datastreams"][0], "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}}
        for part in range(2):
            s.create_many("Things", [{**doc, "name": f"站{part}-{i}", "Datastreams": [ds]} for i in range(100)])
        assert ids(get(s, "Things(7)/Datastreams")) == [7] and get(s, "Datastreams(7)/Thing")["@iot.id"] == 7
        rows = [ObsRow(d, T0 + timedelta(minutes=k), None, None, 1.0 + 0.01 * k, None, None, None, None, None, None)
                for k in range(10) for d in range(1, 201)]
        done = s.submit(rows_table(rows))
        assert len(done.result(timeout=60)) == 2000  # before the fix: TimeoutError, the writer stuck in COMMIT
        assert get(s, "Observations", count="true", top="1")["@iot.count"] == 2000
        assert {r["result"] for r in s.latest()} == {1.09}


@pytest.mark.parametrize("t, want", [
    (datetime(2024, 7, 20, 8), "2024-07-20T08:00:00Z"),
    (datetime(2024, 7, 20, 8, 0, 1, 250_000), "2024-07-20T08:00:01.250Z"),
    (datetime(2024, 7, 20, 8, 0, 1, 120_400), "2024-07-20T08:00:01.1204Z"),
    (datetime(2024, 7, 20, 16, tzinfo=timezone(timedelta(hours=8))), "2024-07-20T08:00:00Z"),
    (None, None),
])
def test_iso_times_are_utc_with_z(t: datetime | None, want: str | None) -> None:
    assert iso(t) == want
