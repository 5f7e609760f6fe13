"""The viewer's live sensors panel (tiles/static/viewer/panels/sensors.js) in headless Chromium against a real
ingesting server fed by a real mosquitto (started on a free loopback port): a reading published over MQTT
recolours its sensor on the map (the drawn pixel, not only the page's state) within a second of the publish,
and opens an alert in the panel's list; a click on a sensor charts its last 24 h in the identify panel; the time
slider replays a past moment and the Live button returns to the latest readings. Nothing leaves the host.

The site is small and made by code: the three-Thing sensing city of tests/support/sensing.py (its readings
moved to the last 48 hours, so that "now" and "24 h ago" are in them) and the sample city's `sensors`
layer."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.browser import wait_viewer_drawn
from tests.support.mosquitto import Broker, mosquitto_broker
from tests.support.sensing import HOURS, THINGS, series, thing_doc
from tests.tiles.server_support import running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
VIEWPORT = (900, 600)


@dataclass
class Site:
    base: str
    key: str
    broker: Broker
    start: datetime  # the first reading (naive UTC)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from layers import LayerStore
    from layers.sensing import SensingStore
    from layers.sensing.observations import parse_observation
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path

    root = tmp_path_factory.mktemp("viewer_sensors")
    store = root / "city.duckdb"
    with LayerStore(store) as s:
        s.import_file(REPO / "data" / "sample_city" / "sensors.gpkg", "sensors", "iot_sensing",
                      security="public")
    # hourly readings ending an hour ago: each series crosses its thresholds once (an alert opened and closed)
    start = (datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
             - timedelta(hours=HOURS))
    with SensingStore(store) as s:
        for i in range(len(THINGS)):
            s.create("Things", thing_doc(i))
        s.add_observations([parse_observation({"phenomenonTime": (start + timedelta(hours=k)).isoformat()
                                               + "Z", "result": float(v)}, datastream_id=i + 1)
                            for i in range(len(THINGS)) for k, v in enumerate(series(i))])
    with AccessStore(access_path(store)) as acc:
        key = acc.create("confidential").key
    with mosquitto_broker(root / "broker") as broker:
        app = create_app(ServerSettings(store=store, mqtt=broker.address, mqtt_client_id="cim-viewer-test",
                                        log_requests=False))
        with running_server(app) as base:
            yield Site(base, key, broker, start)


def _open(page: Any, site: Site, lon: float, lat: float) -> None:
    """The viewer with the site's key, its live sensors connected, flown to (lon, lat) at zoom 14 and loaded."""
    page.goto(f"{site.base}/?api_key={site.key}")
    page.wait_for_function("window.cimViewer && cimViewer.loaded() && window.cim && cim.sensors"
                           " && cim.sensors.connected && cim.sensors.count === 3", timeout=90_000)
    page.wait_for_timeout(300)
    page.evaluate(f"cimViewer.flyTo({lon}, {lat}, 14)")
    wait_viewer_drawn(page, timeout_s=60)


def _pixel(page: Any, lon: float, lat: float) -> np.ndarray:
    """The colour drawn at a place: the median of a 5x5 patch of a screenshot of the map."""
    from PIL import Image

    box = page.locator("#map").bounding_box()
    x, y = page.evaluate(f"cimViewer.project({lon}, {lat})")[:2]
    shot = page.locator("#map").screenshot()
    img = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(np.int16)
    scale = img.shape[1] / box["width"]
    cx, cy = round(x * scale), round(y * scale)
    return np.median(img[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3), axis=0)


