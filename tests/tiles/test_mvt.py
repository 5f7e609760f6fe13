"""MVT cutting in `tiles.mvt`: the numpy point encoder against independent references.

References: `mapbox-vector-tile` decodes every tile; pyproj projects the expected points; DuckDB's own `ST_AsMVT`
encodes the same tile for the byte-level comparison of values and ids.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import numpy as np
import pyarrow as pa
import pytest
import shapely
import shapely.affinity
import shapely.geometry

from cim.sources.crs import transformer
from layers import LayerStore, open_read_only
from tiles import pbf
from tiles.mvt import (
    MvtOptions,
    PointIndex,
    Rings,
    ShapeIndex,
    VectorTileLayer,
    encode_features,
    encode_points,
    morton,
    tile_geometries,
    web_mercator,
)

WMQ = morecantile.tms.get("WebMercatorQuad")
LON0, LAT0 = 113.30, 40.09


# ----------------------------------------------------------------------------------------------------- protobuf


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def test_varints_match_the_protobuf_rule() -> None:
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**35 + 7, 2**63 + 5], dtype=np.uint64)
    data, lengths = pbf.assemble([pbf.varints(values)])
    assert data.tobytes() == b"".join(_varint(int(v)) for v in values)
    assert lengths.tolist() == [len(_varint(int(v))) for v in values]
    assert pbf.zigzag(np.array([0, -1, 1, -2, 2**40, -(2**40)])).tolist() == [0, 1, 2, 3, 2**41, 2**41 - 1]
    # negative int64 values are written as 10-byte two's complement, as protobuf's int64 is
    data, _ = pbf.assemble([pbf.varints(np.array([-1], dtype=np.int64))])
    assert data.tobytes() == _varint(2**64 - 1) and len(data) == 10


def test_assemble_interleaves_strings_and_skips_absent_fields() -> None:
    words = ["", "a", "长安街", "xyz" * 50]
    raw = [w.encode() for w in words]
    offsets = np.cumsum([0] + [len(r) for r in raw])
    present = np.array([True, False, True, True])
    body = pbf.strings(np.frombuffer(b"".join(raw), dtype=np.uint8), offsets)
    data, lengths = pbf.assemble([pbf.const(b"\x0a", 4, present), pbf.varints(body.lengths, present), body,
                                  pbf.fixed(np.array([1.5, -2, 3, 4], dtype=np.float32))])
    expected = [(b"\x0a" + _varint(len(r)) if p else b"") + r + np.float32(f).tobytes()
                for r, p, f in zip(raw, present, [1.5, -2, 3, 4])]
    assert data.tobytes() == b"".join(expected)
    assert lengths.tolist() == [len(e) for e in expected]


# ---------------------------------------------------------------------------------------------- point encoder


def test_encode_points_decodes_with_every_property_type() -> None:
    props = pa.table({
        "name": pa.array(["甲", None, "丙", "甲"]),
        "floors": pa.array([1, -3, None, 2**40], type=pa.int64()),
        "ratio": pa.array([0.5, 0.25, 1.0, None], type=pa.float32()),
        "height": pa.array([3.3, None, 1e10, -7.125], type=pa.float64()),
        "open": pa.array([True, False, None, True]),
    })
    fid = np.array([7, 0, 300, 2**33], dtype=np.int64)
    px, py = np.array([0, 4096, -64, 100]), np.array([0, 17, 4160, 4000])
    tile = encode_points("地名", fid, px, py, props, 4096)
    layer = mapbox_vector_tile.decode(tile, default_options={"y_coord_down": True})["地名"]
    assert layer["extent"] == 4096 and layer["version"] == 2
    got = {f["id"]: f for f in layer["features"]}
    assert sorted(got) == sorted(fid.tolist())
    rows = props.to_pylist()
    for i, f in enumerate(fid.tolist()):
        assert got[f]["geometry"] == {"type": "Point", "coordinates": [int(px[i]), int(py[i])]}
        assert got[f]["properties"] == pytest.approx({k: v for k, v in rows[i].items() if v is not None})
    # values are shared within a property: "甲" is stored once
    assert tile.count("甲".encode()) == 1


def test_morton_keys_nest_tiles_in_contiguous_ranges() -> None:
    rng = np.random.default_rng(3)
    col, row = rng.integers(0, 2**24, 1000), rng.integers(0, 2**24, 1000)
    keys = morton(col, row)
    for z in (0, 5, 12, 23):
        s = 2 * (24 - z)
        assert np.array_equal(keys >> np.uint64(s), morton(col >> (24 - z), row >> (24 - z)))
    assert morton(np.array([1, 0, 1]), np.array([0, 1, 1])).tolist() == [1, 2, 3]


# ------------------------------------------------------------------------------------------ against references


@pytest.fixture(scope="module")
def point_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4,000 clustered points with typed, partly null properties near the sample city."""
    rng = np.random.default_rng(11)
    n = 4000
    xy = np.array([LON0, LAT0]) + rng.normal(0, 0.004, (n, 2))
    xy[:50] = [LON0 + 0.001, LAT0 + 0.001]  # a stack of identical points
    gdf = gpd.GeoDataFrame({
        "名称": [f"点{i}" if i % 7 else None for i in range(n)],
        "kind": np.array(["school", "park", "clinic"])[rng.integers(0, 3, n)],
        "capacity": rng.integers(-5, 900, n),
        "score": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
    }, geometry=shapely.points(xy), crs="EPSG:4490")
    d = tmp_path_factory.mktemp("mvt")
    gdf.to_parquet(d / "points.parquet")
    with LayerStore(d / "city.duckdb") as s:
        s.import_file(d / "points.parquet", "pois", theme="public_topics", security="public")
    return d / "city.duckdb"


