"""LayerStore: import from every format, queries, statistics, versions, drop, export, bad input."""

from __future__ import annotations

import json
from decimal import Decimal

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from pyproj import CRS

from cim.errors import CRSError, InputNotFoundError, OutputExistsError
from layers import LayerStore, geojson_features
from layers.errors import (
    GeometryRejectedError,
    LayerExistsError,
    LayerInputError,
    LayerNotFoundError,
    StoreNotFoundError,
    ThemeNotFoundError,
    VersionNotFoundError,
)
from layers.ingest import FID, hilbert_keys
from layers.sources import GEOM
from tests.support.paths import SHARED_DATA
from tests.support.values import STORE_EXPECTED, assert_json_properties, every_type_layer

SOCIETY = "public_topics/society"
ADMIN = "spatiotemporal_base/admin_division"


def test_projected_gpkg_is_stored_in_cgcs2000_lonlat(store, shelters_gpkg_projected, shelters_4490):
    report = store.import_file(shelters_gpkg_projected, "shelters", SOCIETY, title="应急避难场所",
                               department="应急管理局", security="public")
    assert (report.feature_count, report.repaired, report.rejected) == (60, 0, [])
    assert report.source_crs == "EPSG:4547" and report.geometry_type == "Point"
    gdf = store.query("shelters", order=True)  # fid order = source order (default: the store's Hilbert order)
    assert gdf.crs == CRS.from_epsg(4490)
    expected = shelters_4490.geometry.get_coordinates().to_numpy()
    assert np.allclose(gdf.geometry.get_coordinates().to_numpy(), expected, atol=1e-8)
    info = store.info("shelters")
    assert info.field_names() == ["名称", "capacity", "kind"]
    assert (info.title, info.department, info.security, info.level) == ("应急避难场所", "应急管理局", "public", "topic")
    assert info.extent == pytest.approx(tuple(shelters_4490.total_bounds), abs=1e-8)


def test_every_read_format_gives_the_same_features(store, tmp_path, shelters_4490):
    src = shelters_4490
    paths = {"fgb": tmp_path / "s.fgb", "parquet": tmp_path / "s.parquet", "csv": tmp_path / "s.csv",
             "wkt": tmp_path / "w.csv", "geojson": tmp_path / "s.geojson"}
    src.to_file(paths["fgb"], driver="FlatGeobuf")
    src.to_file(paths["geojson"], driver="GeoJSON")
    src.to_parquet(paths["parquet"])
    df = src.drop(columns="geometry").assign(lon=src.geometry.x, lat=src.geometry.y)
    df.to_csv(paths["csv"], index=False)
    src.drop(columns="geometry").assign(WKT=src.geometry.to_wkt()).to_csv(paths["wkt"], index=False)
    for key, path in paths.items():
        crs = "EPSG:4490" if key in ("csv", "wkt") else None
        store.import_file(path, f"s_{key}", SOCIETY, crs=crs)
        gdf = store.query(f"s_{key}").set_index("名称").loc[src["名称"]]  # FlatGeobuf reorders by its index
        assert len(gdf) == 60, key
        assert np.allclose(gdf.geometry.x, src.geometry.x) and np.allclose(gdf.geometry.y, src.geometry.y), key
        assert list(gdf["capacity"]) == list(src["capacity"]), key


def test_gbk_shapefile_codepage_is_honoured_plain_and_zipped(store, gbk_shapefile, zipped_shapefile):
    store.import_file(gbk_shapefile, "roads", "spatiotemporal_base/electronic_map")
    store.import_file(zipped_shapefile, "roads_zip", "spatiotemporal_base/electronic_map")
    for name in ("roads", "roads_zip"):
        assert sorted(store.query(name)["名称"]) == ["二环路", "长安街"]


def test_invalid_geometries_are_repaired_or_rejected_with_reasons(store, geojson_with_invalid):
    report = store.import_file(geojson_with_invalid, "parcels", ADMIN)
    assert report.read == 4 and report.feature_count == 2 and report.repaired == 1
    reasons = {r.feature: r.reason for r in report.rejected}
    assert set(reasons) == {"3", "4"}
    assert "cannot be repaired" in reasons["3"] and reasons["4"] == "no geometry"
    gdf = store.query("parcels", order=True)
    assert gdf.is_valid.all() and list(gdf["n"]) == ["ok", "bowtie"]
    assert gdf.geometry.iloc[1].geom_type == "MultiPolygon"


