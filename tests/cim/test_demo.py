"""`cim demo`: the sample city, its models and layer store made once in a predictable folder and reused, then
served with the viewer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.http import free_port
from tests.support.processes import stop_process

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_prepare_demo_builds_once_and_reuses_everything(tmp_path: Path) -> None:
    from cim.demo import prepare_demo
    from cim.tiling import shared_clusters
    from layers import LayerStore
    from tiles.server.auth import AccessStore, access_path

    before = shared_clusters()
    site = prepare_demo(tmp_path / "demo", levels=(2,), texture_quality=80)
    # the Dask cluster of its builds is closed before the storm run and the serving
    assert [c for c in shared_clusters() if not any(c is b for b in before)] == []
    manifest_layers = {e["layer"] for e in __import__("json").loads(site.city.manifest.read_text())["files"]
                       if e["kind"] == "vector"}
    with LayerStore(site.store, read_only=True) as store:
        infos = {i.name: i for i in store.list()}
    # the sample's layers, its standard addresses and the three 一标三实 registries linked to the buildings
    registries = {"address_population", "address_organisations", "address_houses"}
    assert set(infos) == manifest_layers | {"addresses"} | registries
    assert infos["address_population"].security == "confidential"
    n_buildings = infos["buildings"].feature_count
    assert 0.95 * n_buildings <= infos["addresses"].feature_count <= n_buildings
    assert all(infos[r].feature_count > 0 for r in registries)
    assert infos["hazards"].security == "confidential" and infos["shelters"].security == "public"
    assert site.models == {"city": tmp_path / "demo" / "l2"}
    assert site.security["city"] == "internal" and site.maps["city_ortho"] == site.city.ortho
    with AccessStore(access_path(site.store)) as acc:
        assert acc.authenticate(site.key).can_see("hazards", "confidential")

    storm = site.flood / "storm-50y" / "run.json"
    assert site.flood == tmp_path / "demo" / "flood" and storm.is_file()
    assert site.settings().flood_runs == site.flood
    stamp = (site.models["city"] / "build.json").stat().st_mtime_ns
    storm_stamp = storm.stat().st_mtime_ns
    again = prepare_demo(tmp_path / "demo", levels=(2,), texture_quality=80)
    assert (again.models["city"] / "build.json").stat().st_mtime_ns == stamp
    # the model records the encoding it was built with; other options (the defaults too) would build it again
    from cim.demo import _built_from
    from tiles.compression import GlbOptions

    assert json.loads((site.models["city"] / "build.json").read_text())["glb"]["texture_quality"] == 80
    assert _built_from(site.models["city"], site.city, GlbOptions(texture_quality=80))
    assert not _built_from(site.models["city"], site.city, None)
    assert not _built_from(site.models["city"], site.city, GlbOptions(texture_quality=81))
    assert storm.stat().st_mtime_ns == storm_stamp  # the storm scenario is reused too
    assert again.key == site.key
    with LayerStore(again.store, read_only=True) as store:
        assert all(i.version == 1 for i in store.list())
    assert again.viewer_url(port=8123) == f"http://127.0.0.1:8123/?api_key={site.key}"
    # the city's sensors, seeded once, with the last 24 h of readings; the server takes observations
    assert len(site.sensors) == len(again.sensors) == 20 and site.settings().ingest
    from layers.sensing import SensingStore

    with SensingStore(site.store, read_only=True) as s:
        latest = s.latest()
        assert len(latest) == 20 and all(r["result"] is not None for r in latest)
        assert {r["observedProperty"] for r in latest} == {"water_level", "rainfall_rate", "settlement"}
        assert len(s.observations([latest[0]["datastream"]])) >= 24 * 12


# The simulated sensors' clock, pinned (`cim demo --sensor-time`): from QUIET no rain gauge or water level of the demo
# scenario reaches yellow, the least alert level that starts a warning run, for 23 minutes (19:05:40-19:29:40 UTC,
# from `layers.sensing.simulate.readings` every 5 s), longer than the demo test may run; STORMY is 10 s before that
# quiet spell ends, when the gauges go over yellow.
QUIET = "2026-09-09T19:06:00Z"
STORMY = "2026-09-09T19:29:30Z"


@contextmanager
def _demo(folder: Path, sensor_time: str, deadline: float) -> Iterator[tuple[str, str]]:
    """`cim demo` in a process on a free port with its sensors' clock at `sensor_time`: yields (base URL, the
    viewer URL with the demo's key) once the viewer's URL is printed, and stops the demo afterwards."""
    port = free_port()
    # -X faulthandler: a demo killed by a fatal signal prints every thread's Python stack into the output below
    cmd = [sys.executable, "-X", "faulthandler", "-c", "import cli; cli.main()", "demo", "--dir", str(folder),
           "--port", str(port), "--no-browser", "--sensor-time", sensor_time, "--texture-quality", "80"]
    env = {**os.environ, "DISPLAY": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(max(1.0, deadline - time.monotonic()), proc.kill)  # a hung demo cannot hold the suite
    watchdog.start()
    lines: list[str] = []
    try:
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if line.startswith("viewer (every layer"):
                url = line.split(": ", 1)[1].strip()
        status = proc.poll()
        exited = "still running" if status is None else \
            f"exited {status}" + (f" ({signal.Signals(-status).name})" if status < 0 else "")
        assert url and url.startswith(f"http://127.0.0.1:{port}/?api_key=cim_"), \
            f"no viewer URL; the demo {exited} after:\n" + "".join(lines)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", url
    finally:
        watchdog.cancel()
        stop_process(proc, timeout=30)


def test_cim_demo_serves_the_viewer_and_prints_its_url(tmp_path: Path) -> None:
    deadline = time.monotonic() + 300
    with _demo(tmp_path / "demo", QUIET, deadline) as (base, url):
        key = url.split("=", 1)[1]
        page = httpx.get(url, headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and "/viewer/deck.js" in page.text
        catalog = httpx.get(f"{base}/catalog", params={"api_key": key}).json()
        assert {m["name"] for m in catalog["models"]} == {"city", "lod2"}
        assert "hazards" in {layer["name"] for layer in catalog["layers"]}
        # a city that moves: the simulator feeds the server, readings newer than the server's start arrive
        first = {f["id"]: f["properties"]["phenomenonTime"]
                 for f in httpx.get(f"{base}/sensing/latest", params={"api_key": key}).json()["features"]}
        assert len(first) == 20
        moved: set[int] = set()
        while time.monotonic() < deadline and len(moved) < 5:
            time.sleep(1)
            now = httpx.get(f"{base}/sensing/latest", params={"api_key": key}).json()["features"]
            moved = {f["id"] for f in now if f["properties"]["phenomenonTime"] > first[f["id"]]}
        assert len(moved) >= 5
        # ... on the pinned clock: the readings are of the quiet spell, not of the wall clock
        assert all(f["properties"]["phenomenonTime"].startswith("2026-09-09T19:") for f in now), now
        # the search box geocodes: a standard address of the store, typed as a clerk would, finds its building
        item = httpx.get(f"{base}/collections/addresses/items",
                         params={"api_key": key, "limit": 1, "f": "json"}).json()["features"][0]["properties"]
        found = httpx.get(f"{base}/geocode", params={"api_key": key, "q": item["address"]}).json()
        assert found["result"]["matched"] and found["result"]["building_code"] == item["building_code"], found
        links = httpx.get(f"{base}/addresses/buildings/{item['building_code']}", params={"api_key": key}).json()
        assert links["building_code"] == item["building_code"], links
        assert set(links["counts"]) <= {"population", "organisations", "houses"}, links
        # the shipped storm alone: in the quiet spell no gauge's alert starts a warning run
        runs = httpx.get(f"{base}/flood", params={"api_key": key}).json()
        assert [r["id"] for r in runs["runs"]] == ["storm-50y"]
        # the demo ships scenes; each is listed to callers who may see all its layers, and opens by URL
        assert {s["name"] for s in catalog["scenes"]} == {"planning", "emergency", "iot"}
        anonymous = httpx.get(f"{base}/catalog").json()["scenes"]
        assert anonymous == []  # each shows internal or confidential layers
        scene = httpx.get(catalog["scenes"][0]["document"], params={"api_key": key}).json()
        assert scene["camera"] and len(scene["layers"]) >= 4
        page = httpx.get(url + f"&scene={scene['name']}", headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and f'"name":"{scene["name"]}"' in page.text
    assert (tmp_path / "demo" / "l2" / "tileset.json").is_file() and (tmp_path / "demo" / "city.duckdb").is_file()
    assert json.loads((tmp_path / "demo" / "l2" / "build.json").read_text())["glb"]["texture_quality"] == 80

    # the same demo again (everything reused) at a stormy moment: a gauge's alert starts a warning run
    deadline = time.monotonic() + 300
    with _demo(tmp_path / "demo", STORMY, deadline) as (base, url):
        key = url.split("=", 1)[1]
        alerts: list[dict] = []
        while time.monotonic() < deadline and not alerts:  # a run's alert is written when the run is done
            time.sleep(2)
            alerts = httpx.get(f"{base}/flood/alerts", params={"api_key": key}).json()["alerts"]
        ids = [r["id"] for r in httpx.get(f"{base}/flood", params={"api_key": key}).json()["runs"]]
    assert len(alerts) == 1 and sorted(ids) == sorted(["storm-50y", alerts[0]["run"]]), (alerts, ids)
    trigger = alerts[0]["trigger"]
    assert alerts[0]["run"].startswith("warning-") and trigger["observed_property"] in ("rainfall_rate", "water_level")
    assert STORMY <= trigger["time"] <= "2026-09-09T19:35:00Z", trigger  # on the pinned clock
