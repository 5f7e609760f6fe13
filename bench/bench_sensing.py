"""Benchmark of sensing: ingest by HTTP dataArray and by MQTT, the latest reading of 10,000 datastreams, and
publish-to-client latency with 100 live-stream clients, in one run on loopback.

    .venv/bin/python bench/bench_sensing.py                 # the full run (a few minutes)
    .venv/bin/python bench/bench_sensing.py --scale 0.1     # quick
    flock /work/.bench.lock .venv/bin/python bench/bench_sensing.py --markdown   # numbers for docs/benchmarks.md

Every server is `cim serve --ingest` (`--mqtt` for MQTT) in a child process of its own, on a fresh store; load
generators run in this process (HTTP, MQTT) or another one (the 100 SSE clients). The machine has 2 cores shared
by all of them, so the numbers include the clients' CPU.

1. **HTTP dataArray**: `--http-obs` observations over 1,000 Datastreams, POSTed as `CreateObservations` of
   `--http-batch` rows by 2 concurrent clients. Reported: observations/s from first request to last answer, and
   stored = sent (counted in the store after the server stops). Floor: DuckDB inserting the same rows, in batches
   of the same size from Arrow, each its own transaction, in this process (the storage engine alone: no HTTP, no
   JSON, no `latest`, no alerts).
2. **MQTT, one observation per message**: a fresh server subscribed to Debian's mosquitto; `--mqtt-obs` messages
   published at `--mqtt-rate` per second (QoS 1), then as fast as the publisher goes. Reported: the rate stored,
   how far ingest lagged behind publishing, and published = stored (0 lost). Ceiling: the same messages through
   the same broker to a bare paho subscriber that only counts and acknowledges, in the same run.
3. **Latest reading of 10,000 Datastreams**: a store with 10,000 Datastreams with 10 readings each; p50/p95 of
   `SensingStore.latest()` (library), `GET /sensing/latest` (HTTP, GeoJSON of all 10,000) and the standard STA way,
   `GET /sta/v1.1/Datastreams?$top=10000&$select=id&$expand=Observations($top=1;$orderby=phenomenonTime desc;
   $select=result,phenomenonTime)`. Floor: DuckDB reading the `sensing.latest` table (10,000 rows) into Python.
   `latest()` keeps its answer between calls and re-reads only the Datastreams committed since, so two more
   library numbers: the first call after opening (every entry built), and calls under ingest (a batch of 1,000
   readings of random Datastreams committed before each call; every answer checked against the batch).
4. **Publish-to-client latency**: 100 SSE clients on `/sensing/stream` in another process; one observation POSTed
   every 50 ms for `--latency-seconds`; latency = arrival at a client - the observation's phenomenonTime (set to the
   send time; one machine, one clock). p50/p95/max over every client and observation; the same with 1 client as the
   floor.

Anchor (not measured here): FROST-Server's maintainers quote about 5,000 inserts/s on SSD hardware. Targets on this
2-core machine (issue 13): >= 10,000 obs/s batched, >= 2,000/s one message at a time by MQTT with 0 lost,
p95 publish-to-client < 1 s with 100 clients, latest-reading p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from layers.sensing import SensingStore
from layers.sensing.entities import OM_MEASUREMENT
from layers.sensing.observations import ObsRow, rows_table
from tests.support.http import free_port
from tests.support.mosquitto import MOSQUITTO
from tests.support.processes import stop_process
from tiles.server.auth import AccessStore, access_path

T0 = datetime(2025, 1, 1)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def make_store(path: Path, n_datastreams: int, readings: int = 0) -> str:
    """A store with `n_datastreams` Datastreams (one Thing each, shared Sensor/ObservedProperty, thresholds) and
    `readings` observations each; returns a write key."""
    with SensingStore(path) as s:
        s.create("Sensors", {"name": "gauge", "description": "", "encodingType": "text/html", "metadata": ""})
        s.create("ObservedProperties", {"name": "water_level", "definition": "urn:wl", "description": ""})
        batch: list[dict[str, object]] = []
        for i in range(n_datastreams):
            batch.append({"name": f"站{i}", "description": "",
                          "Locations": [{"name": f"l{i}", "description": "", "location": {
                              "type": "Point", "coordinates": [113.2 + (i % 100) * 0.002, 40.0 + (i // 100) * 0.002]}}],
                          "Datastreams": [{"name": f"ds{i}", "description": "", "observationType": OM_MEASUREMENT,
                                           "unitOfMeasurement": {"name": "metre", "symbol": "m", "definition": ""},
                                           "properties": {"thresholds": {"blue": 2.0, "yellow": 2.5, "orange": 3.0,
                                                                         "red": 3.5}},
                                           "Sensor": {"@iot.id": 1}, "ObservedProperty": {"@iot.id": 1}}]})
            if len(batch) == 1000 or i == n_datastreams - 1:
                s.create_many("Things", batch)
                batch = []
        # in the same session (until the fix of layers.db.first_row, this COMMIT never returned: a result left
        # open by fetchone() blocked the checkpoint the 10,000 Things' WAL called for)
        if readings:
            rows = [ObsRow(d, T0 + timedelta(minutes=k), None, None, 1.0 + 0.1 * k, None, None, None, None, None,
                           None) for k in range(readings) for d in range(1, n_datastreams + 1)]
            s.submit(rows_table(rows)).result()
    with AccessStore(access_path(path)) as acc:
        return acc.create("confidential,sensing:write").key


@contextlib.contextmanager
def server(store: Path, **settings: object) -> Iterator[str]:
    """`tiles.server.serve` with `ingest` in a child process; yields its base URL."""
    port = free_port()
    doc = json.dumps({"store": str(store), "ingest": True, "port": port, "log_requests": False, **settings})
    code = ("import sys, logging; from tiles.server.settings import ServerSettings; from tiles.server.app import "
            "serve; serve(ServerSettings.model_validate_json(sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", code, doc], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.2)
    try:
        yield base
    finally:
        stop_process(proc, timeout=60)


@contextlib.contextmanager
def broker(work: Path) -> Iterator[int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"max_inflight_messages 1000\nmax_queued_messages 10000000\nmax_queued_bytes 0\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield port
    finally:
        stop_process(proc, timeout=10)


def count_stored(store: Path) -> int:
    with SensingStore(store, read_only=True) as s:
        return int(s.cursor().execute("SELECT count(*) FROM sensing.observations").fetchone()[0])


# ---------------------------------------------------------------------- 1. HTTP dataArray
def bench_http(work: Path, n_obs: int, batch: int) -> dict[str, float]:
    store = work / "http.duckdb"
    key = make_store(store, 1000)
    bodies = []
    for start in range(0, n_obs, batch):
        rows: dict[int, list[list[object]]] = {}
        for j in range(start, min(n_obs, start + batch)):
            rows.setdefault(1 + j % 1000, []).append([(T0 + timedelta(seconds=j)).isoformat() + "Z", 1.0 + (j % 50) / 20])
        bodies.append(json.dumps([{"Datastream": {"@iot.id": d}, "components": ["phenomenonTime", "result"],
                                   "dataArray": a} for d, a in rows.items()]).encode())
    with server(store) as base:
        clients = [httpx.Client(base_url=base, headers={"X-API-Key": key, "Content-Type": "application/json"},
                                timeout=120) for _ in range(2)]
        failures: list[str] = []

        def send(i: int) -> None:
            r = clients[i % 2].post("/sta/v1.1/CreateObservations", content=bodies[i])
            if r.status_code != 201:
                failures.append(f"{r.status_code} {r.text[:200]}")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(send, range(len(bodies))))
        seconds = time.perf_counter() - t0
        for c in clients:
            c.close()
    stored = count_stored(store)
    # floor: DuckDB alone, the same rows in the same batches, one transaction each
    from layers.db import connect

    con = connect(work / "floor.duckdb")
    con.execute("CREATE TABLE o (id BIGINT, datastream_id BIGINT, phenomenon_time TIMESTAMP, phenomenon_time_end "
                "TIMESTAMP, result_time TIMESTAMP, result_number DOUBLE, result_json VARCHAR, result_quality VARCHAR,"
                " valid_time_start TIMESTAMP, valid_time_end TIMESTAMP, parameters VARCHAR, feature_id BIGINT)")
    tables = [rows_table([ObsRow(1 + j % 1000, T0 + timedelta(seconds=j), None, None, 1.0, None, None, None, None,
                                 None, 1) for j in range(s, min(n_obs, s + batch))], list(range(s, min(n_obs, s + batch))))
              for s in range(0, n_obs, batch)]
    f0 = time.perf_counter()
    for t in tables:
        con.register("b", t)
        con.execute("BEGIN")
        con.execute("INSERT INTO o SELECT * FROM b")
        con.execute("COMMIT")
        con.unregister("b")
    floor = time.perf_counter() - f0
    con.close()
    return {"obs": n_obs, "seconds": seconds, "rate": n_obs / seconds, "stored": stored, "lost": n_obs - stored,
            "failed_requests": len(failures), "floor_rate": n_obs / floor}


# ---------------------------------------------------------------------- 2. MQTT
def _paho(port: int, client_id: str, **kw: object):  # type: ignore[no-untyped-def]
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kw)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _publish(pub, n: int, rate: float | None, offset: int) -> float:  # type: ignore[no-untyped-def]
    """Publish n messages (paced at `rate`/s, or as fast as possible); returns the seconds it took."""
    t0 = time.perf_counter()
    infos = []
    for k in range(n):
        if rate:
            due = t0 + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        j = offset + k
        payload = json.dumps({"phenomenonTime": (T0 + timedelta(milliseconds=j)).isoformat() + "Z",
                              "result": 1.0 + (j % 50) / 20})
        infos.append(pub.publish(f"v1.1/Datastreams({1 + j % 1000})/Observations", payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    return time.perf_counter() - t0


def bench_mqtt(work: Path, n_obs: int, rate: float) -> dict[str, float]:
    out: dict[str, float] = {"obs": n_obs, "target_rate": rate}
    with broker(work) as port:
        # ceiling: a bare subscriber that acknowledges and counts
        got = {"n": 0}
        done = threading.Event()

        def on_message(c, u, m):  # type: ignore[no-untyped-def]
            got["n"] += 1
            if got["n"] == n_obs:
                done.set()

        sub = _paho(port, "bare", clean_session=False)
        sub.on_message = on_message
        sub.subscribe("v1.1/+/Observations", qos=1)
        time.sleep(0.5)
        pub = _paho(port, "pub-ceiling")
        t0 = time.perf_counter()
        _publish(pub, n_obs, None, 0)
        done.wait(300)
        out["ceiling_rate"] = got["n"] / (time.perf_counter() - t0)
        sub.loop_stop()
        sub.disconnect()
        # ours, paced at `rate`, then as fast as the publisher goes
        store = work / "mqtt.duckdb"
        make_store(store, 1000)
        with server(store, mqtt=f"127.0.0.1:{port}", mqtt_client_id="cim-bench") as base:
            with httpx.Client(base_url=base, timeout=30) as c:
                def stored() -> int:
                    return int(c.get("/sensing/status").json()["mqtt"]["stored"])

                def received() -> int:
                    return int(c.get("/sensing/status").json()["mqtt"]["received"])

                t0 = time.perf_counter()
                pub_seconds = _publish(pub, n_obs, rate, 0)
                publish_done = time.perf_counter()
                while stored() < n_obs and time.perf_counter() - t0 < 600:
                    time.sleep(0.05)
                end = time.perf_counter()
                out.update(paced_publish_rate=n_obs / pub_seconds, paced_stored_rate=n_obs / (end - t0),
                           paced_lag=end - publish_done)
                t1 = time.perf_counter()
                _publish(pub, n_obs, None, n_obs)
                while stored() < 2 * n_obs and time.perf_counter() - t1 < 600:
                    time.sleep(0.05)
                out["burst_stored_rate"] = n_obs / (time.perf_counter() - t1)
                out["received"] = received()
                status = c.get("/sensing/status").json()
                out["rejected"] = status["mqtt"]["rejected"]
                out["batches"] = status["writer"]["batches"]
        pub.loop_stop()
        pub.disconnect()
        out["published"] = 2 * n_obs
        out["stored"] = count_stored(store)
        out["lost"] = out["published"] - out["stored"]
    return out


# ---------------------------------------------------------------------- 3. latest of 10,000
def bench_latest(work: Path, n_ds: int, runs: int) -> dict[str, float]:
    store = work / "latest.duckdb"
    key = make_store(store, n_ds, readings=10)
    print(f"  latest: store of {n_ds} Datastreams made", flush=True)
    out: dict[str, float] = {"datastreams": n_ds}
    first = []
    for _ in range(5):
        with SensingStore(store, read_only=True) as s:
            s.meta()
            t0 = time.perf_counter()
            s.latest()
            first.append(time.perf_counter() - t0)
    with SensingStore(store) as s:  # read-write: the writer commits while latest() is asked
        s.latest()
        rng = np.random.default_rng(13)
        live = []
        for k in range(runs):
            ds = rng.choice(n_ds, 1000, replace=False) + 1
            t = T0 + timedelta(days=1, seconds=k)
            s.submit(rows_table([ObsRow(int(d), t, None, None, 5.0 + k, None, None, None, None, None, None)
                                 for d in ds])).result()
            t0 = time.perf_counter()
            rows = s.latest()
            live.append(time.perf_counter() - t0)
            assert all(rows[d - 1]["result"] == 5.0 + k for d in ds.tolist())
    out.update(first_p50=pct(first, 50), first_max=max(first), ingest_p50=pct(live, 50), ingest_p95=pct(live, 95))
    with SensingStore(store, read_only=True) as s:
        s.latest()
        lib = []
        for _ in range(runs):
            t0 = time.perf_counter()
            rows = s.latest()
            lib.append(time.perf_counter() - t0)
        assert len(rows) == n_ds
        cur = s.cursor()
        floor = []
        for _ in range(runs):
            t0 = time.perf_counter()
            cur.execute("SELECT * FROM sensing.latest").fetchall()
            floor.append(time.perf_counter() - t0)
    out.update(lib_p50=pct(lib, 50), lib_p95=pct(lib, 95), floor_p50=pct(floor, 50), floor_p95=pct(floor, 95))
    print(f"  latest: library done {out}", flush=True)
    with server(store) as base, httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as c:
        http, sta = [], []
        c.get("/sensing/latest")
        for _ in range(runs):
            t0 = time.perf_counter()
            r = c.get("/sensing/latest")
            http.append(time.perf_counter() - t0)
        assert len(r.json()["features"]) == n_ds
        print("  latest: HTTP done", flush=True)
        q = {"$top": str(n_ds), "$select": "id", "$expand": "Observations($top=1;$orderby=phenomenonTime desc;"
                                                             "$select=result,phenomenonTime)"}
        for _ in range(max(3, runs // 5)):
            t0 = time.perf_counter()
            r = c.get("/sta/v1.1/Datastreams", params=q)
            sta.append(time.perf_counter() - t0)
        assert len(r.json()["value"]) == n_ds
    out.update(http_p50=pct(http, 50), http_p95=pct(http, 95), sta_p50=pct(sta, 50), sta_p95=pct(sta, 95))
    return out


# ---------------------------------------------------------------------- 4. publish-to-client latency
def _sse_clients(url: str, key: str, n: int, seconds: float, ready: mp.Event, results: mp.Queue) -> None:
    async def one(client: httpx.AsyncClient, arrivals: list[float], started: list[int]) -> None:
        async with client.stream("GET", url, headers={"X-API-Key": key}) as r:
            started[0] += 1
            if started[0] == n:
                ready.set()
            async for line in r.aiter_lines():
                if line.startswith("data: ["):
                    now = time.time()
                    for o in json.loads(line[6:]):
                        sent = datetime.fromisoformat(o["phenomenonTime"].replace("Z", "+00:00")).timestamp()
                        arrivals.append(now - sent)

    async def main() -> list[float]:
        arrivals: list[float] = []
        started = [0]
        limits = httpx.Limits(max_connections=n + 10)
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as client:
            tasks = [asyncio.create_task(one(client, arrivals, started)) for _ in range(n)]
            await asyncio.sleep(seconds)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return arrivals

    results.put(asyncio.run(main()))


def bench_latency(work: Path, clients: int, seconds: float) -> dict[str, float]:
    store = work / "latency.duckdb"
    key = make_store(store, 10)
    out: dict[str, float] = {}
    with server(store) as base, httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as c:
        for n in (1, clients):
            ctx = mp.get_context("spawn")
            ready, results = ctx.Event(), ctx.Queue()
            proc = ctx.Process(target=_sse_clients, args=(base + "/sensing/stream?events=observations", key, n,
                                                          seconds + 10, ready, results))
            proc.start()
            if not ready.wait(60):
                raise RuntimeError("the SSE clients did not connect")
            time.sleep(1)
            sent = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                now = datetime.now(UTC).replace(tzinfo=None)
                c.post(f"/sta/v1.1/Datastreams({1 + sent % 10})/Observations",
                       json={"phenomenonTime": now.isoformat() + "Z", "result": 1.0})
                sent += 1
                time.sleep(0.05)
            lat = results.get(timeout=120)
            proc.join(30)
            out[f"n{n}_sent"] = sent
            out[f"n{n}_received"] = len(lat)
            out[f"n{n}_p50"] = pct(lat, 50)
            out[f"n{n}_p95"] = pct(lat, 95)
            out[f"n{n}_max"] = max(lat) if lat else float("nan")
    out["clients"] = clients
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="scale the observation counts")
    ap.add_argument("--http-obs", type=int, default=200_000)
    ap.add_argument("--http-batch", type=int, default=2_000)
    ap.add_argument("--mqtt-obs", type=int, default=60_000)
    ap.add_argument("--mqtt-rate", type=float, default=2_000)
    ap.add_argument("--latest-datastreams", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--latency-seconds", type=float, default=20)
    ap.add_argument("--only", choices=["http", "mqtt", "latest", "latency"], action="append")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    only = set(args.only or ["http", "mqtt", "latest", "latency"])
    print(f"load average at start {os.getloadavg()}", flush=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sensing-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict[str, float]] = {}
    if "http" in only:
        res["http"] = bench_http(work, int(args.http_obs * args.scale), args.http_batch)
        print("http", json.dumps(res["http"]), flush=True)
    if "mqtt" in only:
        res["mqtt"] = bench_mqtt(work, int(args.mqtt_obs * args.scale), args.mqtt_rate)
        print("mqtt", json.dumps(res["mqtt"]), flush=True)
    if "latest" in only:
        res["latest"] = bench_latest(work, int(args.latest_datastreams * max(args.scale, 0.1)), args.runs)
        print("latest", json.dumps(res["latest"]), flush=True)
    if "latency" in only:
        res["latency"] = bench_latency(work, args.clients, args.latency_seconds * max(args.scale, 0.25))
        print("latency", json.dumps(res["latency"]), flush=True)
    print(f"load average at end {os.getloadavg()}", flush=True)
    if args.markdown:
        print(markdown(res))


def markdown(res: dict[str, dict[str, float]]) -> str:
    lines = ["| measure | ours | floor / ceiling | ratio | target |", "|---|---|---|---|---|"]
    if "http" in res:
        h = res["http"]
        lines.append(f"| HTTP `CreateObservations` ({h['obs']:,} obs, 2 clients) | {h['rate']:,.0f} obs/s, "
                     f"stored {h['stored']:,}, lost {h['lost']} | DuckDB insert alone {h['floor_rate']:,.0f} obs/s | "
                     f"{h['rate'] / h['floor_rate']:.2f} | >= 10,000 obs/s |")
    if "mqtt" in res:
        m = res["mqtt"]
        lines.append(f"| MQTT one message each, paced at {m['target_rate']:,.0f}/s ({m['obs']:,}) | stored at "
                     f"{m['paced_stored_rate']:,.0f}/s, {m['paced_lag']:.2f} s behind the publisher | bare "
                     f"subscriber {m['ceiling_rate']:,.0f}/s | {m['paced_stored_rate'] / m['ceiling_rate']:.2f} | "
                     f">= 2,000/s |")
        lines.append(f"| MQTT burst (as fast as the publisher goes) | {m['burst_stored_rate']:,.0f}/s stored | "
                     f"bare subscriber {m['ceiling_rate']:,.0f}/s | {m['burst_stored_rate'] / m['ceiling_rate']:.2f} | |")
        lines.append(f"| MQTT accounted for | published {m['published']:,}, stored {m['stored']:,}, lost "
                     f"{m['lost']} | | | 0 lost |")
    if "latest" in res:
        x = res["latest"]
        ms = 1000
        lines.append(f"| latest of {x['datastreams']:,} Datastreams, `SensingStore.latest()` | p50 {x['lib_p50'] * ms:.1f} "
                     f"ms, p95 {x['lib_p95'] * ms:.1f} ms | DuckDB `latest` table p95 {x['floor_p95'] * ms:.1f} ms | "
                     f"{x['lib_p95'] / x['floor_p95']:.1f} | p95 < 50 ms |")
        lines.append(f"| same, while a batch of 1,000 readings commits before each call | p50 "
                     f"{x['ingest_p50'] * ms:.1f} ms, p95 {x['ingest_p95'] * ms:.1f} ms | | | p95 < 50 ms |")
        lines.append(f"| same, first call after opening (every entry built) | p50 {x['first_p50'] * ms:.1f} ms, max "
                     f"{x['first_max'] * ms:.1f} ms | | | |")
        lines.append(f"| same, `GET /sensing/latest` (GeoJSON) | p50 {x['http_p50'] * ms:.1f} ms, p95 "
                     f"{x['http_p95'] * ms:.1f} ms | | | |")
        lines.append(f"| same, STA `$expand=Observations($top=1)` | p50 {x['sta_p50'] * ms:.0f} ms, p95 "
                     f"{x['sta_p95'] * ms:.0f} ms | | | |")
    if "latency" in res:
        y = res["latency"]
        n = int(y["clients"])
        lines.append(f"| publish-to-client, {n} SSE clients | p50 {y[f'n{n}_p50'] * 1000:.0f} ms, p95 "
                     f"{y[f'n{n}_p95'] * 1000:.0f} ms, max {y[f'n{n}_max'] * 1000:.0f} ms "
                     f"({y[f'n{n}_received']:,} arrivals of {y[f'n{n}_sent']} posts) | 1 client p95 "
                     f"{y['n1_p95'] * 1000:.0f} ms | {y[f'n{n}_p95'] / y['n1_p95']:.1f} | p95 < 1 s |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
