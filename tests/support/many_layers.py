"""A layer store the size of one city's "one map" (2,372 layers in 135 classes), generated in seconds.

Importing 2,372 files through `LayerStore.import_file` takes 5-13 minutes on the 2-core test machine (0.1-0.3 s of
DuckDB statements per import), too long for a test. What the viewer reads of a layer is its catalogue record, so the
store gets a few real layers through the API (`zones` with two versions, `divisions`, `points`) and 135 sub-themes
through `add_theme`; the other layers are catalogue rows written in one statement that point at the `points` table,
the way a rollback's version row points at an older table. Every layer therefore has real features, tiles and
queryables. Titles are Chinese (pinyin filtering), departments vary, one title is unique: `UNIQUE_TITLE`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

LON0, LAT0 = 113.30, 40.09
HALF = 0.004  # degrees: the area is 2 HALF wide, about 680 m x 890 m
UNIQUE_TITLE = "历史文化街区保护范围"  # pinyin initials: lswhjqbhfw
UNIQUE_NAME = "heritage_blocks_1900"
DEPARTMENTS = ["市规划和自然资源局", "市住房和城乡建设局", "市交通运输局", "市水务局", "市应急管理局", "市生态环境局",
               "市文化和旅游局", "市城市管理局", "市公安局", "市统计局"]
WORDS = ["道路", "管线", "绿地", "水系", "建筑", "地块", "设施", "监测点", "规划", "用地", "红线", "控制线"]
COUNTS = (3, 7, 12, 20)  # points per division, south-west, south-east, north-west, north-east


def square(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _geojson(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), "utf-8")
    return path


def quadrants() -> list[tuple[str, tuple[float, float, float, float]]]:
    """The four divisions: name and lon/lat box (south-west, south-east, north-west, north-east)."""
    x0, y0, x1, y1 = LON0 - HALF, LAT0 - HALF, LON0 + HALF, LAT0 + HALF
    return [("sw", (x0, y0, LON0, LAT0)), ("se", (LON0, y0, x1, LAT0)), ("nw", (x0, LAT0, LON0, y1)),
            ("ne", (LON0, LAT0, x1, y1))]


def write_small_layers(store, folder: Path) -> None:  # noqa: ANN001 (a LayerStore)
    """`zones` v1 (the whole area) and v2 (the north-east quadrant only), `divisions` (four quadrants) and `points`
    (`COUNTS` per quadrant, on a grid inside it), all public, near the sample city."""
    x0, y0, x1, y1 = LON0 - HALF, LAT0 - HALF, LON0 + HALF, LAT0 + HALF
    v1 = _geojson(folder / "zones_v1.geojson", [{"type": "Feature", "properties": {"kind": "all", "height_m": 10.0},
                                                  "geometry": square(x0, y0, x1, y1)}])
    v2 = _geojson(folder / "zones_v2.geojson", [{"type": "Feature", "properties": {"kind": "ne", "height_m": 20.0},
                                                  "geometry": square(LON0, LAT0, x1, y1)}])
    store.import_file(v1, "zones", "planning_control/control_lines", title="管控分区", security="public",
                      department=DEPARTMENTS[0])
    store.import_file(v2, "zones", new_version=True)
    divisions = [{"type": "Feature", "properties": {"code": code, "name": f"分区{code}"}, "geometry": square(*box)}
                 for code, box in quadrants()]
    store.import_file(_geojson(folder / "divisions.geojson", divisions), "divisions",
                      "spatiotemporal_base/admin_division", title="行政分区", security="public")
    points = []
    for (code, (a, b, c, d)), n in zip(quadrants(), COUNTS, strict=True):
        for i in range(n):
            fx, fy = (i % 5 + 1) / 6, (i // 5 + 1) / 6
            points.append({"type": "Feature", "properties": {"pid": f"{code}{i}", "value": float(i)},
                           "geometry": {"type": "Point", "coordinates": [a + (c - a) * fx, b + (d - b) * fy]}})
    store.import_file(_geojson(folder / "points.geojson", points), "points", "iot_sensing/environment_monitoring",
                      title="监测点位", security="public", department=DEPARTMENTS[5])


def write_many_layers_store(path: Path, n_layers: int = 2372, n_classes: int = 135) -> Path:
    """A store of `n_layers` layers in `n_classes` classes (see the module docstring)."""
    from layers.store import LayerStore
    from layers.themes import builtin

    folder = path.parent
    tops = [t.path for t in builtin() if "/" not in t.path]
    with LayerStore(path) as store:
        write_small_layers(store, folder)
        classes = []
        for i in range(n_classes):
            top = tops[i % len(tops)]
            store.add_theme(top, f"class_{i:03d}", f"{WORDS[i % len(WORDS)]}专题{i:03d}", f"Class {i:03d}")
            classes.append(f"{top}/class_{i:03d}")
        rows = {"name": [], "title": [], "theme": [], "department": []}
        for i in range(n_layers - 3):
            name = UNIQUE_NAME if i == 1900 else f"layer_{i:04d}"
            title = UNIQUE_TITLE if i == 1900 else f"{WORDS[i % len(WORDS)]}{WORDS[(i // 12) % len(WORDS)]}图层{i:04d}"
            rows["name"].append(name)
            rows["title"].append(title)
            rows["theme"].append(classes[i % n_classes])
            rows["department"].append(DEPARTMENTS[i % len(DEPARTMENTS)])
        cur = store.cursor()
        try:
            cur.register("new_layers", pa.table(rows))
            cur.execute("""INSERT INTO catalogue.versions SELECT n.name, 1, v.table_name, v.operation, v.note,
                           v.created_at, v.source, v.source_format, v.source_crs, v.source_crs_wkt, v.geometry_type,
                           v.feature_count, v.xmin, v.ymin, v.xmax, v.ymax, v.fields, v.key_field, v.repaired,
                           v.rejected FROM new_layers n, catalogue.versions v WHERE v.layer = 'points'""")
            cur.execute("""INSERT INTO catalogue.layers SELECT n.name, n.title, n.theme, 'topic', n.department,
                           'public', l.key_field, 1, l.created_at, l.updated_at, NULL
                           FROM new_layers n, catalogue.layers l WHERE l.name = 'points'""")
            cur.unregister("new_layers")
        finally:
            cur.close()
    return path
