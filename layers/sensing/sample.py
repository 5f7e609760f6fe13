"""The sample city's sensors as SensorThings entities, ready for `layers.sensing.simulate`.

`seed_sample_city(sensing)` reads the layer store the sensing store lives in and creates, once (Things carry a
`code` property, and those already present are kept):

- a **water-level station** (`water_level`, m) for every feature of the `sensors` layer (御河N号水位站), at its
  place, with the layer's security level and thresholds around its warning level (blue 0.4 m below it, yellow
  0.2 m below, orange at it, red 0.3 m above);
- six **rain gauges** (`rainfall_rate`, mm/h; public) spread over the city's extent, thresholds 10/20/35/50 mm/h
  (short-duration heavy rain is 20 mm/h and more in Chinese forecasting practice);
- a **settlement point** (`settlement`, mm; internal) at each of the six tallest buildings of `buildings`, thresholds
  10/20/30/40 mm.

Each Thing keeps its simulation parameters in `properties.simulation`, so a simulator that only reaches the
server (`cim sensors simulate --server`) finds them with `GET /sta/v1.1/Things` (`SAMPLE_QUERY`, `sim_sensors`).
ObservedProperty definitions are CF standard names where one exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layers.errors import LayerNotFoundError
from layers.sensing.entities import OM_MEASUREMENT
from layers.sensing.simulate import SimSensor

WATER_LEVEL = ("water_level", "http://vocab.nerc.ac.uk/standard_name/water_surface_height_above_reference_datum/",
               "水位 (water surface height above the 1985 national height datum)")
RAINFALL = ("rainfall_rate", "http://vocab.nerc.ac.uk/standard_name/rainfall_rate/", "降雨强度 (rainfall intensity)")
SETTLEMENT = ("settlement", "urn:cim:property:settlement", "累计沉降 (cumulative settlement of a building)")
UNITS = {"water_level": ("metre", "m", "http://qudt.org/vocab/unit/M"),
         "rainfall_rate": ("millimetre per hour", "mm/h", "http://qudt.org/vocab/unit/MilliM-PER-HR"),
         "settlement": ("millimetre", "mm", "http://qudt.org/vocab/unit/MilliM")}


SAMPLE_QUERY = {"$filter": "properties/sample eq true", "$top": "10000", "$select": "id,properties",
                "$expand": "Datastreams($select=id;$expand=ObservedProperty($select=name)),Locations($select=location)"}


def sim_sensors(things: list[dict[str, Any]]) -> list[SimSensor]:
    """The `SimSensor`s of sample Things as `GET /sta/v1.1/Things` answers with `SAMPLE_QUERY` (from a store or a
    server: the simulation parameters travel in each Thing's `properties.simulation`)."""
    out = []
    for t in things:
        sim, ds, locs = t["properties"].get("simulation"), t.get("Datastreams") or [], t.get("Locations") or []
        if not sim or not ds or not locs:
            continue
        lon, lat = locs[0]["location"]["coordinates"][:2]
        out.append(SimSensor(ds[0]["@iot.id"], ds[0]["ObservedProperty"]["name"], float(lon), float(lat),
                             index=int(sim["index"]), base=float(sim.get("base", 0.0)),
                             peak=float(sim.get("peak", 0.0)), downstream_km=float(sim.get("downstream_km", 0.0)),
                             extra={k: v for k, v in sim.items() if k == "since"}))
    return sorted(out, key=lambda x: x.index)


def _existing(sensing: Any) -> dict[str, int]:
    """code -> Datastream id of the sample Things already present."""
    doc = sensing.get("Things", SAMPLE_QUERY)
    return {t["properties"]["code"]: t["Datastreams"][0]["@iot.id"] for t in doc["value"] if t.get("Datastreams")}


def _ref_or_new(sensing: Any, es: str, name: str, doc: dict[str, Any]) -> dict[str, Any]:
    found = sensing.get(es, {"$filter": f"name eq '{name}'", "$select": "id", "$top": "1"})["value"]
    return {"@iot.id": found[0]["@iot.id"]} if found else doc


def _thing(sensing: Any, code: str, name: str, kind: tuple[str, str, str], lon: float, lat: float,
           security: str, thresholds: dict[str, float], sensor: tuple[str, str], extra: dict[str, Any],
           simulation: dict[str, float]) -> int:
    prop, definition, description = kind
    unit = UNITS[prop]
    body = {
        "name": name, "description": description,
        "properties": {"code": code, "sample": True, "security": security, **extra, "simulation": simulation},
        "Locations": [{"name": name, "description": f"{name} 位置", "encodingType": "application/geo+json",
                       "location": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]}}],
        "Datastreams": [{
            "name": f"{name} {prop}", "description": description, "observationType": OM_MEASUREMENT,
            "unitOfMeasurement": {"name": unit[0], "symbol": unit[1], "definition": unit[2]},
            "properties": {"thresholds": thresholds},
            "Sensor": _ref_or_new(sensing, "Sensors", sensor[0], {"name": sensor[0], "description": sensor[1],
                                                                  "encodingType": "text/html", "metadata": ""}),
            "ObservedProperty": _ref_or_new(sensing, "ObservedProperties", prop,
                                            {"name": prop, "definition": definition, "description": description})}]}
    created = sensing.create("Things", body)
    return int(sensing.get(f"Things({created.id})/Datastreams", {"$select": "id"})["value"][0]["@iot.id"])