def test_bbox_where_fields_limit_offset(store, communities_geojson, shelters_4490, tmp_path):
    p = tmp_path / "s.gpkg"
    shelters_4490.to_file(p)
    store.import_file(p, "shelters", SOCIETY)
    box = (116.30, 39.90, 116.31, 39.91)
    inside = shelters_4490[shelters_4490.intersects(shapely.box(*box))]
    got = store.query("shelters", bbox=box)
    assert sorted(got["名称"]) == sorted(inside["名称"])
    big = store.query("shelters", where="capacity >= 300 AND kind = 'school'", fields=["名称", "CAPACITY"])
    exp = shelters_4490[(shelters_4490.capacity >= 300) & (shelters_4490.kind == "school")]
    assert list(big.columns) == ["fid", "名称", "capacity", "geometry"]
    assert sorted(big["名称"]) == sorted(exp["名称"])
    page = store.query("shelters", limit=5, offset=10)
    assert list(page["fid"]) == list(range(11, 16))
    assert store.count("shelters", bbox=box) == len(inside)
    store.import_file(communities_geojson, "communities", ADMIN)
    polygon_file = tmp_path / "one.geojson"
    gpd.GeoDataFrame(geometry=[shapely.box(*box)], crs="EPSG:4326").to_file(polygon_file)
    assert sorted(store.query("shelters", intersects=polygon_file)["名称"]) == sorted(inside["名称"])


@pytest.mark.parametrize("bbox, message", [
    ((116.31, 39.9, 116.30, 39.91), r"minlon > maxlon.*did you mean 116\.3,39\.9,116\.31,39\.91\?"),
    ((116.30, 39.91, 116.31, 39.90), r"minlat > maxlat.*did you mean 116\.3,39\.9,116\.31,39\.91\?"),
    ((39.9, 116.3, 39.91, 116.31), r"latitude first\? .*: 116\.3,39\.9,116\.31,39\.91$"),
    ((441_000.0, 4_417_000.0, 442_000.0, 4_418_000.0), "look like projected coordinates"),
    ((-190.0, 10.0, 10.0, 20.0), r"longitudes must lie in -180\.\.180"),
    ((116.3, float("nan"), 116.31, 39.91), "four finite numbers"),
    ((116.3, 39.9, 116.31), "four finite numbers"),
])
def test_a_bad_bbox_is_a_clear_error_not_an_empty_frame(store, communities_geojson, bbox, message):
    store.import_file(communities_geojson, "communities", ADMIN)
    assert len(store.query("communities", bbox=(116.302, 39.902, 116.308, 39.908))) == 1  # a good one
    for ask in (lambda: store.query("communities", bbox=bbox), lambda: store.count("communities", bbox=bbox),
                lambda: store.features("communities", bbox=bbox)):
        with pytest.raises(LayerInputError, match=message):
            ask()


