"""Exports: every format in the layer's source CRS by default (within 1 cm of the source file), Shapefile with its
.cpg (UTF-8 or GBK) and 10-byte field names cut at a character boundary, FlatGeobuf, and the refusals."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from cim.errors import OutputExistsError
from layers import LayerStore
from layers.errors import LayerInputError
from layers.writers import dbf_field_names, render_features
from tests.layers.conftest import STEP, X0, Y0
from tests.support.values import EXPECTED, STORE_EXPECTED, assert_json_properties, case_frame, every_type_layer

ADMIN = "spatiotemporal_base/admin_division"


def parcels_in_gauss_kruger() -> gpd.GeoDataFrame:
    """Parcels with long and Chinese attribute names, as a district's survey delivers them (CGCS2000 GK CM 117E)."""
    cells = [(i, j) for j in range(2) for i in range(3)]
    gdf = gpd.GeoDataFrame(
        {"名称": [f"地块{i}{j}" for i, j in cells], "建筑高度": [12.5 + i for i, _ in cells],
         "population_2020": np.arange(6, dtype=np.int64), "population_2021": np.arange(6, dtype=np.int64) + 1},
        geometry=[shapely.box(X0 + i * STEP, Y0 + j * STEP, X0 + (i + 1) * STEP, Y0 + (j + 1) * STEP)
                  for i, j in cells], crs="EPSG:4490")
    return gdf.to_crs("EPSG:4547")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("export")
    gpkg = root / "parcels.gpkg"
    parcels_in_gauss_kruger().to_file(gpkg, driver="GPKG", layer="parcels")
    with LayerStore(root / "city.duckdb") as store:
        store.import_file(gpkg, "parcels", ADMIN)
    return root, gpkg


@pytest.fixture
def store(source):
    with LayerStore(source[0] / "city.duckdb") as s:
        yield s


@pytest.mark.parametrize("ext", ["shp", "fgb", "gpkg", "geojson", "parquet", "csv"])
def test_default_export_crs_is_the_source_crs_within_1cm(store, source, tmp_path, ext) -> None:
    _, gpkg = source
    out = tmp_path / f"parcels.{ext}"
    result = store.export("parcels", out)
    assert result.crs == "EPSG:4547" and result.feature_count == 6
    if ext == "csv":
        table = pyogrio.read_dataframe(out, read_geometry=False)
        back = gpd.GeoDataFrame(table, geometry=gpd.GeoSeries.from_wkt(table["wkt"]))
    else:
        back = gpd.read_parquet(out) if ext == "parquet" else gpd.read_file(out)
        assert back.crs.to_epsg() == 4547
    back = back.sort_values("名称").reset_index(drop=True)
    expected = gpd.read_file(gpkg).sort_values("名称").reset_index(drop=True)
    assert back["名称"].tolist() == expected["名称"].tolist()
    # the same rings (a writer may start a ring elsewhere or turn it): every vertex within 1 cm of one of the source
    for ga, gb in zip(back.geometry, expected.geometry, strict=True):
        va, vb = shapely.get_coordinates(ga), shapely.get_coordinates(gb)
        d = np.hypot(va[:, None, 0] - vb[None, :, 0], va[:, None, 1] - vb[None, :, 1])
        assert d.min(axis=1).max() < 0.01 and d.min(axis=0).max() < 0.01


def test_crs_option_and_sources_in_cgcs2000(store, tmp_path) -> None:
    result = store.export("parcels", tmp_path / "p.fgb", crs="EPSG:4490")
    assert result.crs == "EPSG:4490"
    back = gpd.read_file(tmp_path / "p.fgb")
    assert back.crs.to_epsg() == 4490 and np.allclose(back.total_bounds, [X0, Y0, X0 + 3 * STEP, Y0 + 2 * STEP],
                                                      atol=1e-7)
    assert store.source_crs("parcels").to_epsg() == 4547


def test_shapefile_gbk_has_its_cpg_and_gbk_bytes(store, tmp_path) -> None:
    out = tmp_path / "地块.shp"
    result = store.export("parcels", out, encoding="GBK")
    assert result.encoding == "GBK"
    assert out.with_suffix(".cpg").read_text().strip() == "GBK"
    dbf = out.with_suffix(".dbf").read_bytes()
    assert "地块00".encode("gbk") in dbf and "建筑高度".encode("gbk") in dbf  # 8 bytes in GBK: kept whole
    assert "地块00".encode("utf-8") not in dbf
    assert result.renamed == {"population_2020": "population", "population_2021": "populati_1"}
    back = pyogrio.read_dataframe(out)  # GDAL honours the .cpg
    assert sorted(back["名称"]) == sorted(f"地块{i}{j}" for j in range(2) for i in range(3))
    assert list(back.columns[:5]) == ["fid", "名称", "建筑高度", "population", "populati_1"]
    assert back["populati_1"].tolist() == (back["population"] + 1).tolist()


