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

from cim.crs import transformer
from layers import LayerStore, open_read_only
from tiles import pbf
from tiles.mvt import MvtOptions, PointIndex, VectorTileLayer, encode_points, morton, web_mercator

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
