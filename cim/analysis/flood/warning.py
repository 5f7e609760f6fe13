"""Waterlogging warning: when a rain gauge or a water-level sensor crosses its threshold, run the flood model from
the current readings and publish its warning areas as an alert with the affected buildings.

The trigger is the sensing store's alert hook (`layers.sensing.SensingStore.on_alert`, issue 13) or anything that
calls `FloodWarner.trigger`. A warning run takes the rain the gauges measured over the last `lookback_min` and
holds every gauge's last rate for `lead_min` (a persistence nowcast: the storm goes on as it is now), then lets the
water run `after_min` more. Its alert (`alert.json` and `warning_areas.geojson` beside the run) holds:

- the trigger (sensor, property, value, level, time);
- warning areas: the places where water will stand at least `warning_depth_m` (default 0.15 m, GB 51222's limit
  for a traffic lane), as lon/lat polygons with the first time they get there;
- the affected buildings (id, address, depth, time) and the impact summary (`cim.analysis.flood.impacts`).

    warner = FloodWarner("city/flood", SensingGauges(sensing), WarningParams(), store=layer_store)
    sensing.on_alert(warner.on_alert)          # runs in the background on each opened/escalated alert
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.flood.gauges import GaugeSource
from cim.analysis.flood.run import FloodParams, FloodResult, run_flood
from cim.analysis.flood.runs import FloodRuns, run_start

log = logging.getLogger("cim.flood.warning")
LEVELS = ("blue", "yellow", "orange", "red")


class WarningParams(BaseModel):
    """When a warning run starts and what it models.

    Attributes:
        properties: observed properties whose alerts trigger a run (rain gauges, water levels).
        min_level: the least alert level that triggers (blue < yellow < orange < red).
        lookback_min: measured rain taken before the trigger.
        lead_min: how long the current rates are held after it (persistence nowcast).
        after_min: time simulated after the rain stops.
        resolution: cell size of warning runs (m): coarse, so that a warning comes in seconds.
        warning_depth_m: depth that makes an area a warning area.
        cooldown_min: no second run within this time of the last one (a storm raises many alerts).
        base: the rest of the run's parameters (DEM, buildings, outlets, drainage, ...).
    """

    model_config = ConfigDict(extra="forbid")

    properties: tuple[str, ...] = ("rainfall_rate", "water_level")
    min_level: str = "yellow"
    lookback_min: float = Field(60.0, gt=0)
    lead_min: float = Field(60.0, ge=0)
    after_min: float = Field(30.0, ge=0)
    resolution: float | None = Field(8.0, gt=0)
    warning_depth_m: float = Field(0.15, gt=0)
    cooldown_min: float = Field(15.0, ge=0)
    base: dict[str, Any] = Field(default_factory=lambda: {"drainage": "3y"})


@dataclass(frozen=True)
class Trigger:
    """What started a warning run."""

    sensor: str
    observed_property: str
    value: float
    level: str
    time: datetime
    lonlat: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sensor": self.sensor, "observed_property": self.observed_property, "value": self.value,
                "level": self.level, "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "location": list(self.lonlat) if self.lonlat else None}

    @classmethod
    def from_event(cls, event: Any) -> Trigger:
        """From a `layers.sensing.alerts.AlertEvent` (its alert's datastream, property, level and opening reading)."""
        a = event.alert
        reading = getattr(a, "opened_by", None)
        when = getattr(reading, "phenomenon_time", None) or getattr(a, "opened_at", None) or datetime.now(
            timezone.utc)
        if isinstance(when, str):
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        if when.tzinfo is not None:
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        loc = getattr(a, "location", None)
        return cls(str(getattr(a, "datastream_id", "")), str(getattr(a, "observed_property", "")),
                   float(getattr(reading, "result", getattr(a, "peak", 0.0)) or 0.0), str(getattr(a, "level", "")),
                   when, (float(loc[0]), float(loc[1])) if loc else None)


@dataclass
class FloodAlert:
    """A published waterlogging warning."""

    id: str
    created: str
    trigger: Trigger
    run: str
    areas: dict[str, Any]
    buildings: list[dict[str, Any]]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "trigger": self.trigger.to_dict(), "run": self.run,
                "summary": self.summary, "buildings": self.buildings,
                "areas": {"type": "FeatureCollection", "features": len(self.areas.get("features", []))}}


def warning_areas(result: FloodResult, depth_m: float) -> dict[str, Any]:
    """GeoJSON (lon/lat) of where the run's maximum depth reaches `depth_m`, with the first time it gets there."""
    import geopandas as gpd
    import rasterio
    import rasterio.features
    import shapely

    with rasterio.open(result.raster_path("max_depth")) as src:
        hmax = src.read(1)
        transform, crs = src.transform, src.crs
    arrival = None
    if (result.root / "time_to_0.15m.tif").is_file():
        with rasterio.open(result.root / "time_to_0.15m.tif") as src:
            arrival = src.read(1)
    mask = np.nan_to_num(hmax) >= depth_m
    if not mask.any():
        return {"type": "FeatureCollection", "features": []}
    from scipy import ndimage

    comp, n = ndimage.label(mask)
    idx = np.arange(1, n + 1)
    peak = ndimage.maximum(np.nan_to_num(hmax), comp, idx)
    first = ndimage.minimum(np.where(np.isfinite(arrival), arrival, np.inf), comp, idx) if arrival is not None \
        else np.full(n, np.inf)
    start = run_start(result)
    geoms, rows = [], []
    for geom, value in rasterio.features.shapes(comp.astype(np.int32), mask=mask, transform=transform,
                                                connectivity=4):
        k = int(value) - 1
        geoms.append(shapely.geometry.shape(geom))
        t = float(first[k])
        rows.append({"peak_depth_m": round(float(peak[k]), 3),
                     "first_at": (start + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")
                     if np.isfinite(t) else None, "first_after_s": t if np.isfinite(t) else None})
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)
    gdf["area_m2"] = gdf.geometry.area.round(1)
    return json.loads(gdf.to_crs(4326).to_json(drop_id=True))


