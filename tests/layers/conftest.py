"""Small generated layers, each named by the trait it carries, and the real data location."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from layers import LayerStore
from tests.support.paths import SHARED_DATA as SHARED

BGT = SHARED / "buildings" / "delft_bgt"

# a 3x2 grid of 0.01-degree "communities" near Beijing, in CGCS2000 lon/lat
X0, Y0, STEP = 116.30, 39.90, 0.01


def community_grid() -> gpd.GeoDataFrame:
    cells = [(i, j) for j in range(2) for i in range(3)]
    return gpd.GeoDataFrame(
        {"name": [f"社区{i}{j}" for i, j in cells], "code": [f"C{i}{j}" for i, j in cells]},
        geometry=[shapely.box(X0 + i * STEP, Y0 + j * STEP, X0 + (i + 1) * STEP, Y0 + (j + 1) * STEP)
                  for i, j in cells],
        crs="EPSG:4490",
    )


def shelter_points(n: int = 60, seed: int = 1) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(X0 + 0.0005, X0 + 3 * STEP - 0.0005, n)
    y = rng.uniform(Y0 + 0.0005, Y0 + 2 * STEP - 0.0005, n)
    return gpd.GeoDataFrame(
        {"名称": [f"避难场所{i}" for i in range(n)], "capacity": rng.integers(50, 500, n).astype(np.int64),
         "kind": np.where(np.arange(n) % 3 == 0, "school", "park")},
        geometry=shapely.points(x, y), crs="EPSG:4490",
    )


@pytest.fixture
def communities_geojson(tmp_path: Path) -> Path:
    p = tmp_path / "communities.geojson"
    community_grid().to_file(p, driver="GeoJSON")
    return p


@pytest.fixture
def shelters_gpkg_projected(tmp_path: Path) -> Path:
    """Shelter points stored in the CGCS2000 3-degree Gauss-Kruger zone CM 117E (EPSG:4547)."""
    p = tmp_path / "shelters.gpkg"
    shelter_points().to_crs("EPSG:4547").to_file(p, driver="GPKG", layer="shelters")
    return p


@pytest.fixture
def shelters_4490() -> gpd.GeoDataFrame:
    return shelter_points()


@pytest.fixture
def gbk_shapefile(tmp_path: Path) -> Path:
    """A shapefile whose DBF is GBK-encoded, declared by a `.cpg` file."""
    p = tmp_path / "gbk" / "roads.shp"
    p.parent.mkdir()
    gdf = gpd.GeoDataFrame({"名称": ["长安街", "二环路"]},
                           geometry=[shapely.LineString([(116.30, 39.90), (116.32, 39.90)]),
                                     shapely.LineString([(116.30, 39.91), (116.30, 39.93)])], crs="EPSG:4490")
    gdf.to_file(p, driver="ESRI Shapefile", encoding="GBK")
    p.with_suffix(".cpg").write_text("GBK")
    return p


@pytest.fixture
def zipped_shapefile(gbk_shapefile: Path, tmp_path: Path) -> Path:
    z = tmp_path / "roads.zip"
    with zipfile.ZipFile(z, "w") as f:
        for part in gbk_shapefile.parent.iterdir():
            f.write(part, f"roads/{part.name}")
    return z


@pytest.fixture
def geojson_with_invalid(tmp_path: Path) -> Path:
    """Four polygons: valid, a bow-tie (repairable), a spike-only ring (unrepairable), and one without geometry."""
    feats = [
        {"type": "Feature", "id": 1, "properties": {"n": "ok"},
         "geometry": shapely.geometry.mapping(shapely.box(116.30, 39.90, 116.31, 39.91))},
        {"type": "Feature", "id": 2, "properties": {"n": "bowtie"},
         "geometry": {"type": "Polygon", "coordinates": [[[116.30, 39.90], [116.31, 39.91], [116.31, 39.90],
                                                          [116.30, 39.91], [116.30, 39.90]]]}},
        {"type": "Feature", "id": 3, "properties": {"n": "spike"},
         "geometry": {"type": "Polygon", "coordinates": [[[116.30, 39.90], [116.31, 39.91], [116.30, 39.90],
                                                          [116.30, 39.90]]]}},
        {"type": "Feature", "id": 4, "properties": {"n": "none"}, "geometry": None},
    ]
    p = tmp_path / "invalid.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return p


@pytest.fixture
def store(tmp_path: Path) -> LayerStore:
    with LayerStore(tmp_path / "city.duckdb") as s:
        yield s


def _snapshot(store: LayerStore) -> tuple[list, list, list]:
    cur = store.cursor()
    tables = sorted(cur.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall())
    layers = cur.execute("SELECT * FROM catalogue.layers ORDER BY name").fetchall()
    versions = cur.execute("SELECT * FROM catalogue.versions ORDER BY layer, version").fetchall()
    return tables, layers, versions


@pytest.fixture
def snapshot():
    """A function returning everything a failed operation must leave untouched: tables and catalogue rows."""
    return _snapshot
