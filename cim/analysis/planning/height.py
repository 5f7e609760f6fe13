"""Height control (控高): buildings against the height-control zones (控高分区) of the planning layer.

    >>> zones = load_zones("height_zones.gpkg")                    # or load_zones(store="city.duckdb")
    >>> result = height_control(scene, zones)
    >>> result.violations()[["id", "zone_code", "height", "limit", "excess"]]     # doctest: +SKIP

A building is measured in every zone its footprint overlaps (by more than `min_overlap` m²), and only over the part
of its footprint inside that zone: at level 2 its LOD1 height (the prism is equally high everywhere); at level 3
the highest point of its LOD2 roof over that part (the ridge when the ridge lies in the zone; where the zone holds
only an eave, the roof's height at the zone's edge), computed exactly by clipping the roof triangles to the zone.
Heights are above the building's base (the lowest terrain under the footprint, as the model builds it), or above
sea level when the zone's limit is an elevation (`limit_reference="elevation"`, e.g. airport clearance zones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.planning.output import geojson, json_records, write_layer
from cim.analysis.planning.scene import CityScene
from cim.errors import InputError, InputNotFoundError

Measure = Literal["auto", "lod1", "roof"]


class HeightControlParams(BaseModel):
    """How buildings are checked against the zones.

    Attributes:
        limit_field: the zones' attribute holding the limit in metres.
        code_field, name_field: the zones' code and name attributes (reported).
        limit_reference: "ground" (limits are heights above the building's base) or "elevation" (above sea level).
        measure: "auto" (LOD1 height at level 2, the roof's highest point at level 3), "lod1" or "roof".
        tolerance: metres a building may exceed its limit before it is a violation.
        min_overlap: m² of footprint inside a zone for the zone to apply (slivers along shared edges are ignored).
        buildings: IDs to check (default: every building, scheme buildings included).
        bbox: lon/lat box: only buildings intersecting it are checked.
    """

    model_config = ConfigDict(frozen=True)

    limit_field: str = "max_height_m"
    code_field: str = "zone_code"
    name_field: str = "name"
    limit_reference: Literal["ground", "elevation"] = "ground"
    measure: Measure = "auto"
    tolerance: float = Field(0.0, ge=0.0)
    min_overlap: float = Field(1.0, ge=0.0)
    buildings: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None


def load_zones(path: str | os.PathLike[str] | None = None, *, store: Any = None,
               layer: str = "height_zones") -> gpd.GeoDataFrame:
    """Height-control zones from a vector file, or from a layer of a store (an open `LayerStore` or a path).

    Raises:
        InputNotFoundError: the file does not exist.
        LayerNotFoundError: the store has no such layer.
        InputError: neither a file nor a store was given, or the file cannot be read.
    """
    if path is not None:
        from pathlib import Path

        p = Path(path)
        if not p.exists():
            raise InputNotFoundError(f"height-control zones file {p} does not exist")
        try:
            return gpd.read_parquet(p) if p.suffix.lower() in (".parquet", ".geoparquet") else gpd.read_file(p)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
            raise InputError(f"height-control zones file {p} cannot be read: {exc}") from exc
    if store is None:
        raise InputError("height control needs the zones: pass a zones file or a store with a height_zones layer")
    from layers import LayerStore

    if isinstance(store, (str, os.PathLike)):
        with LayerStore(store, read_only=True) as s:
            return s.query(layer)
    return store.query(layer)


@dataclass
class HeightControlResult:
    """Every (building, zone) pair checked.

    Attributes:
        checks: one row per pair: id, name, scheme, zone_code, zone_name, limit, height (measured above the
            reference), measure ("lod1" or "roof"), excess (height - limit), violation, part_area (m² of the
            footprint in the zone); `geometry` is the footprint part inside the zone (scene CRS).
        params: what was asked.
        level: the scene's level.
        unzoned: IDs of checked buildings outside every zone.
    """

    checks: gpd.GeoDataFrame
    params: HeightControlParams
    level: int
    unzoned: list[str] = field(default_factory=list)
    scheme: str | None = None

    def violations(self) -> gpd.GeoDataFrame:
        """The pairs over their limit, largest excess first."""
        v = self.checks[self.checks["violation"]]
        return v.sort_values("excess", ascending=False)

    def summary(self) -> dict[str, Any]:
        v = self.violations()
        return {"buildings_checked": int(self.checks["id"].nunique()) + len(self.unzoned),
                "pairs": int(len(self.checks)), "violations": int(len(v)),
                "buildings_violating": int(v["id"].nunique()), "unzoned": len(self.unzoned),
                "max_excess": float(v["excess"].max()) if len(v) else 0.0, "scheme": self.scheme}

    def to_dict(self, all_checks: bool = False) -> dict[str, Any]:
        rows = self.checks if all_checks else self.violations()
        cols = [c for c in rows.columns if c != rows.geometry.name]
        recs = json_records(rows[cols])
        return {"analysis": "height-control", "summary": self.summary(), "level": self.level,
                "params": self.params.model_dump(mode="json"), "violations" if not all_checks else "checks": recs}

    def to_geojson(self, all_checks: bool = False) -> dict[str, Any]:
        """GeoJSON (lon/lat) of the violating footprint parts (every pair with `all_checks`)."""
        return geojson(self.checks if all_checks else self.violations())

    def to_layer(self, store: Any, name: str, **kw: Any) -> Any:
        return write_layer(self.checks, store, name, title=kw.pop("title", f"控高检查 {name}"), **kw)


def _roof_max(pos: np.ndarray, tris: np.ndarray, region: shapely.Geometry) -> float:
    """The highest point of a surface of triangles over a 2D region (exact: triangles clipped to the region)."""
    best = -np.inf
    p = pos[tris]  # (t, 3, 3)
    for k in range(len(tris)):
        a, b, c = p[k]
        n = np.cross(b - a, c - a)
        if abs(n[2]) < 1e-9 * max(np.linalg.norm(n), 1e-12):
            continue  # vertical (a wall): its top edge belongs to a roof triangle
        tri = shapely.Polygon(p[k, :, :2])
        clip = shapely.intersection(tri, region)
        if clip.is_empty or clip.area < 1e-9:
            continue
        xy = shapely.get_coordinates(clip)
        z = a[2] - (n[0] * (xy[:, 0] - a[0]) + n[1] * (xy[:, 1] - a[1])) / n[2]
        best = max(best, float(z.max()))
    return best


def height_control(scene: CityScene, zones: gpd.GeoDataFrame, params: HeightControlParams | None = None
                   ) -> HeightControlResult:
    """Check the scene's buildings (a scheme's included) against height-control zones (see the module docstring).

    Args:
        scene: the city, at level 2 or 3, with or without a scheme.
        zones: polygons with a limit attribute (`params.limit_field`), in any CRS that says what it is.
        params: fields and rules.

    Raises:
        InputError: the zones have no CRS, lack the limit field, or no building is checked.
    """
    params = params or HeightControlParams()
    if zones.crs is None:
        raise InputError("the height-control zones declare no CRS")
    if params.limit_field not in zones.columns:
        raise InputError(f"the height-control zones have no {params.limit_field!r} field (fields: "
                         f"{[c for c in zones.columns if c != zones.geometry.name]}); pass limit_field=")
    z = zones.to_crs(scene.crs)
    limits = pd.to_numeric(z[params.limit_field], errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(limits) & ~z.geometry.isna().to_numpy()
    z, limits = z[keep].reset_index(drop=True), limits[keep]
    zgeoms = shapely.make_valid(z.geometry.to_numpy())
    codes = z[params.code_field].astype(str).to_numpy() if params.code_field in z.columns else \
        np.array([f"zone-{i + 1}" for i in range(len(z))], dtype=object)
    names = z[params.name_field].astype(str).to_numpy() if params.name_field in z.columns else codes
    bs = scene.buildings
    if params.buildings:
        idx = bs.rows(params.buildings)
    else:
        idx = np.arange(len(bs))
    if params.bbox is not None:
        idx = idx[shapely.intersects(bs.geoms[idx], scene.bbox_from_lonlat(params.bbox))]
    if len(idx) == 0:
        raise InputError("no building to check" + (" inside the bbox" if params.bbox is not None else ""))
    measure = params.measure if params.measure != "auto" else ("roof" if scene.level >= 3 else "lod1")
    tree = shapely.STRtree(zgeoms)
    bi, zi = tree.query(bs.geoms[idx], predicate="intersects")
    bi = idx[bi]
    parts = shapely.intersection(bs.geoms[bi], zgeoms[zi])
    area = shapely.area(parts)
    ok = area >= params.min_overlap
    bi, zi, parts, area = bi[ok], zi[ok], parts[ok], area[ok]
    footprint_area = shapely.area(bs.geoms[bi])
    if measure == "lod1":
        height = bs.height[bi].copy()
    else:
        top = np.maximum(bs.ridge, bs.eave)
        height = top[bi].copy()
        partial = np.flatnonzero(area < footprint_area * (1 - 1e-9))
        if len(partial):
            pos, tris, owner = scene.building_mesh()
            order = np.argsort(owner, kind="stable")
            starts = np.searchsorted(owner[order], np.arange(len(bs) + 1))
            for k in partial.tolist():
                b = bi[k]
                mine = tris[order[starts[b]:starts[b + 1]]]
                height[k] = _roof_max(pos, mine, parts[k]) - bs.base[b]
    reference = height + (bs.base[bi] if params.limit_reference == "elevation" else 0.0)
    excess = reference - limits[zi]
    checks = gpd.GeoDataFrame({
        "id": bs.ids[bi], "name": bs.name[bi], "scheme": bs.scheme[bi], "zone_code": codes[zi],
        "zone_name": names[zi], "limit": limits[zi], "height": np.round(reference, 3), "measure": measure,
        "excess": np.round(excess, 3), "violation": excess > params.tolerance, "part_area": np.round(area, 2),
    }, geometry=parts, crs=scene.crs)
    unzoned = sorted(set(bs.ids[idx].tolist()) - set(checks["id"].tolist()))
    return HeightControlResult(checks, params, scene.level, unzoned, scene.scheme_name)


__all__ = ["HeightControlParams", "HeightControlResult", "height_control", "load_zones"]
