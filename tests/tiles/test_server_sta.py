"""`/sta/v1.1/`, `/alerts`, `/sensing/*` on a real server: the FROST-Server Python client as the reference client,
access control on every route and on the live stream, malformed requests answered 4xx with nothing stored, MQTT
ingest from a real mosquitto broker, and a history import beside a running server (who writes the store)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from layers.errors import StoreLockedError
from layers.sensing import SensingStore
from tests.support.mosquitto import mosquitto_broker
from tests.support.sensing import HOURS, THINGS, populate, series
from tests.tiles.server_support import running_server, server_process
from tiles.errors import ServerConfigError
from tiles.server import ServerSettings, create_app
from tiles.server.auth import AccessStore, access_path

STA = "/sta/v1.1"
OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"


@dataclass
class Sta:
    base: str
    store: Path
    keys: dict[str, str]

    def client(self, key: str | None = None) -> httpx.Client:
        raw = self.keys.get(key, key) if key else None
        return httpx.Client(base_url=self.base, headers={"X-API-Key": raw} if raw else {}, timeout=30)


@pytest.fixture(scope="module")
def sta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sta]:
    """An ingesting server over the three-Thing sensing city, with keys of every kind."""
    root = tmp_path_factory.mktemp("sta")
    store = root / "city.duckdb"
    with SensingStore(store) as s:
        populate(s)
    with AccessStore(access_path(store)) as acc:
        keys = {"read": acc.create("internal").key, "write": acc.create("internal,sensing:write").key,
                "writeonly": acc.create("sensing:write").key, "all": acc.create("confidential,sensing:write").key}
        revoked = acc.create("confidential,sensing:write")
        acc.revoke(revoked.id)
        keys["revoked"] = revoked.key
    app = create_app(ServerSettings(store=store, ingest=True, log_requests=False))
    with running_server(app) as base:
        yield Sta(base, store, keys)


def count(c: httpx.Client, path: str) -> int:
    return c.get(f"{STA}/{path}", params={"$count": "true", "$top": "0"}).json()["@iot.count"]


# ---------------------------------------------------------------------- the FROST client
def test_frost_client_creates_reads_pages_patches_and_deletes(sta: Sta) -> None:
    import frost_sta_client as fsc
    import geojson

    service = fsc.SensorThingsService(sta.base + STA, auth_handler=fsc.AuthHandler("cim", sta.keys["write"]))
    loc = fsc.Location(name="下穿通道", description="underpass", encoding_type="application/geo+json",
                       location=geojson.Point((113.305, 40.095)))
    thing = fsc.Thing(name="下穿通道积水监测", description="ponding under the rail bridge",
                      properties={"security": "internal"}, locations=[loc])
    service.create(thing)
    assert isinstance(thing.id, int)
    ds = fsc.Datastream(name="积水深度", description="ponding depth", observation_type=OM,
                        unit_of_measurement=fsc.UnitOfMeasurement(name="centimetre", symbol="cm",
                                                                  definition="http://qudt.org/vocab/unit/CentiM"),
                        properties={"thresholds": {"blue": 10, "yellow": 20, "orange": 30, "red": 40}},
                        thing=thing, sensor=fsc.Sensor(name="超声波液位计", description="ultrasonic",
                                                       encoding_type="text/html", metadata="https://example.org"),
                        observed_property=fsc.ObservedProperty(name="ponding_depth", definition="urn:ponding",
                                                               description="depth of water on the road"))
    service.create(ds)
    for k in range(5):
        service.create(fsc.Observation(result=5.0 * k, phenomenon_time=f"2024-07-20T0{k}:00:00Z", datastream=ds))
    dav = fsc.DataArrayValue()
    dav.datastream = ds
    dav.components = {fsc.DataArrayValue.Property.PHENOMENON_TIME, fsc.DataArrayValue.Property.RESULT}
    for k in range(5, 9):
        dav.add_observation(fsc.Observation(result=50.0 - 5 * k, phenomenon_time=f"2024-07-20T0{k}:00:00Z",
                                            datastream=ds))
    created = service.observations().create(fsc.DataArrayDocument(value=[dav]))
    assert len(created) == 4 and all("/Observations(" in o.self_link for o in created)
    # read back with a filter, an order and small pages the client follows through @iot.nextLink
    got = service.observations().query().filter(f"Datastream/id eq {ds.id} and result ge 10").orderby(
        "phenomenonTime", "ASC").top(2).list()
    assert [o.result for o in got] == [10.0, 15.0, 20.0, 25.0, 20.0, 15.0, 10.0]
    things = service.things().query().filter("startswith(name, '下穿')").expand("Datastreams,Locations").list()
    (t,) = list(things)
    assert t.name == "下穿通道积水监测" and t.datastreams.entities[0].name == "积水深度"
    service.patch(t, [{"op": "replace", "path": "/description", "value": "changed"}])
    assert service.things().find(t.id).description == "changed"
    alerts = sta.client("write").get("/alerts", params={"datastream": ds.id}).json()["alerts"]
    assert [(a["maxLevel"], a["level"], a["status"]) for a in alerts] == [("yellow", "blue", "open")]
    service.delete(t)
    with sta.client("write") as c:
        assert c.get(f"{STA}/Datastreams({ds.id})").status_code == 404
        assert c.get("/alerts", params={"datastream": ds.id}).json()["alerts"] == []


# ---------------------------------------------------------------------- HTTP ingest and reads
def test_http_ingest_one_at_a_time_and_by_data_array(sta: Sta) -> None:
    with sta.client("write") as c:
        before = count(c, "Datastreams(1)/Observations")
        r = c.post(f"{STA}/Datastreams(1)/Observations", json={"phenomenonTime": "2024-07-22T00:00:00Z",
                                                                 "result": 1.25})
        assert r.status_code == 201 and r.headers["location"].endswith(f"/Observations({r.json()['@iot.id']})")
        r = c.post(f"{STA}/CreateObservations", json=[{
            "Datastream": {"@iot.id": 1}, "components": ["phenomenonTime", "result"], "dataArray@iot.count": 3,
            "dataArray": [["2024-07-22T01:00:00Z", 1.5], ["2024-07-22T02:00:00Z", 1.75], ["2024-07-22T03:00:00Z", 2]]}])
        assert r.status_code == 201 and len(r.json()) == 3
        assert count(c, "Datastreams(1)/Observations") == before + 4
        latest = c.get(f"{STA}/Datastreams(1)/Observations", params={"$orderby": "phenomenonTime desc", "$top": "1",
                                                                     "$select": "result"}).json()["value"]
        assert latest == [{"result": 2}]
        arr = c.get(f"{STA}/Datastreams(1)/Observations", params={"$resultFormat": "dataArray", "$top": "2",
                                                                  "$select": "phenomenonTime,result"}).json()
        assert arr["value"][0]["components"] == ["phenomenonTime", "result"]
        assert arr["value"][0]["dataArray"][0][1] == series(0)[0]


def test_service_root_and_errors_are_json(sta: Sta) -> None:
    with sta.client("write") as c:
        root = c.get(f"{STA}").json()
        assert [v["name"] for v in root["value"]][:2] == ["Things", "Locations"]
        assert "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel" in root["serverSettings"]["conformance"]
        before = {n: count(c, n) for n in ("Things", "Observations", "Sensors")}
        bad = [
            ("post", "Things", {"content": b"{not json"}, 400),
            ("post", "Things", {"json": {"name": "x", "nosuch": 1}}, 400),
            ("post", "Nothing", {"json": {"name": "x"}}, 404),
            ("post", "Datastreams(1)/Observations", {"json": {"result": "high"}}, 400),
            ("post", "Datastreams(99)/Observations", {"json": {"result": 1}}, 404),
            ("post", "CreateObservations", {"json": [{"Datastream": {"@iot.id": 1}, "components": ["result"],
                                                      "dataArray": [[1.0], ["x"]]}]}, 400),
            ("post", "Things", {"content": b"[" * 300_000 + b"]" * 300_000,
                                "headers": {"content-type": "application/json"}}, 400),
            ("get", "Things", {"params": {"$filter": "name eq"}}, 400),
            ("get", "Things", {"params": {"$filter": "(" * 200 + "id eq 1" + ")" * 200}}, 400),
            ("get", "Observations", {"params": {"$top": str(10**9)}}, 400),
            ("get", "Things(99)", {}, 404),
            ("get", "Things(1)/Nothing", {}, 404),
            ("patch", "Things(1)", {"json": {"nosuch": 1}}, 400),
            ("patch", "Things(1)", {"content": b"[{\"op\": \"move\"}]",
                                    "headers": {"content-type": "application/json-patch+json"}}, 400),
            ("delete", "Things", {}, 400),
        ]
        for method, path, kw, status in bad:
            r = getattr(c, method)(f"{STA}/{path}", **kw)
            assert r.status_code == status, (method, path, r.status_code, r.text[:200])
            assert r.json()["status"] == status and r.json()["description"]
        assert {n: count(c, n) for n in before} == before


def test_oversized_body_is_413(sta: Sta) -> None:
    with sta.client("write") as c:
        r = c.post(f"{STA}/Things", content=b" " * (64 * 1024 * 1024 + 10),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            for _ in range(65):
                yield b" " * (1024 * 1024)

        r = c.post(f"{STA}/Things", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


# ---------------------------------------------------------------------- access control
@pytest.mark.parametrize("caller, visible", [
    (None, [1]), ("read", [1, 2]), ("writeonly", [1]), ("all", [1, 2, 3]),
])
def test_reads_see_only_what_the_key_may_see(sta: Sta, caller: str | None, visible: list[int]) -> None:
    with sta.client(caller) as c:
        assert [t["@iot.id"] for t in c.get(f"{STA}/Things", params={"$filter": "id le 3"}).json()["value"]] == visible
        for i in (1, 2, 3):
            want = 200 if i in visible else 404
            for path in (f"Things({i})", f"Things({i})/Datastreams", f"Datastreams({i})", f"Datastreams({i})/Thing",
                         f"Observations({(i - 1) * HOURS + 1})", f"Datastreams({i})/Observations"):
                assert c.get(f"{STA}/{path}").status_code == want, (caller, path)
        expanded = c.get(f"{STA}/Sensors", params={"$expand": "Datastreams($select=id)",
                                                   "$filter": "id le 3"}).json()["value"]
        assert sorted(d["@iot.id"] for s in expanded for d in s["Datastreams"]) == visible
        assert {a["datastream"]["@iot.id"] for a in c.get("/alerts").json()["alerts"]} <= set(visible)
        assert {f["id"] for f in c.get("/sensing/latest").json()["features"]} == set(visible)


@pytest.mark.parametrize("caller, status", [
    (None, 401), ("revoked", 401), ("cim_0000000a_notavalidsecretnotvalid", 401), ("read", 403), ("write", 201),
])
def test_writes_need_a_write_key(sta: Sta, caller: str | None, status: int) -> None:
    with sta.client(caller) as c:
        r = c.post(f"{STA}/ObservedProperties", json={"name": f"p-{caller}", "definition": "urn:x",
                                                      "description": ""})
        assert r.status_code == status, r.text
        if status == 201:
            pid = r.json()["@iot.id"]
            assert c.patch(f"{STA}/ObservedProperties({pid})", json={"description": "d"}).status_code == 200
            assert c.delete(f"{STA}/ObservedProperties({pid})").status_code == 200
        else:
            assert c.patch(f"{STA}/ObservedProperties(1)", json={"description": "d"}).status_code == status
            assert c.delete(f"{STA}/ObservedProperties(1)").status_code == status
            assert c.post(f"{STA}/Datastreams(1)/Observations", json={"result": 1}).status_code == status


def test_write_keys_cannot_touch_what_they_cannot_see(sta: Sta) -> None:
    with sta.client("write") as c:  # internal + write: Thing 3 is confidential
        # one write it may make (an old reading: no other test's latest value moves), audited below
        assert c.post(f"{STA}/Datastreams(2)/Observations", json={"result": 1,
                                                                 "phenomenonTime": "2000-01-01T00:00:00Z"}
                      ).status_code == 201
        assert c.post(f"{STA}/Datastreams(3)/Observations", json={"result": 1}).status_code == 404
        assert c.patch(f"{STA}/Things(3)", json={"name": "x"}).status_code == 404
        assert c.delete(f"{STA}/Things(3)").status_code == 404
        r = c.post(f"{STA}/Things", json={"name": "x", "properties": {"security": "confidential"}})
        assert r.status_code == 403 and "clearance" in r.json()["description"]
    with AccessStore(access_path(sta.store)) as acc:
        audit = [a for a in acc.audit_log("sensing", limit=1000) if a.key_id == sta.keys["write"][4:12]]
    assert audit and all(a.action.startswith("sta.") and a.security == "internal" for a in audit)
    assert any("Observations" in a.path for a in audit)


# ---------------------------------------------------------------------- live stream
def _listen(url: str, key: str | None, out: list[tuple[str, dict]], ready: threading.Event, stop: threading.Event
            ) -> None:
    headers = {"X-API-Key": key} if key else {}
    with httpx.Client(timeout=httpx.Timeout(30, read=None)) as c, c.stream("GET", url, headers=headers) as r:
        event = None
        for line in r.iter_lines():
            if line.startswith(": connected"):
                ready.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                out.append((event, json.loads(line[6:])))
            if stop.is_set():
                return


def test_stream_sends_only_what_the_caller_may_see(sta: Sta) -> None:
    streams = {}
    for name in (None, "read"):
        out: list[tuple[str, dict]] = []
        ready, stop = threading.Event(), threading.Event()
        key = sta.keys.get(name) if name else None
        th = threading.Thread(target=_listen, args=(f"{sta.base}/sensing/stream", key, out, ready, stop), daemon=True)
        th.start()
        assert ready.wait(10)
        streams[name] = (out, stop, th)
    with sta.client("all") as c:
        t0 = time.monotonic()
        for ds, value in ((1, 0.1), (2, 99.0), (3, 0.2)):  # 99 mm/h opens a red alert on the internal gauge
            assert c.post(f"{STA}/Datastreams({ds})/Observations",
                          json={"phenomenonTime": "2024-08-01T00:00:00Z", "result": value}).status_code == 201
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(e == "alert" for e, _ in streams["read"][0]):
        time.sleep(0.05)
    latency = time.monotonic() - t0
    for out, stop, th in streams.values():
        stop.set()
    anon = [d for e, data in streams[None][0] if e == "observations" for d in data]
    internal = [d for e, data in streams["read"][0] if e == "observations" for d in data]
    assert {d["datastream"] for d in anon} == {1}
    assert {d["datastream"] for d in internal} == {1, 2}
    alerts = [data for e, data in streams["read"][0] if e == "alert"]
    assert ("opened", "red", 2) in [(a["event"], a["level"], a["datastream"]["@iot.id"]) for a in alerts]
    assert {a["datastream"]["@iot.id"] for e, a in streams[None][0] if e == "alert"} <= {1}
    assert latency < 10


def test_stream_resumes_after_last_event_id(sta: Sta) -> None:
    with sta.client("read") as c:
        last = c.get(f"{STA}/Observations", params={"$orderby": "id desc", "$top": "1"}).json()["value"][0]["@iot.id"]
    with sta.client("write") as c:
        c.post(f"{STA}/Datastreams(1)/Observations", json={"result": 0.3})
    out: list[tuple[str, dict]] = []
    ready, stop = threading.Event(), threading.Event()
    th = threading.Thread(target=_listen, args=(f"{sta.base}/sensing/stream?lastEventId={last}", None, out, ready,
                                                stop), daemon=True)
    th.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not out:
        time.sleep(0.05)
    stop.set()
    assert out and out[0][0] == "observations" and out[0][1][0]["@iot.id"] > last


# ---------------------------------------------------------------------- MQTT from a real broker
def test_mqtt_ingest_counts_rejections_and_stores_the_rest(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    store = tmp_path / "m.duckdb"
    with SensingStore(store) as s:
        populate(s)
    with mosquitto_broker(tmp_path / "broker") as broker:
        app = create_app(ServerSettings(store=store, mqtt=broker.address, mqtt_client_id="cim-test",
                                        log_requests=False))
        with running_server(app) as base:
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            good = [json.dumps({"phenomenonTime": f"2024-08-02T00:{m:02d}:00Z", "result": 1.0 + m / 100})
                    for m in range(50)]
            infos = [pub.publish("v1.1/Datastreams(1)/Observations", p, qos=1) for p in good]
            bad = [("v1.1/Datastreams(99)/Observations", b'{"result": 1}'),
                   ("v1.1/Datastreams(1)/Observations", b'{"result": "high"}'),
                   ("v1.1/Datastreams(1)/Observations", b"not json"),
                   ("v1.1/Datastreams(1)/Observations", b'{"phenomenonTime": "2024-08-02T00:00:00Z"}'),
                   ("v1.1/Things(1)/Observations", b'{"result": 1}'),
                   ("v1.1/Observations", json.dumps({"Datastream": {"@iot.id": 2}, "result": 5}).encode())]
            infos += [pub.publish(t, p, qos=1) for t, p in bad]
            for info in infos:
                info.wait_for_publish(10)
            deadline = time.monotonic() + 20
            with httpx.Client(base_url=base, timeout=30) as c:
                while time.monotonic() < deadline:
                    st = c.get("/sensing/status").json()["mqtt"]
                    if st["received"] == 56 and st["stored"] + st["rejected"] == 56:
                        break
                    time.sleep(0.1)
                pub.loop_stop()
                assert st["connected"] and st["received"] == 56 and st["stored"] == 51 and st["rejected"] == 5
                assert len(st["reasons"]) == 5
                stored = c.get(f"{STA}/Datastreams(1)/Observations", params={
                    "$filter": "phenomenonTime ge 2024-08-02T00:00:00Z", "$count": "true", "$top": "0"}).json()
                assert stored["@iot.count"] == 50
            # the server keeps the broker's state across its own restart: nothing was left unacknowledged
            assert app.state.catalog.mqtt.counters.stored == 51


# ---------------------------------------------------------------------- who writes the store
def test_history_import_beside_a_running_server(tmp_path: Path) -> None:
    from layers.sensing.history import import_history

    store = tmp_path / "h.duckdb"
    with SensingStore(store) as s:
        populate(s)
    with AccessStore(access_path(store)) as acc:
        key = acc.create("internal,sensing:write").key
    csv = tmp_path / "history.csv"
    csv.write_text("datastream,time,result\n" + "".join(
        f"{THINGS[0][0]} water_level,2024-06-01 {h:02d}:00:00,{1 + h / 10}\n" for h in range(24)), encoding="utf-8")
    with server_process(ServerSettings(store=store, ingest=True, log_requests=False)) as base:
        # directly: the server (another process) holds the store; the error names it and the fix
        with pytest.raises(StoreLockedError, match=f"{base}.*--server"):
            import_history(csv, store, lock_timeout=0.5)
        # a layer import waits and fails the same way, leaving the store as it was
        with pytest.raises(StoreLockedError):
            from layers.store import LayerStore

            LayerStore(store, lock_timeout=0.5).open()
        report = import_history(csv, server=base, api_key=key, timezone="Asia/Shanghai", batch=10)
        assert report.stored == 24 and report.datastreams == [1]
        assert report.first_time == "2024-05-31T16:00:00Z"  # Beijing midnight
        with httpx.Client(base_url=base, headers={"X-API-Key": key}) as c:
            got = c.get(f"{STA}/Datastreams(1)/Observations", params={
                "$filter": "phenomenonTime lt 2024-07-01T00:00:00Z", "$count": "true", "$top": "1",
                "$orderby": "phenomenonTime"}).json()
            assert got["@iot.count"] == 24 and got["value"][0]["result"] == 1.0
    # the server is gone: the same import goes straight into the store, in one transaction
    report = import_history(csv, store, timezone="Asia/Shanghai")
    assert report.stored == 24 and report.via.startswith("store")


def test_read_only_server_refuses_writes_and_workers_with_ingest_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "ro.duckdb"
    with SensingStore(store) as s:
        populate(s)
    with AccessStore(access_path(store)) as acc:
        key = acc.create("internal,sensing:write").key
    app = create_app(ServerSettings(store=store, log_requests=False))
    with running_server(app) as base, httpx.Client(base_url=base, headers={"X-API-Key": key}) as c:
        assert c.get(f"{STA}/Things").status_code == 200
        r = c.post(f"{STA}/Datastreams(1)/Observations", json={"result": 1.0})
        assert r.status_code == 503 and "--ingest" in r.json()["description"]
    from tiles.server.app import serve

    with pytest.raises(ServerConfigError, match="--workers 2"):
        serve(ServerSettings(store=store, ingest=True, workers=2))