def test_nearest_neighbours_match_a_brute_force_in_metres(store, shelters_4490, tmp_path):
    p = tmp_path / "s.fgb"
    shelters_4490.to_file(p)
    store.import_file(p, "shelters", SOCIETY)
    lon, lat = 116.305, 39.905
    got = store.query("shelters", near=(lon, lat), k=5)
    local = shelters_4490.to_crs(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +ellps=GRS80")
    dist = local.distance(shapely.Point(0, 0))
    expected = shelters_4490.loc[dist.sort_values().index[:5], "名称"]
    assert list(got["名称"]) == list(expected)
    assert got["distance_m"].to_numpy() == pytest.approx(dist.sort_values().to_numpy()[:5], rel=1e-6)
    assert len(store.query("shelters", near=(lon, lat), k=1000)) == 60


def test_rtree_index_is_used_by_bbox_and_intersects_queries(store, communities_geojson):
    store.import_file(communities_geojson, "communities", ADMIN)
    assert "RTREE_INDEX_SCAN" in store.explain("communities", bbox=(116.3, 39.9, 116.305, 39.905))
    assert "RTREE_INDEX_SCAN" in store.explain("communities", intersects=shapely.Point(116.301, 39.901),
                                               where="code = 'C00'")
    assert "RTREE_INDEX_SCAN" not in store.explain("communities", where="code = 'C00'")


def test_layer_tables_keep_hilbert_order_and_no_compression_that_slows_row_fetches(store, tmp_path):
    rng = np.random.default_rng(3)
    n = 20_000
    gdf = gpd.GeoDataFrame(
        {"name": [f"场所{i:05d}" for i in range(n)], "kind": rng.choice(["school", "park", "hospital"], n),
         "area": rng.uniform(0, 1000, n).round(2)},
        geometry=shapely.points(rng.uniform(116.3, 116.4, n), rng.uniform(39.9, 40.0, n)), crs="EPSG:4490")
    gdf.to_parquet(tmp_path / "p.parquet")
    store.import_file(tmp_path / "p.parquet", "places", SOCIETY)
    table = store.table_name("places")
    cur = store.cursor()
    cur.execute("CHECKPOINT")  # compression is chosen when the data is written to the file
    used = {r[0] for r in cur.execute(f"SELECT DISTINCT compression FROM pragma_storage_info('{table}')").fetchall()}
    assert used and not used & {"FSST", "DICT_FSST", "Dictionary", "ALP", "ALPRD"}, used
    xy = shapely.get_coordinates(store.query("places", order=False).geometry.array)
    keys = hilbert_keys(xy[:, 0], xy[:, 1], store.info("places").extent)
    assert (np.diff(keys.astype(np.int64)) >= 0).all()


def test_stats_per_division_match_geopandas_sjoin(store, communities_geojson, shelters_4490, tmp_path):
    p = tmp_path / "s.parquet"
    shelters_4490.to_parquet(p)
    store.import_file(p, "shelters", SOCIETY)
    store.import_file(communities_geojson, "communities", ADMIN)
    joined = gpd.sjoin(shelters_4490, gpd.read_file(communities_geojson), predicate="within")
    expected = joined.groupby("name")["capacity"].agg(["count", "sum"])
    result = store.stats("shelters", "communities", field="capacity", agg="sum")
    assert result.label_field == "name"
    got = {r.division: (r.count, r.value) for r in result.rows}
    assert got == {n: (int(c), float(s)) for n, (c, s) in expected.iterrows()}
    counts = store.stats("shelters", "communities")
    assert sum(r.count for r in counts.rows) == 60
    with pytest.raises(LayerInputError, match="not numeric"):
        store.stats("shelters", "communities", field="kind", agg="mean")
    with pytest.raises(LayerInputError, match="divisions must be polygons"):
        store.stats("communities", "shelters")


def test_versions_history_diff_rollback(store, shelters_4490, tmp_path):
    v1 = tmp_path / "v1.gpkg"
    shelters_4490.to_file(v1)
    store.import_file(v1, "shelters", SOCIETY)
    v2 = shelters_4490.copy()
    v2.loc[5, "capacity"] = 9999  # fid 6 changed
    v2.loc[7, "geometry"] = shapely.Point(116.31, 39.91)  # fid 8 moved
    v2 = v2.drop(index=[0, 1])  # fid 1, 2 removed
    v2.index = v2.index + 1  # GeoPackage fids follow the row order, so key on the name instead
    p2 = tmp_path / "v2.gpkg"
    v2.to_file(p2)
    with pytest.raises(LayerExistsError, match="--new-version"):
        store.import_file(p2, "shelters", SOCIETY)
    store.import_file(v1, "shelters", key="名称", new_version=True)
    store.import_file(p2, "shelters", key="名称", new_version=True)
    d = store.diff("shelters", 2, 3)
    assert d.key == "名称"
    assert (d.added, sorted(d.removed), sorted(d.changed)) == ([], ["避难场所0", "避难场所1"], ["避难场所5", "避难场所7"])
    assert store.diff("shelters", 2, 2).counts == {"added": 0, "removed": 0, "changed": 0}
    assert store.info("shelters").feature_count == 58
    new = store.rollback("shelters", 2)
    assert (new.version, new.operation, new.note, new.feature_count) == (4, "rollback", "rollback to version 2", 60)
    assert [v.version for v in store.history("shelters")] == [1, 2, 3, 4]
    assert [v.current for v in store.history("shelters")] == [False, False, False, True]
    assert len(store.query("shelters")) == 60
    assert len(store.query("shelters", version=3)) == 58
    with pytest.raises(VersionNotFoundError, match=r"no version 9; versions: \[1, 2, 3, 4\]"):
        store.info("shelters", version=9)


def test_drop_keeps_history_until_purge(store, communities_geojson):
    store.import_file(communities_geojson, "communities", ADMIN)
    store.drop("communities")
    assert store.list() == []
    with pytest.raises(LayerNotFoundError, match="was dropped; its history is kept"):
        store.query("communities")
    assert len(store.history("communities")) == 1
    with pytest.raises(LayerExistsError, match="was dropped"):
        store.import_file(communities_geojson, "communities", ADMIN)
    store.rollback("communities", 1)
    assert [i.name for i in store.list()] == ["communities"]
    result = store.drop("communities", purge=True)
    assert (result.versions, result.tables_dropped) == (2, 1)
    assert store.cursor().execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'data'").fetchone() == (0,)
    with pytest.raises(LayerNotFoundError):
        store.history("communities")


def test_security_clearance_hides_layers(tmp_path, communities_geojson, shelters_gpkg_projected):
    path = tmp_path / "c.duckdb"
    with LayerStore(path) as s:
        s.import_file(communities_geojson, "communities", ADMIN, security="public")
        s.import_file(shelters_gpkg_projected, "shelters", SOCIETY, security="confidential")
        assert [i.name for i in s.list(security="internal")] == ["communities"]
    with LayerStore(path, read_only=True, clearance="public") as s:
        assert [i.name for i in s.list()] == ["communities"]
        with pytest.raises(LayerNotFoundError, match="no layer 'shelters'"):
            s.query("shelters")


def test_user_sub_themes_live_in_the_store(store, communities_geojson):
    store.add_theme("公共专题/社会", "shelters", "应急避难场所", "Emergency shelters")
    store.import_file(communities_geojson, "c", "public_topics/society/shelters")
    assert store.info("c").theme_title == "应急避难场所 / Emergency shelters"
    assert [i.name for i in store.list("public_topics")] == ["c"]
    assert store.list("planning_control") == []


@pytest.mark.parametrize("fmt, ext", [("geojson", "geojson"), ("gpkg", "gpkg"), ("parquet", "parquet"),
                                      ("csv", "csv")])
def test_export_round_trips_with_crs(store, communities_geojson, tmp_path, fmt, ext):
    store.import_file(communities_geojson, "communities", ADMIN)
    out = tmp_path / f"out.{ext}"
    result = store.export("communities", out, crs="EPSG:4547" if fmt != "csv" else None)
    assert result.feature_count == 6
    if fmt == "csv":
        back = gpd.read_file(out)
        assert list(back["name"]) == list(gpd.read_file(communities_geojson)["name"])
        return
    back = gpd.read_parquet(out) if fmt == "parquet" else gpd.read_file(out)
    assert back.crs.to_epsg() == 4547
    expected = gpd.read_file(communities_geojson).to_crs(4547)
    assert np.allclose(back.total_bounds, expected.total_bounds, atol=1e-6)
    if fmt == "parquet":
        geo = json.loads(pq.read_schema(out).metadata[b"geo"])
        assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 4547}
    with pytest.raises(OutputExistsError, match="--overwrite"):
        store.export("communities", out)