def _expected(store: Path, t: morecantile.Tile, options: MvtOptions) -> dict[int, tuple[int, int, dict]]:
    """fid -> (px, py, properties) of the points inside the buffered tile, projected by pyproj."""
    with open_read_only(store) as s:
        gdf = s.query("pois")
    x, y = transformer("EPSG:4326", "EPSG:3857").transform(gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy())
    b = WMQ.xy_bounds(t)
    size = b.right - b.left
    pad = size * options.buffer / options.extent
    inside = (x >= b.left - pad) & (x <= b.right + pad) & (y >= b.bottom - pad) & (y <= b.top + pad)
    out = {}
    for i in np.flatnonzero(inside):
        row = gdf.iloc[i]
        props = {k: row[k] for k in ("名称", "kind", "capacity", "score") if not _null(row[k])}
        out[int(row["fid"])] = ((x[i] - b.left) / size * options.extent, (b.top - y[i]) / size * options.extent, props)
    return out


def _null(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


@pytest.mark.parametrize("z", [12, 14, 16, 18, 22])
def test_point_tiles_hold_exactly_the_points_of_the_buffered_tile(point_store: Path, z: int) -> None:
    options = MvtOptions(max_features=100_000)
    t = WMQ.tile(LON0 + 0.001, LAT0 + 0.001, z)
    expected = _expected(point_store, t, options)
    with open_read_only(point_store) as s:
        tile = VectorTileLayer.from_store(s, "pois", options).tile(t.z, t.x, t.y)
    assert tile.features == len(expected) > 0
    feats = mapbox_vector_tile.decode(tile.content, default_options={"y_coord_down": True})["pois"]["features"]
    assert len(feats) == len(expected)
    for f in feats:
        ex, ey, props = expected[f["id"]]
        gx, gy = f["geometry"]["coordinates"]
        assert abs(gx - ex) <= 0.5 + 1e-6 and abs(gy - ey) <= 0.5 + 1e-6
        assert f["properties"] == pytest.approx(props)


def test_tiles_across_the_grid_agree_with_a_brute_force_selection(point_store: Path) -> None:
    options = MvtOptions(max_features=100_000)
    with open_read_only(point_store) as s:
        layer = VectorTileLayer.from_store(s, "pois", options)
        index = PointIndex.from_layer(layer)
        for z in (13, 15, 17):
            centre = WMQ.tile(LON0, LAT0, z)
            for dx in range(-2, 3):
                for dy in range(-2, 3):
                    t = morecantile.Tile(centre.x + dx, centre.y + dy, z)
                    b = WMQ.xy_bounds(t)
                    pad = (b.right - b.left) * options.buffer / options.extent
                    box = (b.left - pad, b.bottom - pad, b.right + pad, b.top + pad)
                    got = np.sort(index.select(t.z, t.x, t.y, box))
                    brute = np.flatnonzero((index.x >= box[0]) & (index.x <= box[2]) & (index.y >= box[1])
                                           & (index.y <= box[3]))
                    assert np.array_equal(got, brute), (t, len(got), len(brute))
    x, y = web_mercator(np.array([LON0]), np.array([LAT0]))
    px, py = transformer("EPSG:4326", "EPSG:3857").transform(LON0, LAT0)
    assert abs(x[0] - px) < 1e-6 and abs(y[0] - py) < 1e-6


def test_dense_tiles_keep_every_nth_feature_by_fid(point_store: Path) -> None:
    t = WMQ.tile(LON0, LAT0, 12)
    with open_read_only(point_store) as s:
        full = VectorTileLayer.from_store(s, "pois", MvtOptions(max_features=100_000)).tile(t.z, t.x, t.y)
        capped = VectorTileLayer.from_store(s, "pois", MvtOptions(max_features=300)).tile(t.z, t.x, t.y)
    stride = -(-full.features // 300)
    all_ids = {f["id"] for f in mapbox_vector_tile.decode(full.content)["pois"]["features"]}
    kept = {f["id"] for f in mapbox_vector_tile.decode(capped.content)["pois"]["features"]}
    assert kept == {i for i in all_ids if i % stride == 0} and 0 < capped.features <= 300


def test_point_tiles_carry_the_same_features_as_duckdb_st_asmvt(point_store: Path) -> None:
    """DuckDB's encoder on the same tile, as a second, independent implementation of the format."""
    t = WMQ.tile(LON0 + 0.002, LAT0 - 0.001, 15)
    b = WMQ.xy_bounds(t)
    pad = (b.right - b.left) * 64 / 4096
    with open_read_only(point_store) as s:
        ours = VectorTileLayer.from_store(s, "pois").tile(t.z, t.x, t.y)
        table = s.table_name("pois")
        theirs = s.cursor().execute(f"""
            WITH m AS (SELECT fid, "名称", kind, capacity::BIGINT AS capacity, score,
                              ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true) AS g FROM {table}),
            q AS (SELECT fid, "名称", kind, capacity, score,
                         ST_AsMVTGeom(g, {{'min_x': $l, 'min_y': $b, 'max_x': $r, 'max_y': $t}}::BOX_2D, 4096, 64,
                                      true) AS geom
                  FROM m WHERE ST_X(g) BETWEEN $l - $p AND $r + $p AND ST_Y(g) BETWEEN $b - $p AND $t + $p)
            SELECT ST_AsMVT(q, 'pois', 4096, 'geom', 'fid') FROM q WHERE geom IS NOT NULL""",
            {"l": b.left, "b": b.bottom, "r": b.right, "t": b.top, "p": pad}).fetchone()[0]
    a = {f["id"]: f for f in mapbox_vector_tile.decode(ours.content)["pois"]["features"]}
    d = {f["id"]: f for f in mapbox_vector_tile.decode(bytes(theirs))["pois"]["features"]}
    # DuckDB drops points that round onto the edge of the buffer (-64 or 4160); the MVT spec keeps the buffer
    # inclusive and so do we
    edge = {fid for fid, f in a.items() if {-64, 4160} & set(f["geometry"]["coordinates"])}
    assert d.keys() <= a.keys() and a.keys() - d.keys() <= edge and len(a) > 100
    for fid, f in d.items():
        assert a[fid]["properties"] == pytest.approx(f["properties"])
        assert np.abs(np.subtract(a[fid]["geometry"]["coordinates"], f["geometry"]["coordinates"])).max() <= 1


# --------------------------------------------------------------------------------------------- lines and polygons


def _commands(tile: bytes) -> dict[int, tuple[int, list[list[tuple[int, int]]]]]:
    """fid -> (GeomType, parts as lists of points) read straight from the command stream (MVT 2.1, 4.3)."""
    from mapbox_vector_tile.Mapbox import vector_tile_pb2

    msg = vector_tile_pb2.tile()
    msg.ParseFromString(tile)
    out = {}
    for f in msg.layers[0].features:
        words, i, x, y, parts = list(f.geometry), 0, 0, 0, []
        while i < len(words):
            cmd, count = words[i] & 7, words[i] >> 3
            i += 1
            if cmd == 7:
                assert count == 1
                continue
            for _ in range(count):
                dx, dy = (words[i] >> 1) ^ -(words[i] & 1), (words[i + 1] >> 1) ^ -(words[i + 1] & 1)
                x, y, i = x + dx, y + dy, i + 2
                if cmd == 1:
                    parts.append([])
                parts[-1].append((x, y))
        out[f.id] = (f.type, parts)
    return out


def _surveyor(ring: list[tuple[int, int]]) -> float:
    xy = np.array(ring, dtype=float)
    x, y = xy[:, 0], xy[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)) / 2


def _check_rings(parts: list[list[tuple[int, int]]]) -> None:
    """Every ring has 3+ distinct points and no repeats; the first ring is exterior (positive area)."""
    assert _surveyor(parts[0]) > 0
    for ring in parts:
        assert len(ring) >= 3 and _surveyor(ring) != 0
        assert all(a != b for a, b in zip(ring, ring[1:] + ring[:1]))


def test_polygon_commands_follow_the_spec_winding_and_drop_collapsed_shapes() -> None:
    b = morecantile.BoundingBox(0.0, -4096.0, 4096.0, 0.0)  # tile units = metres, y flipped by the transform
    geoms = shapely.from_wkt([
        # a courtyard building drawn clockwise with a clockwise hole (in y-up metres)
        ("POLYGON((100 -100, 100 -300, 300 -300, 300 -100, 100 -100), "
         "(150 -150, 250 -150, 250 -250, 150 -250, 150 -150))"),
        ("MULTIPOLYGON(((1000 -1000, 1100 -1000, 1100 -1100, 1000 -1000)), ((2000 -2000, 2100 -2000, 2100 -2100, "
         "2000 -2100, 2000 -2000), (2020 -2020, 2020 -2080, 2080 -2080, 2020 -2020)))"),
        "POLYGON((500 -500, 500.3 -500, 500.3 -500.2, 500 -500))",  # smaller than a unit
        "POLYGON((10.2 -10.2, 10.4 -10.2, 20.3 -10.2, 20.3 -20.4, 10.2 -20.4, 10.2 -10.2))",  # repeats once rounded
        # a U whose slot is narrower than a unit: rounding closes it into a spike, which must be repaired away
        "POLYGON((600 -600, 610 -600, 610 -610, 605.3 -610, 605.3 -601, 604.9 -601, 604.9 -610, 600 -610, 600 -600))",
    ])
    kept, data, lengths = tile_geometries(Rings.of(geoms), 3, b, 4096)
    assert kept.tolist() == [0, 1, 3, 4]
    segment = pbf.Segment(lengths, data=data, offsets=np.cumsum(lengths) - lengths)
    tile = encode_features("b", np.array([1, 2, 4, 5]), 3, [segment], pa.table({"h": [1.5, 2.5, 4.5, 5.5]}), 4096)
    raw = _commands(tile)
    court, multi, small = raw[1][1], raw[2][1], raw[4][1]
    assert len(raw[5][1]) == 1 and _surveyor(raw[5][1][0]) == 100
    _check_rings(raw[5][1])
    assert raw[1][0] == 3 and len(court) == 2 and _surveyor(court[1]) < 0
    _check_rings(court)
    assert [round(_surveyor(r)) for r in multi] == [5000, 10000, -1800]
    assert len(small) == 1 and _surveyor(small[0]) == 100
    decoded = mapbox_vector_tile.decode(tile, default_options={"y_coord_down": True})["b"]["features"]
    shapes = {f["id"]: shapely.geometry.shape(f["geometry"]) for f in decoded}
    assert shapes[1].area == 200 * 200 - 100 * 100 and shapes[2].geom_type == "MultiPolygon"
    assert all(shapely.is_valid(g) for g in shapes.values())
    assert {f["id"]: f["properties"]["h"] for f in decoded} == {1: 1.5, 2: 2.5, 4: 4.5, 5: 5.5}


def test_line_commands_keep_parts_and_drop_points() -> None:
    b = morecantile.BoundingBox(0.0, -4096.0, 4096.0, 0.0)
    geoms = shapely.from_wkt([
        "MULTILINESTRING((0 0, 10 -10, 10.2 -10.1, 30 -10), (100 -100, 100.2 -100.1), (200 -200, 200 -300))",
        "LINESTRING(5 -5, 5.1 -5.2)",  # one distinct point once rounded
    ])
    kept, data, lengths = tile_geometries(Rings.of(geoms), 2, b, 4096)
    assert kept.tolist() == [0]
    segment = pbf.Segment(lengths, data=data, offsets=np.cumsum(lengths) - lengths)
    raw = _commands(encode_features("r", np.array([9]), 2, [segment], [], 4096))
    assert raw == {9: (2, [[(0, 0), (10, 10), (30, 10)], [(200, 200), (200, 300)]])}


def _buildings(n: int, seed: int) -> gpd.GeoDataFrame:
    """n rotated building footprints near the sample city, a quarter with courtyards, some as two-part
    MultiPolygons, plus a park crossing many tiles and a kiosk smaller than a unit at z16."""
    rng = np.random.default_rng(seed)
    cx = LON0 + rng.normal(0, 0.004, n)
    cy = LAT0 + rng.normal(0, 0.003, n)
    w, h = rng.uniform(0.00005, 0.0003, n), rng.uniform(0.00005, 0.0003, n)
    geoms = []
    for i in range(n):
        outer = shapely.box(cx[i] - w[i] / 2, cy[i] - h[i] / 2, cx[i] + w[i] / 2, cy[i] + h[i] / 2)
        if i % 4 == 0:
            court = shapely.box(cx[i] - w[i] / 5, cy[i] - h[i] / 5, cx[i] + w[i] / 5, cy[i] + h[i] / 5)
            outer = outer.difference(court)
        g = shapely.affinity.rotate(outer, float(rng.uniform(0, 90)))
        if i % 9 == 0:
            g = shapely.MultiPolygon([g, shapely.affinity.translate(g, w[i] * 1.5, 0)])
        geoms.append(g)
    geoms.append(shapely.Polygon([(LON0 - 0.006, LAT0 - 0.004), (LON0 + 0.007, LAT0 - 0.005),
                                  (LON0 + 0.005, LAT0 + 0.006), (LON0 - 0.004, LAT0 + 0.003)]))
    geoms.append(shapely.box(LON0 + 0.0001, LAT0 + 0.0001, LON0 + 0.0001 + 1e-7, LAT0 + 0.0001 + 1e-7))
    m = len(geoms)
    return gpd.GeoDataFrame({
        "name": [f"楼{i}" if i % 5 else None for i in range(m)],
        "height": rng.uniform(3, 90, m).round(1),
        "floors": rng.integers(1, 30, m),
    }, geometry=geoms, crs="EPSG:4490")


def _roads(n: int, seed: int) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    geoms = []
    for i in range(n):
        start = np.array([LON0, LAT0]) + rng.normal(0, 0.004, 2)
        steps = rng.normal(0, 0.001, (int(rng.integers(2, 12)), 2))
        line = shapely.LineString(start + np.cumsum(np.vstack([[0, 0], steps]), axis=0))
        geoms.append(shapely.MultiLineString([line, shapely.affinity.translate(line, 0.0005, 0)]) if i % 7 == 0
                     else line)
    return gpd.GeoDataFrame({"kind": np.array(["primary", "residential"])[np.arange(n) % 2],
                             "lanes": np.arange(n) % 4}, geometry=geoms, crs="EPSG:4490")


@pytest.fixture(scope="module")
def shape_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mvt_shapes")
    _buildings(1500, 5).to_parquet(d / "buildings.parquet")
    _roads(300, 6).to_parquet(d / "roads.parquet")
    with LayerStore(d / "city.duckdb") as s:
        s.import_file(d / "buildings.parquet", "buildings", theme="public_topics", security="public")
        s.import_file(d / "roads.parquet", "roads", theme="public_topics", security="public")
    return d / "city.duckdb"


def _reference(store: Path, name: str, t: morecantile.Tile, options: MvtOptions) -> dict[int, shapely.Geometry]:
    """fid -> the source geometry projected by pyproj, clipped to the buffered tile by shapely, in tile units."""
    with open_read_only(store) as s:
        gdf = s.query(name)
    to_merc = transformer("EPSG:4326", "EPSG:3857")
    merc = shapely.transform(gdf.geometry.values._data if hasattr(gdf.geometry.values, "_data") else
                             np.asarray(gdf.geometry), lambda c: np.column_stack(to_merc.transform(c[:, 0], c[:, 1])))
    b = WMQ.xy_bounds(t)
    size = b.right - b.left
    pad = size * options.buffer / options.extent
    box = shapely.box(b.left - pad, b.bottom - pad, b.right + pad, b.top + pad)
    meets = shapely.intersects(merc, box)
    clipped = shapely.clip_by_rect(merc[meets], *box.bounds)
    units = shapely.transform(clipped, lambda c: np.column_stack([(c[:, 0] - b.left) / size * options.extent,
                                                                   (b.top - c[:, 1]) / size * options.extent]))
    return dict(zip(gdf["fid"].to_numpy()[meets].tolist(), units))


def _decoded(tile: bytes, name: str) -> dict[int, dict]:
    layer = mapbox_vector_tile.decode(tile, default_options={"y_coord_down": True})[name]
    return {f["id"]: f for f in layer["features"]}


@pytest.mark.parametrize("name,z", [("buildings", 16), ("buildings", 17), ("buildings", 14), ("roads", 14),
                                    ("roads", 16), ("roads", 18)])
def test_shape_tiles_match_a_shapely_clip_of_the_source(shape_store: Path, name: str, z: int) -> None:
    options = MvtOptions(max_features=100_000)
    for dx, dy in ((0.0, 0.0), (0.0012, -0.0007)):
        t = WMQ.tile(LON0 + dx, LAT0 + dy, z)
        reference = _reference(shape_store, name, t, options)
        with open_read_only(shape_store) as s:
            tile = VectorTileLayer.from_store(s, name, options).tile(t.z, t.x, t.y)
        got = _decoded(tile.content, name)
        raw = _commands(tile.content)
        assert tile.features == len(got) > 0 and got.keys() <= reference.keys()
        simplified = z < options.simplify_below_zoom
        tol = 2.0 if simplified else 0.75  # half a unit of rounding per axis (+ one unit of simplification)
        for fid, ref in reference.items():
            if fid not in got:  # only shapes that collapse on the unit grid may be left out
                assert shapely.area(ref) < 4 if name == "buildings" else shapely.length(ref) < 3, fid
                continue
            geom = shapely.geometry.shape(got[fid]["geometry"])
            assert shapely.hausdorff_distance(geom.boundary if name == "buildings" else geom,
                                              ref.boundary if name == "buildings" else ref) <= tol, fid
            if name == "buildings":
                assert shapely.is_valid(geom), fid
                assert abs(geom.area - ref.area) <= tol * ref.length + 2, fid
                assert raw[fid][0] == 3
                _check_rings(raw[fid][1])
            else:
                assert raw[fid][0] == 2 and all(len(set(p)) >= 2 for p in raw[fid][1])
                assert abs(geom.length - ref.length) <= 2 * tol * (shapely.get_num_coordinates(ref) + 1), fid


def test_shape_tiles_carry_the_same_features_as_duckdb_st_asmvt(shape_store: Path) -> None:
    for name, z, fields in (("buildings", 16, '"name", height, floors::BIGINT AS floors'),
                            ("roads", 15, "kind, lanes::BIGINT AS lanes")):
        t = WMQ.tile(LON0 + 0.001, LAT0 - 0.0005, z)
        b = WMQ.xy_bounds(t)
        pad = (b.right - b.left) * 64 / 4096
        with open_read_only(shape_store) as s:
            ours = VectorTileLayer.from_store(s, name).tile(t.z, t.x, t.y)
            theirs = s.cursor().execute(f"""
                WITH m AS (SELECT fid, {fields},
                                  ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true) AS g
                           FROM {s.table_name(name)}),
                q AS (SELECT * EXCLUDE (g), ST_AsMVTGeom({"ST_Simplify(g, $tol)" if z < 16 else "g"},
                             {{'min_x': $l, 'min_y': $b, 'max_x': $r, 'max_y': $t}}::BOX_2D, 4096, 64, true) AS geom
                      FROM m WHERE ST_Intersects(g, ST_MakeEnvelope($l - $p, $b - $p, $r + $p, $t + $p)))
                SELECT ST_AsMVT(q, 'x', 4096, 'geom', 'fid') FROM q WHERE geom IS NOT NULL""",
                {"l": b.left, "b": b.bottom, "r": b.right, "t": b.top, "p": pad,
                 **({"tol": (b.right - b.left) / 4096} if z < 16 else {})}).fetchone()[0]
        a = _decoded(ours.content, name)
        d = _decoded(bytes(theirs), "x")
        assert len(a) > 20 and len(a.keys() ^ d.keys()) <= 2, (name, a.keys() ^ d.keys())
        for fid in a.keys() & d.keys():
            assert a[fid]["properties"] == pytest.approx(d[fid]["properties"])
            ga, gd = shapely.geometry.shape(a[fid]["geometry"]), shapely.geometry.shape(d[fid]["geometry"])
            # DuckDB rounds before it clips, so shapes cut by the buffer edge at a shallow angle may end a few
            # units apart along that edge: compare areas, and lines away from the edge
            if name == "buildings":
                assert shapely.symmetric_difference(ga, gd).area <= ga.length + 4, (name, fid)
            else:
                ga, gd = shapely.clip_by_rect([ga, gd], -32, -32, 4128, 4128)
                assert ga.is_empty == gd.is_empty and (ga.is_empty or shapely.hausdorff_distance(ga, gd) <= 2.0), fid


def test_shape_index_selects_the_bounding_boxes_meeting_a_box() -> None:
    rng = np.random.default_rng(8)
    x, y = web_mercator(LON0 + rng.normal(0, 0.01, 3000), LAT0 + rng.normal(0, 0.01, 3000))
    size = np.exp(rng.uniform(0, 8, 3000))  # 1 m to 3 km
    geoms = shapely.box(x - size, y - size / 2, x + size / 3, y + size)
    geoms = np.append(geoms, shapely.box(-2e7, -1e7, 2e7, 1e7))  # one feature across the world
    index = ShapeIndex.build(geoms, np.arange(len(geoms)), [])
    b = index.bounds
    for z in (2, 10, 13, 15, 17, 20):
        centre = WMQ.tile(LON0, LAT0, z)
        for dx, dy in ((0, 0), (1, -1), (-2, 1)):
            xb = WMQ.xy_bounds(morecantile.Tile(centre.x + dx, centre.y + dy, z))
            box = (xb.left - 10, xb.bottom - 10, xb.right + 10, xb.top + 10)
            got = np.sort(index.select(box))
            brute = np.flatnonzero((b[:, 2] >= box[0]) & (b[:, 0] <= box[2]) & (b[:, 3] >= box[1])
                                   & (b[:, 1] <= box[3]))
            assert np.array_equal(got, brute), (z, dx, dy)


def test_dense_shape_tiles_keep_every_nth_feature_by_fid(shape_store: Path) -> None:
    t = WMQ.tile(LON0, LAT0, 13)
    with open_read_only(shape_store) as s:
        full = VectorTileLayer.from_store(s, "buildings", MvtOptions(max_features=100_000)).tile(t.z, t.x, t.y)
        capped = VectorTileLayer.from_store(s, "buildings", MvtOptions(max_features=200)).tile(t.z, t.x, t.y)
        met = VectorTileLayer.from_store(s, "buildings")
        rows = met.workspace.shapes(met).select(_buffered(t))
    all_ids = set(_decoded(full.content, "buildings"))
    kept = set(_decoded(capped.content, "buildings"))
    stride = -(-len(rows) // 200)  # every bounding box here meets the buffered tile, so all of them count
    assert stride > 1 and kept == {i for i in all_ids if i % stride == 0} and 0 < capped.features <= 200


def _buffered(t: morecantile.Tile) -> tuple[float, float, float, float]:
    b = WMQ.xy_bounds(t)
    pad = (b.right - b.left) * 64 / 4096
    return b.left - pad, b.bottom - pad, b.right + pad, b.top + pad


def test_multipoint_layers_still_take_the_duckdb_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    parts = [shapely.MultiPoint(np.array([LON0, LAT0]) + rng.normal(0, 0.002, (3, 2))) for _ in range(40)]
    gpd.GeoDataFrame({"n": np.arange(40)}, geometry=parts, crs="EPSG:4490").to_parquet(tmp_path / "mp.parquet")
    with LayerStore(tmp_path / "city.duckdb") as s:
        s.import_file(tmp_path / "mp.parquet", "clusters", theme="public_topics", security="public")
    t = WMQ.tile(LON0, LAT0, 10)
    with open_read_only(tmp_path / "city.duckdb") as s:
        layer = VectorTileLayer.from_store(s, "clusters")
        tile = layer.tile(t.z, t.x, t.y)
        assert layer.workspace._tables and not layer.workspace._shapes
    got = _decoded(tile.content, "clusters")
    assert tile.features == len(got) == 40
    assert {f["geometry"]["type"] for f in got.values()} == {"MultiPoint"}
    assert sorted(f["properties"]["n"] for f in got.values()) == list(range(40))