def _since(sensing: Any) -> float:
    """When the sample's settlement monitoring began (seconds since the simulation's EPOCH): at the first seeding,
    remembered in the settlement Things' properties."""
    from layers.sensing.simulate import seconds
    from layers.sensing.values import now_utc

    doc = sensing.get("Things", {"$filter": "properties/code eq 'ST01'", "$select": "properties", "$top": "1"})
    if doc["value"] and "since" in (doc["value"][0]["properties"].get("simulation") or {}):
        return float(doc["value"][0]["properties"]["simulation"]["since"])
    return float(np.floor(seconds([now_utc()])[0] / 3600) * 3600)


def seed_sample_city(sensing: Any, *, gauges: int = 6, settlement_points: int = 6) -> list[SimSensor]:
    """Create the sample city's sensors (see the module docstring) in an open, writable `SensingStore` whose store
    holds the sample layers; returns them as `SimSensor`s (also those created by an earlier call).

    Raises:
        LayerNotFoundError: the store has no `sensors` layer (import the sample city's layers first).
    """
    import shapely

    store = sensing.layer_store
    have = _existing(sensing)
    since = _since(sensing)
    st = store.info("sensors")
    stations = store.query("sensors").sort_values("sensor_id").reset_index(drop=True)
    ys = stations.geometry.y.to_numpy()
    down_km = (ys.max() - ys) * 111.0  # distance downstream from the first station (the river runs north-south)
    for i, row in stations.iterrows():
        code, warning = str(row["sensor_id"]), float(row["warning_level_m"])
        if code in have:
            continue
        thr = {"blue": round(warning - 0.4, 2), "yellow": round(warning - 0.2, 2), "orange": round(warning, 2),
               "red": round(warning + 0.3, 2), "hysteresis": 0.02}
        # calm water 1 m below the warning level (the layer's level is one moment of a flood season); the design
        # storm takes a station 0.2 m above it
        sim = {"index": int(i), "base": round(warning - 1.0, 2), "peak": round(warning + 0.2, 2),
               "downstream_km": round(float(down_km[i]), 3)}
        _thing(sensing, code, str(row["name"]), WATER_LEVEL, row.geometry.x, row.geometry.y, st.security, thr,
               ("雷达水位计", "radar water-level gauge"),
               {"river": str(row.get("river", "")), "warning_level_m": warning}, sim)
    extents = [i.extent for i in store.list() if i.extent]
    xmin, ymin = min(e[0] for e in extents), min(e[1] for e in extents)
    xmax, ymax = max(e[2] for e in extents), max(e[3] for e in extents)
    cols = max(1, (gauges + 1) // 2)
    for k in range(gauges):
        code, name = f"RG{k + 1:02d}", f"雨量站{k + 1}号"
        if code in have:
            continue
        cx = xmin + (xmax - xmin) * (k % cols + 0.5) / cols
        cy = ymin + (ymax - ymin) * (k // cols + 0.5) / 2
        _thing(sensing, code, name, RAINFALL, cx, cy, "public",
               {"blue": 10, "yellow": 20, "orange": 35, "red": 50, "hysteresis": 1},
               ("翻斗式雨量计", "tipping-bucket rain gauge"), {}, {"index": 100 + k})
    try:
        buildings = store.query("buildings", fields=["code", "name", "height"])
    except LayerNotFoundError:  # a store without buildings has no settlement points
        buildings = None
    if buildings is not None and len(buildings):
        top = buildings.sort_values(["height", "code"], ascending=[False, True]).head(settlement_points)
        points = shapely.point_on_surface(top.geometry.to_numpy())
        for k, (row, pt) in enumerate(zip(top.itertuples(), points, strict=True)):
            code, name = f"ST{k + 1:02d}", f"沉降监测点{k + 1}号 ({row.name or row.code})"
            if code in have:
                continue
            rng = np.random.default_rng(1000 + k)
            # cumulative settlement when monitoring began, and its rate (mm/day): the first point reaches blue
            # (10 mm) about two days after the city is seeded
            sim = {"index": 200 + k, "base": 9.9 if k == 0 else round(float(rng.uniform(3, 8)), 2),
                   "peak": 0.05 if k == 0 else round(float(rng.uniform(0.01, 0.05)), 3), "since": since}
            _thing(sensing, code, name, SETTLEMENT, pt.x, pt.y, "internal",
                   {"blue": 10, "yellow": 20, "orange": 30, "red": 40},
                   ("静力水准仪", "hydrostatic levelling cell"), {"building": row.code}, sim)
    return sim_sensors(sensing.get("Things", SAMPLE_QUERY)["value"])


__all__ = ["RAINFALL", "SAMPLE_QUERY", "SETTLEMENT", "WATER_LEVEL", "seed_sample_city", "sim_sensors"]