def test_cityjson_buildings_become_footprints(store):
    city = SHARED_DATA / "buildings" / "delft_lod1.city.json"
    if not city.is_file():
        pytest.skip(f"real data not found at {city}")
    report = store.import_file(city, "lod1", "spatiotemporal_base/model_3d")
    assert (report.feature_count, report.source_crs, report.geometry_type) == (160, "EPSG:28992", "Polygon")
    gdf = store.query("lod1", fields=["cityobject_id", "measuredHeight", "max_z"])
    assert gdf.geometry.is_valid.all() and gdf["measuredHeight"].notna().all()
    x0, y0, x1, y1 = gdf.total_bounds
    assert 4.36 < x0 < x1 < 4.37 and 52.01 < y0 < y1 < 52.02


def test_lod2_cityjson_of_every_geometry_type_imports_with_rejected_objects_named(store, tmp_path):
    """LoD2 solids have rings of every length (triangles, quads, pentagons): each building becomes the union of its
    surfaces seen from above; objects with broken boundaries are rejected with the reason, the rest import."""
    from tests.support.cityjson import ORIGIN, every_geometry

    report = store.import_file(every_geometry(tmp_path / "cj"), "lod2", "spatiotemporal_base/model_3d")
    assert (report.feature_count, report.source_crs, report.geometry_type) == (3, "EPSG:4547", "MultiPolygon")
    reasons = " ".join(str(r) for r in report.rejected)
    assert "broken_index" in reasons and "refers to vertex 99999" in reasons
    assert "broken_shape" in reasons and "is not a list of vertex indices" in reasons
    gdf = store.query("lod2", fields=["cityobject_id", "measuredHeight", "建筑高度", "max_z"]).to_crs(4547)
    area = dict(zip(gdf["cityobject_id"], gdf.geometry.area))
    # the house's LoD 1 and 2.2 solids both cover its 10 m x 8 m plan; the parted building's three 10 m boxes
    assert area["house"] == pytest.approx(80.0, abs=0.01) and area["parted"] == pytest.approx(300.0, abs=0.01)
    assert area["textured"] == pytest.approx(36.0, abs=0.01)
    house = gdf.set_index("cityobject_id").loc["house"]
    assert house["measuredHeight"] == 9.0 and house["建筑高度"] == 9.0 and house["max_z"] == pytest.approx(59.0)
    assert house.geometry.bounds[0] == pytest.approx(ORIGIN[0], abs=0.001)


