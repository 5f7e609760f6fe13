"""One generation run: layout, buildings and layers in memory, then files and the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

import cim
from cim.sample.buildings import _buildings, _footprints
from cim.sample.city import SampleCity, load
from cim.sample.common import (
    _META,
    CRS,
    GENERATOR,
    MANIFEST,
    MAX_DEM_PX,
    MAX_ORTHO_PX,
    VECTOR_LAYERS,
    FootprintFormat,
    Progress,
    _nice,
)
from cim.sample.divisions import _Divisions
from cim.sample.layers import _BusinessLayers
from cim.sample.plan import _layout
from cim.sample.rasters import _Terrain, _write_dem_dsm, _write_ortho
from cim.sources.crs import lonlat, parse_crs


class _Generator(_Divisions, _BusinessLayers):
    """One generation run: layout, buildings and layers in memory, then files."""

    def __init__(self, n: int, seed: int, progress: Progress) -> None:
        self.n, self.seed, self.progress = n, seed, progress

    # -- model
    def build(self, wanted: set[str]) -> None:
        self.progress("layout", 0.0)
        plan, lots = _layout(self.n, self.seed)
        self.plan, self.lots = plan, lots
        self.terrain = _Terrain(plan, self.seed)
        self.progress("buildings", 0.08)
        bl = _buildings(lots, self.seed)
        bl.geom = _footprints(bl)
        self._admin()
        order = self._assign(bl)
        bl = bl.take(order)
        self.lots = {k: v[order] for k, v in lots.items()}
        if self.rasters:
            bl.boundary = shapely.boundary(bl.geom)  # for the roof model of L, U and ring shapes
        bl.base = self.terrain((bl.x0 + bl.x1) / 2, (bl.y0 + bl.y1) / 2)
        self.bl = bl
        self.progress("attributes", 0.15)
        self.tables: dict[str, tuple[pa.Table, np.ndarray, str]] = {}
        self.tables["buildings"] = self._building_table()
        self.progress("layers", 0.25)
        self._layers(wanted)

    # -- files
    def write(self, root: Path, *, rasters: bool, ortho: bool, layers: set[str],
              footprint_format: FootprintFormat) -> SampleCity:
        self.rasters = rasters
        self.build(layers)
        entries = []
        vec_names = [k for k in VECTOR_LAYERS if k in self.tables]
        for i, name in enumerate(vec_names):
            table, geom, gtype = self.tables[name]
            fname = f"{name}.parquet" if name == "buildings" and footprint_format == "parquet" else f"{name}.gpkg"
            _write_vector(root / fname, name, table, geom)
            entries.append(_vector_entry(fname, name, table, geom, gtype))
            self.progress("vectors", 0.25 + 0.15 * (i + 1) / len(vec_names))
        p = self.plan
        if rasters:
            res_dem = _nice(max(2.0, p.side / MAX_DEM_PX))
            _write_dem_dsm(self, root / "dem.tif", root / "dsm.tif", res_dem)
            for kind, fname in (("dem", "dem.tif"), ("dsm", "dsm.tif")):
                entries.append(_raster_entry(root, fname, kind))
            self.progress("dsm", 0.55)
            if ortho:
                res_o = _nice(max(0.5, p.side / MAX_ORTHO_PX))
                _write_ortho(self, root / "ortho.tif", res_o,
                               lambda f: self.progress("ortho", 0.55 + 0.43 * f))
                entries.append(_raster_entry(root, "ortho.tif", "ortho"))
        lon, lat = lonlat(CRS, np.array([p.x0 + p.side / 2]), np.array([p.y0 + p.side / 2]))
        doc = {
            "generator": GENERATOR,
            "version": cim.__version__,
            "name": "大同市平城区示例城市",
            "name_en": "Sample city: Pingcheng District, Datong, Shanxi",
            "seed": self.seed,
            "n_buildings": self.n,
            "crs": CRS,
            "bounds": [p.x0, p.y0, p.x0 + p.side, p.y0 + p.side],
            "center_lonlat": [round(float(lon[0]), 6), round(float(lat[0]), 6)],
            "heights": "metres above the 1985 National Height Datum (approximate)",
            "files": entries,
        }
        (root / MANIFEST).write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return load(root)


def _geometry_types(geom: np.ndarray) -> list[str]:
    names = {0: "Point", 1: "LineString", 3: "Polygon", 5: "MultiLineString", 6: "MultiPolygon", 4: "MultiPoint"}
    return sorted({names[int(t)] for t in np.unique(shapely.get_type_id(geom))})


def _write_vector(path: Path, layer: str, table: pa.Table, geom: np.ndarray) -> None:
    """One layer per file: GeoPackage through pyogrio's Arrow path, or GeoParquet (WKB, PROJJSON CRS)."""
    import pyogrio

    wkb = pa.array(shapely.to_wkb(geom, output_dimension=2), pa.binary())
    full = table.append_column("geometry", wkb)
    if path.suffix == ".parquet":
        meta = {"version": "1.1.0", "primary_column": "geometry",
                "columns": {"geometry": {"encoding": "WKB", "geometry_types": _geometry_types(geom),
                                         "crs": parse_crs(CRS).to_json_dict(),
                                         "bbox": [float(v) for v in shapely.total_bounds(geom)]}}}
        full = full.replace_schema_metadata({b"geo": json.dumps(meta).encode()})
        pq.write_table(full, path, compression="zstd", row_group_size=100_000)  # one prepare task each
        return
    types = _geometry_types(geom)
    gtype = types[0] if len(types) == 1 else "Unknown"
    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2024-01-01T00:00:00.000Z"})  # reproducible bytes
    try:
        pyogrio.write_arrow(full, path, layer=layer, driver="GPKG", geometry_name="geometry", geometry_type=gtype,
                            crs=CRS)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})


def _vector_entry(fname: str, name: str, table: pa.Table, geom: np.ndarray, family: str) -> dict[str, Any]:
    zh, en, theme, dept, sec = _META[name]
    return {
        "kind": "vector", "path": fname, "layer": name, "title_zh": zh, "title_en": en, "theme": theme,
        "department": dept, "security": sec, "geometry_type": family, "geometry_types": _geometry_types(geom),
        "feature_count": len(geom), "crs": CRS,
        "bounds": [round(float(v), 3) for v in shapely.total_bounds(geom)],
        "fields": {f.name: str(f.type) for f in table.schema},
    }


def _raster_entry(root: Path, fname: str, kind: str) -> dict[str, Any]:
    import rasterio

    zh, en, theme, dept, sec = _META[kind]
    with rasterio.open(root / fname) as src:
        return {
            "kind": kind, "path": fname, "layer": kind, "title_zh": zh, "title_en": en, "theme": theme,
            "department": dept, "security": sec, "geometry_type": None, "feature_count": None, "crs": CRS,
            "bounds": [round(float(v), 3) for v in src.bounds], "width": src.width, "height": src.height,
            "resolution": float(src.res[0]), "dtype": src.dtypes[0], "bands": src.count, "nodata": src.nodata,
        }