def test_shapefile_utf8_cuts_field_names_at_a_character_boundary(store, tmp_path) -> None:
    out = tmp_path / "p.shp"
    result = store.export("parcels", out)
    assert result.encoding == "UTF-8" and out.with_suffix(".cpg").read_text().strip() == "UTF-8"
    # 建筑高度 is 12 bytes in UTF-8: GDAL alone would cut the fourth character in half (an unreadable name)
    assert result.renamed["建筑高度"] == "建筑高"
    assert any("10 bytes" in w and "建筑高度 -> 建筑高" in w for w in result.warnings)
    back = pyogrio.read_dataframe(out)
    assert "建筑高" in back.columns and sorted(back["建筑高"]) == [12.5, 12.5, 13.5, 13.5, 14.5, 14.5]


def test_dbf_field_names() -> None:
    assert dbf_field_names(["名称", "a_very_long_name", "A_VERY_LONG_NAME2", "建筑物高度米"], "gbk") == {
        "a_very_long_name": "a_very_lon", "A_VERY_LONG_NAME2": "A_VERY_L_1", "建筑物高度米": "建筑物高度"}
    assert dbf_field_names(["建筑物高度"], "utf-8") == {"建筑物高度": "建筑物"}


def test_shapefile_refusals(store, source, tmp_path) -> None:
    root, _ = source
    with pytest.raises(LayerInputError, match="not an encoding"):
        store.export("parcels", tmp_path / "a.shp", encoding="NOPE-1")
    with pytest.raises(LayerInputError, match="applies to Shapefile"):
        store.export("parcels", tmp_path / "a.gpkg", encoding="GBK")
    (tmp_path / "b.dbf").write_bytes(b"")  # part of a Shapefile already there
    with pytest.raises(OutputExistsError, match=r"b\.dbf exists"):
        store.export("parcels", tmp_path / "b.shp")
    assert store.export("parcels", tmp_path / "b.shp", overwrite=True).feature_count == 6
    odd = gpd.GeoDataFrame({"名称": ["ok", "表情😀"]}, geometry=[shapely.Point(116.3, 39.9), shapely.Point(116.31, 39.9)],
                           crs="EPSG:4490")
    odd.to_file(root / "odd.geojson", driver="GeoJSON")
    mixed = gpd.GeoDataFrame({"k": [1, 2]}, geometry=[shapely.Point(116.3, 39.9), shapely.box(116.3, 39.9, 116.31,
                                                                                            39.91)], crs="EPSG:4490")
    mixed.to_file(root / "mixed.geojson", driver="GeoJSON")
    store.import_file(root / "odd.geojson", "odd", ADMIN)
    store.import_file(root / "mixed.geojson", "mixed", ADMIN)
    with pytest.raises(LayerInputError, match=r"field '名称'.*GBK cannot write.*--encoding UTF-8"):
        store.export("odd", tmp_path / "odd.shp", encoding="GBK")
    assert not (tmp_path / "odd.shp").exists() and not list(tmp_path.glob(".odd.*"))
    assert store.export("odd", tmp_path / "odd.shp").feature_count == 2  # UTF-8 writes it
    with pytest.raises(LayerInputError, match="one type: export it as .gpkg or .fgb"):
        store.export("mixed", tmp_path / "mixed.shp")
    assert store.export("mixed", tmp_path / "mixed.fgb").feature_count == 2


def test_cli_exports_a_gbk_shapefile_with_json(source, tmp_path, capsys) -> None:
    from cim.cli import main

    root, _ = source
    out = tmp_path / "p.shp"
    with pytest.raises(SystemExit) as exc:
        main(["layers", "export", "parcels", str(out), "--encoding", "GBK", "--store", str(root / "city.duckdb"),
              "--json"])
    assert exc.value.code in (0, None)
    doc = json.loads(capsys.readouterr().out)
    assert (doc["format"], doc["crs"], doc["encoding"]) == ("shp", "EPSG:4547", "GBK")
    assert doc["renamed"]["population_2021"] == "populati_1"
    with pytest.raises(SystemExit):
        main(["layers", "export", "parcels", str(out), "--store", str(root / "city.duckdb")])
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_query_geojson_writes_every_value_as_json(tmp_path) -> None:
    """`cim layers query --format geojson`: raw values of every kind, then every type a store column keeps."""
    (feature,) = json.loads(render_features(case_frame(), "geojson"))["features"]
    assert feature["id"] == 1
    assert_json_properties(feature["properties"], EXPECTED)
    with LayerStore(tmp_path / "city.duckdb") as store:
        features = json.loads(render_features(store.query(every_type_layer(store, tmp_path)), "geojson"))["features"]
    assert sorted(f["id"] for f in features) == [1, 2]
    for f in features:
        assert_json_properties(f["properties"], STORE_EXPECTED[f["id"]])