class TestBadInputLeavesTheStoreAsItWas:
    @pytest.fixture
    def filled(self, store, communities_geojson):
        store.import_file(communities_geojson, "communities", ADMIN)
        return store

    def check(self, filled, snapshot, exc, match, path, name="other", **kw):
        before = snapshot(filled)
        with pytest.raises(exc, match=match):
            filled.import_file(path, name, kw.pop("theme", ADMIN), **kw)
        assert snapshot(filled) == before

    @pytest.mark.filterwarnings("ignore:GPKG. bad application_id")
    def test_corrupt_file(self, filled, snapshot, tmp_path):
        p = tmp_path / "bad.gpkg"
        p.write_bytes(b"SQLite format 3\x00" + b"\x13" * 500)
        self.check(filled, snapshot, LayerInputError, r"bad.gpkg: cannot read as GPKG", p)

    def test_unknown_format(self, filled, snapshot, tmp_path):
        p = tmp_path / "a.dwg"
        p.write_bytes(b"AC1032")
        self.check(filled, snapshot, LayerInputError, r"unknown format '.dwg'; supported: GeoJSON", p)

    def test_missing_file(self, filled, snapshot, tmp_path):
        self.check(filled, snapshot, InputNotFoundError, "no such file", tmp_path / "nope.gpkg")

    def test_empty_file(self, filled, snapshot, tmp_path):
        p = tmp_path / "e.geojson"
        p.write_text("")
        self.check(filled, snapshot, LayerInputError, "the file is empty", p)

    def test_no_features(self, filled, snapshot, tmp_path):
        p = tmp_path / "e.geojson"
        p.write_text('{"type": "FeatureCollection", "features": []}')
        self.check(filled, snapshot, LayerInputError, "has no features", p)

    def test_no_crs(self, filled, snapshot, tmp_path):
        p = tmp_path / "pts.csv"
        p.write_text("lon,lat,n\n116.3,39.9,a\n")
        self.check(filled, snapshot, CRSError, r"declares no CRS; pass --crs", p)

    def test_unknown_crs(self, filled, snapshot, tmp_path):
        p = tmp_path / "pts.csv"
        p.write_text("lon,lat,n\n116.3,39.9,a\n")
        self.check(filled, snapshot, CRSError, r"--crs: cannot build a CRS from 'EPSG:999999'", p, crs="EPSG:999999")

    def test_wrong_crs_puts_everything_out_of_range(self, filled, snapshot, tmp_path):
        p = tmp_path / "pts.csv"
        p.write_text("x,y\n500000,4400000\n500010,4400010\n")
        self.check(filled, snapshot, GeometryRejectedError, r"none of the 2 features.*outside the lon/lat range",
                   p, crs="EPSG:4490")

    def test_wrong_encoding(self, filled, snapshot, tmp_path):
        p = tmp_path / "gbk.csv"
        p.write_bytes("lon,lat,名称\n116.3,39.9,长安街\n".encode("gbk"))
        self.check(filled, snapshot, LayerInputError, r"pass --encoding", p, crs="EPSG:4490")
        filled.import_file(p, "gbk_ok", ADMIN, crs="EPSG:4490", encoding="gbk")
        assert list(filled.query("gbk_ok")["名称"]) == ["长安街"]

    def test_duplicate_name(self, filled, snapshot, communities_geojson):
        self.check(filled, snapshot, LayerExistsError, r"'communities' exists \(version 1\)", communities_geojson,
                   name="communities")

    @pytest.mark.parametrize("name", ["Roads", "1roads", "roads-2024", "道路", "a" * 64, "x;drop"])
    def test_unsafe_name(self, filled, snapshot, communities_geojson, name):
        self.check(filled, snapshot, LayerInputError, "not a safe identifier", communities_geojson, name=name)

    def test_unknown_theme(self, filled, snapshot, communities_geojson):
        self.check(filled, snapshot, ThemeNotFoundError, "no theme 'nope'", communities_geojson, theme="nope")

    def test_failure_inside_the_commit_rolls_everything_back(self, filled, snapshot, communities_geojson,
                                                             monkeypatch):
        import layers.store as store_module

        def boom(types, has_z):
            raise RuntimeError("disk full")

        monkeypatch.setattr(store_module, "_geometry_type", boom)
        before = snapshot(filled)
        with pytest.raises(RuntimeError, match="disk full"):
            filled.import_file(communities_geojson, "communities", new_version=True)
        assert snapshot(filled) == before
        assert len(filled.query("communities")) == 6