@dataclass
class FloodWarner:
    """Runs warning runs into a runs folder when triggered, at most one at a time, with a cooldown.

    Args:
        runs: the runs folder (`FloodRuns` or its path): where runs and alerts go (what `cim serve --flood`
            publishes).
        gauges: where rain readings come from (`SensingGauges`, `RecordedGauges`).
        params: `WarningParams`.
        store: a layer store for the impacts (read-only is enough); without it alerts hold no buildings.
        publish: called with each alert once written (e.g. to push it to the viewer).
        background: run in a thread (the sensing hook must return quickly); False runs in the caller.
    """

    runs: FloodRuns | Path | str
    gauges: GaugeSource
    params: WarningParams = field(default_factory=WarningParams)
    store: Any = None
    publish: Callable[[FloodAlert], None] | None = None
    background: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _last: float = field(default=-1e18, init=False, repr=False)
    alerts: list[FloodAlert] = field(default_factory=list, init=False)
    threads: list[threading.Thread] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.runs, FloodRuns):
            self.runs = FloodRuns(Path(self.runs))

    def wants(self, trigger: Trigger) -> bool:
        """Whether this trigger starts a run (property, level, cooldown)."""
        p = self.params
        if trigger.observed_property not in p.properties:
            return False
        if trigger.level in LEVELS and LEVELS.index(trigger.level) < LEVELS.index(p.min_level):
            return False
        return time.monotonic() - self._last >= p.cooldown_min * 60.0

    def on_alert(self, event: Any) -> None:
        """The sensing store's alert listener: opened or escalated alerts of the watched properties trigger a run."""
        if getattr(event, "kind", "") not in ("opened", "escalated"):
            return
        trigger = Trigger.from_event(event)
        if not self.wants(trigger):
            return
        self._last = time.monotonic()
        if self.background:
            th = threading.Thread(target=self._safe, args=(trigger,), name="cim-flood-warning", daemon=True)
            self.threads.append(th)
            th.start()
        else:
            self.run(trigger)

    def _safe(self, trigger: Trigger) -> None:
        try:
            self.run(trigger)
        except Exception:  # a failed warning run must not take the sensing listener down; it is logged
            log.exception("warning run for %s failed", trigger)

    def run(self, trigger: Trigger, progress: Callable[[str, int, int], None] | None = None) -> FloodAlert:
        """Run the model from the readings around the trigger and publish the alert."""
        from cim.analysis.flood.impacts import flood_impacts

        p = self.params
        with self._lock:
            self._last = time.monotonic()
            start = trigger.time - timedelta(minutes=p.lookback_min)
            values = {"resolution": p.resolution, "output_interval_min": 10.0, **p.base, "start": start,
                      "gauge_hold_min": p.lead_min, "duration_min": p.lookback_min + p.lead_min + p.after_min}
            params = FloodParams.build(**values)
            runs: FloodRuns = self.runs  # type: ignore[assignment]
            out = runs.new_path("warning")
            result = run_flood(params, out, gauges=self.gauges, progress=progress)
            areas = warning_areas(result, p.warning_depth_m)
            buildings: list[dict[str, Any]] = []
            summary: dict[str, Any] = {"warning_areas": len(areas["features"]),
                                       "warning_area_m2": float(sum(f["properties"]["area_m2"]
                                                                    for f in areas["features"])),
                                       "max_depth_m": result.report["statistics"]["max_depth_m"]}
            if self.store is not None:
                imp = flood_impacts(result, self.store)
                hit = imp.buildings[imp.buildings["affected"]]
                buildings = [{"id": r.id, "address": r.address, "max_depth_m": float(r.max_depth_m),
                              "time_to_0_15m_s": None if np.isnan(r.time_to_0_15m_s) else float(r.time_to_0_15m_s),
                              "nearest_dry_shelter": r.nearest_dry_shelter} for r in hit.itertuples()]
                summary |= imp.summary
                imp.write(result.root / "impacts")
            alert = FloodAlert(out.name, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), trigger,
                               out.name, areas, buildings, summary)
            (result.root / "warning_areas.geojson").write_text(json.dumps(areas, ensure_ascii=False),
                                                               encoding="utf-8")
            (result.root / "alert.json").write_text(json.dumps({**alert.to_dict(), "areas": areas},
                                                               ensure_ascii=False, indent=1), encoding="utf-8")
            self.alerts.append(alert)
        if self.publish is not None:
            self.publish(alert)
        return alert


def read_alerts(runs: FloodRuns) -> list[dict[str, Any]]:
    """The alerts of a runs folder (alert.json beside each warning run), newest first."""
    out = []
    for run_id in runs.ids():
        path = runs.root / run_id / "alert.json"
        if path.is_file():
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out
