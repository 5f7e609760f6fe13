"""Sensor-triggered warning runs: an alert of a rain gauge starts a run from the recorded readings, whose warning
areas and affected buildings are published; levels, kinds and the cooldown decide what triggers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.analysis.flood.gauges import RecordedGauges
from cim.analysis.flood.runs import FloodRuns
from cim.analysis.flood.warning import FloodWarner, WarningParams, read_alerts
from cim.sources.crs import transformer

LON0, LAT0 = 113.30, 40.09
T0 = datetime(2024, 7, 20, 9, 0)


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """A 60 x 60 DEM (4 m) sloping into a hollow, a building in it, two rain gauges reading 80 mm/h for an hour."""
    root = tmp_path_factory.mktemp("warning")
    x0, y0 = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    yy, xx = np.mgrid[0:60, 0:60]
    z = 1050 + 0.01 * ((xx - 30.0) ** 2 + (yy - 30.0) ** 2) ** 0.5 * 4
    dem = root / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=60, height=60, count=1, dtype="float32", crs="EPSG:4547",
                       transform=from_origin(x0 - 120, y0 + 120, 4, 4)) as dst:
        dst.write(z.astype(np.float32), 1)
    bld = root / "buildings.gpkg"
    gpd.GeoDataFrame({"code": ["hollow", "rim"], "address": ["低洼路1号", "高坡路2号"]},
                     geometry=[shapely.box(x0 + 4, y0 - 4, x0 + 12, y0 + 4), shapely.box(x0 - 116, y0 + 100,
                                                                                       x0 - 108, y0 + 108)],
                     crs="EPSG:4547").to_file(bld)
    rows = ["gauge_id,x,y,time,mm_h"]
    for gid, dlon in (("g1", -0.001), ("g2", 0.001)):
        for k in range(13):
            t = T0 - timedelta(minutes=60) + timedelta(minutes=5 * k)
            rows.append(f"{gid},{LON0 + dlon},{LAT0},{t.isoformat()}Z,80")
    gauges = root / "gauges.csv"
    gauges.write_text("\n".join(rows) + "\n")
    store_path = root / "city.duckdb"
    from layers import LayerStore

    with LayerStore(store_path) as s:
        s.import_file(bld, "buildings", theme="public_topics", security="internal")
    return SimpleNamespace(dem=dem, buildings=bld, gauges=gauges, store=store_path, root=root)


def _event(kind="opened", level="orange", prop="rainfall_rate", when=T0):
    reading = SimpleNamespace(result=80.0, phenomenon_time=when, observation_id=1)
    alert = SimpleNamespace(datastream_id=7, level=level, observed_property=prop, opened_by=reading,
                            location=[LON0, LAT0], peak=80.0)
    return SimpleNamespace(kind=kind, alert=alert)


def _warner(town, tmp_path, store, **kw):
    params = WarningParams(lookback_min=60, lead_min=30, after_min=10, resolution=None,
                           base={"dem": town.dem, "buildings": town.buildings, "outlets": ""}, **kw)
    published = []
    return FloodWarner(tmp_path / "runs", RecordedGauges(town.gauges), params, store=store,
                       publish=published.append, background=False), published


def test_an_alert_starts_a_run_and_publishes_its_warning(town, tmp_path):
    from layers import LayerStore

    with LayerStore(town.store, read_only=True) as store:
        warner, published = _warner(town, tmp_path, store)
        warner.on_alert(_event())
    assert len(published) == 1
    alert = published[0]
    assert alert.trigger.sensor == "7" and alert.trigger.level == "orange"
    assert alert.summary["warning_areas"] >= 1 and alert.summary["max_depth_m"] > 0.15
    assert [b["id"] for b in alert.buildings] == ["hollow"] and alert.buildings[0]["address"] == "低洼路1号"
    run = tmp_path / "runs" / alert.run
    report = json.loads((run / "run.json").read_text())
    assert report["rain"]["source"] == "rain gauges" and report["params"]["gauge_hold_min"] == 30
    assert report["solver"]["simulated_s"] == pytest.approx(100 * 60)
    # measured: 80 mm/h for the hour before the alert; held: 80 mm/h for the 30 min lead; then 10 min of runoff
    applied = np.loadtxt(run / "rain.csv", delimiter=",", skiprows=1, ndmin=2)
    assert float(np.sum((applied[:, 1] - applied[:, 0]) * applied[:, 2]) / 60) == pytest.approx(120.0, rel=1e-6)
    assert applied[:, 1].max() == pytest.approx(90.0)
    areas = json.loads((run / "warning_areas.geojson").read_text())
    first = areas["features"][0]["properties"]
    assert first["peak_depth_m"] >= 0.15 and first["first_at"].startswith("2024-07-20T")
    lon, lat = shapely.geometry.shape(areas["features"][0]["geometry"]).centroid.coords[0]
    assert abs(lon - LON0) < 0.002 and abs(lat - LAT0) < 0.002  # lon/lat, in the hollow
    assert [a["id"] for a in read_alerts(FloodRuns(tmp_path / "runs"))] == [alert.id]


def test_what_does_not_trigger(town, tmp_path):
    warner, published = _warner(town, tmp_path, None)
    warner.on_alert(_event(level="blue"))          # below the least level
    warner.on_alert(_event(kind="closed"))         # not an opening
    warner.on_alert(_event(prop="settlement"))     # not a watched property
    assert published == []
    warner.on_alert(_event(level="yellow"))
    warner.on_alert(_event(level="red"))           # within the cooldown of the first run
    assert len(published) == 1 and published[0].buildings == []  # no store: no buildings


@pytest.mark.slow
def test_a_sensing_store_alert_starts_a_warning_run(tmp_path):
    """The real thing: the sample city's sensors in a sensing store; a burst of heavy rain at its gauges opens their
    alerts, the store's listener hands them to the warner, which runs from the stored readings."""
    import time as _time

    from cim.analysis.flood.gauges import SensingGauges
    from cim.demo import load_sample_layers
    from cim.sample import default_sample
    from layers.sensing import SensingStore
    from layers.sensing.sample import seed_sample_city
    from layers.sensing.simulate import store_publisher

    city = default_sample()
    store_path = tmp_path / "city.duckdb"
    load_sample_layers(city, store_path)
    published: list = []
    with SensingStore(store_path) as sensing:
        gauges = [g for g in seed_sample_city(sensing) if g.kind == "rainfall_rate"]
        base = {"dem": city.dem, "buildings": city.buildings, "outlets": city.layers["river"], "drainage": 0}
        params = WarningParams(resolution=32.0, lookback_min=30, lead_min=30, after_min=0, base=base)
        warner = FloodWarner(tmp_path / "runs", SensingGauges(sensing), params, store=sensing.layer_store,
                             publish=published.append, background=False)
        sensing.on_alert(warner.on_alert)
        now = datetime.utcnow().replace(microsecond=0)
        store_publisher(sensing)([(g.datastream_id, now - timedelta(minutes=30 - 5 * k), 60.0)
                                  for k in range(7) for g in gauges])
        deadline = _time.monotonic() + 300
        while not published and _time.monotonic() < deadline:
            _time.sleep(0.2)
    assert published, "no warning was published"
    alert = published[0]
    assert alert.trigger.observed_property == "rainfall_rate" and alert.trigger.level == "red"
    report = json.loads((tmp_path / "runs" / alert.run / "run.json").read_text())
    assert report["rain"]["gauges"] and len(report["rain"]["gauges"]) == len(gauges)
    # the alert opened with the burst's first reading (30 min ago): nothing fell in the half hour before it, and the
    # readings since (60 mm/h) fill the run's 30 min lead: 30 mm over the grid
    applied = np.loadtxt(tmp_path / "runs" / alert.run / "rain.csv", delimiter=",", skiprows=1, ndmin=2)
    assert float(np.sum((applied[:, 1] - applied[:, 0]) * applied[:, 2]) / 60) == pytest.approx(30.0, rel=0.05)
    assert alert.summary["buildings_total"] == 2500 and alert.summary["warning_areas"] >= 1