def test_read_only_store_must_exist(tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist; import a layer first"):
        LayerStore(tmp_path / "none.duckdb", read_only=True).open()
    assert not (tmp_path / "none.duckdb").exists()


def test_multi_layer_gpkg_needs_source_layer(store, tmp_path, shelters_4490):
    p = tmp_path / "multi.gpkg"
    shelters_4490.to_file(p, layer="a")
    shelters_4490.head(3).to_file(p, layer="b")
    with pytest.raises(LayerInputError, match=r"holds 2 layers \(a, b\); pass --source-layer"):
        store.import_file(p, "m", SOCIETY)
    assert store.import_file(p, "m", SOCIETY, source_layer="b").feature_count == 3
    assert pyogrio.list_layers(p).shape == (2, 2)


def test_features_write_every_stored_type_as_json(store, tmp_path):
    name = every_type_layer(store, tmp_path)
    page = store.features(name)
    assert sorted(f["id"] for f in page.features) == [1, 2]
    for f in page.features:
        assert_json_properties(f["properties"], STORE_EXPECTED[f["id"]])


def test_geojson_features_write_arrow_values_as_json():
    """Values as Arrow gives them before the store has normalised a table: decimals, NaN, bytes, lists."""
    table = pa.table({
        FID: [1], "price": pa.array([Decimal("1.25")], pa.decimal128(6, 2)), "nan": [float("nan")],
        "blob": [b"\x01\xab"], "tags": [[1, 2]], "at": pa.array([None], pa.timestamp("us")),
        GEOM: [shapely.to_wkb(shapely.Point(116.3, 39.9))],
    })
    (feature,) = geojson_features(table)
    assert feature["id"] == 1
    assert_json_properties(feature["properties"], {"price": 1.25, "nan": None, "blob": "01ab", "tags": "[1, 2]",
                                                   "at": None})