def _publish(broker: Broker, datastream: int, result: float) -> float:
    """Publish one reading (QoS 1); returns the wall-clock time just before publishing."""
    import paho.mqtt.client as mqtt

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"viewer-test-{datastream}-{result}")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        payload = json.dumps({"phenomenonTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                              "result": result})
        sent = time.time()
        pub.publish(f"v1.1/Datastreams({datastream})/Observations", payload, qos=1).wait_for_publish(10)
        return sent
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_a_published_reading_recolours_its_sensor_within_a_second_and_opens_an_alert(site: Site) -> None:
    from tests.support.browser import chromium_page

    lon, lat = THINGS[0][2], THINGS[0][3]
    red = json.dumps([225, 20, 20], separators=(",", ":"))
    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        page = bp.page
        _open(page, site, lon, lat)
        # the last reading of the water-level station (an hour ago) is below blue: drawn as normal (green)
        assert page.evaluate("cim.sensors.levelOf(1)") == "none"
        before = _pixel(page, lon, lat)
        assert np.abs(before - np.array([46, 160, 67])).sum() < 60, before
        assert page.evaluate("cim.sensors.alerts.filter(a => a.status === 'open').length") == 0
        # a reading above red (5 m) published to the broker: the page knows it within a second of the publish
        sent = _publish(site.broker, 1, 5.6)
        page.wait_for_function(f"JSON.stringify(cim.sensors.colorOf(1)) === '{red}'", timeout=10_000,
                               polling=20)
        arrived = page.evaluate("(performance.timeOrigin + cim.sensors.lastUpdate) / 1000")
        print(f"publish to recolour: {arrived - sent:.3f} s")
        assert arrived - sent < 1.0, f"the sensor changed colour {arrived - sent:.3f} s after the publish"
        # and draws it: the pixel at the station turns red
        page.wait_for_timeout(300)
        after = _pixel(page, lon, lat)
        assert np.abs(after - np.array([225, 20, 20])).sum() < 60, after
        # the alert it opened is in the panel's list, red, naming the station
        item = page.locator('#panel .sensor-alerts li.sensor-alert.open[data-datastream="1"]')
        item.wait_for(timeout=5_000)
        assert item.get_attribute("data-level") == "red" and THINGS[0][0] in item.inner_text()
        assert page.evaluate("cim.sensors.count") == 3  # the confidential key sees all three Things
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []


def test_a_click_charts_the_last_day_and_the_time_slider_replays(site: Site) -> None:
    from tests.support.browser import chromium_page

    lon, lat = THINGS[1][2], THINGS[1][3]
    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        page = bp.page
        _open(page, site, lon, lat)
        # a click on the rain gauge (identify) charts its last 24 h: the hourly readings of the last day
        box = page.locator("#map").bounding_box()
        x, y = page.evaluate(f"cimViewer.project({lon}, {lat})")[:2]
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_function("cim.sensors.chart && cim.sensors.chart.datastream === 2", timeout=30_000)
        page.locator('#info .sensor-hit[data-datastream="2"]').wait_for(timeout=10_000)
        since = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=24)
        want = sum(1 for k in range(HOURS) if site.start + timedelta(hours=k) >= since)
        points = page.evaluate("cim.sensors.chart.points.length")
        assert abs(points - want) <= 1, (points, want)  # the hour boundary may pass during the test
        page.wait_for_function("document.querySelector('#info canvas.sensor-chart')"
                               f" && Math.abs(Number(document.querySelector('#info canvas.sensor-chart')"
                               f".dataset.points) - {want}) <= 1", timeout=10_000)
        # the slider replays a past moment: half an hour after the rain gauge's peak reading (hour 26 of its
        # series, 42.5 mm/h: orange); the slider spans the last 24 h in 1,000 steps (86 s each)
        k = int(np.argmax(series(1)))
        at = site.start.replace(tzinfo=UTC) + timedelta(hours=k, minutes=30)
        value = round((at.timestamp() - (time.time() - 24 * 3600)) / (24 * 3600) * 1000)
        assert 0 < value < 1000, value
        page.locator("#panel .sensor-slider").fill(str(value))
        page.wait_for_function("!cim.sensors.live && cim.sensors.levelOf(2) === 'orange'", timeout=30_000)
        assert page.evaluate("cim.sensors.reading(2).result") == pytest.approx(float(series(1)[k]))
        # the Live button returns to the latest readings (an hour ago: back below blue)
        page.locator("#panel .sensor-live").click()
        page.wait_for_function("cim.sensors.live && cim.sensors.levelOf(2) === 'none'", timeout=30_000)
        assert page.locator("#panel .sensor-live").get_attribute("class").split().count("active") == 1
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []
