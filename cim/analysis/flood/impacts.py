"""What a flood run means for the city: affected buildings, impassable roads, people per community, dry shelters.

The run's depth raster (the maximum, or the depth at one output time) is read against the city's business layers,
from the layer store (`layers.store.LayerStore`, by name) or from files:

- **buildings**: the deepest water around each footprint (sampled every half cell along the footprint's outline
  pushed out by 0.75 cell, and inside it where a porous cell holds water), the first time water there reached
  0.15 m, the depth class; affected when at or above `building_threshold_m`. Each affected building gets the
  nearest dry shelter and its distance.
- **roads**: centre lines cut into pieces of at most `road_piece_m`, the deepest water along each (sampled every
  half cell); impassable above `road_threshold_m` (0.3 m: closed to ordinary vehicles).
- **communities** (the population layer's polygons): buildings in them (by centroid), affected buildings, and the
  affected population estimated as population x affected / all residential buildings (all buildings when the
  layer has no `use`; the flooded share of the area when it has no buildings).
- **shelters**: the deepest water within `shelter_radius_m`; dry below `shelter_dry_m`; how many affected buildings
  have each as their nearest dry shelter.

`FloodImpacts.to_csv`, `to_layer` (versioned layers of the store) and `to_dict` export them; `write` keeps them
beside the run (`impacts/`) so the server need not recompute them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.ops
from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.flood.errors import FloodInputError
from cim.analysis.flood.run import FloodResult, import_layer

RESIDENTIAL = ("住宅", "residential", "housing")


class ImpactParams(BaseModel):
    """What counts as affected, and where the layers are.

    Attributes:
        buildings, roads, population, shelters: layer names in the store (or keys of `files`).
        building_threshold_m: a building is affected when water around it reaches this (m).
        road_threshold_m: a road piece is impassable above this (m).
        shelter_dry_m: a shelter is dry while water within `shelter_radius_m` stays below this (m).
        shelter_radius_m: how far around a shelter to look (m).
        road_piece_m: longest road piece reported (m).
        time_s: use the depth at this output time instead of the maximum.
    """

    model_config = ConfigDict(extra="forbid")

    buildings: str = "buildings"
    roads: str = "roads"
    population: str = "population"
    shelters: str = "shelters"
    building_threshold_m: float = Field(0.15, gt=0)
    road_threshold_m: float = Field(0.3, gt=0)
    shelter_dry_m: float = Field(0.15, gt=0)
    shelter_radius_m: float = Field(10.0, ge=0)
    road_piece_m: float = Field(50.0, gt=0)
    time_s: float | None = None


@dataclass
class FloodImpacts:
    """Impact tables of one run (GeoDataFrames in the run's CRS) and a summary.

    Attributes:
        buildings: every building touched by water: id, name, address, community, use, max_depth_m,
            time_to_0_15m_s, depth_class, affected, nearest_dry_shelter, shelter_distance_m.
        roads: road pieces with water: name, class, length_m, max_depth_m, impassable.
        communities: per community: name, code, population, buildings, affected_buildings, affected_population.
        shelters: every shelter: id, name, capacity, depth_m, dry, assigned_buildings.
        summary: counts for run.json, the viewer's panel and alerts.
    """

    buildings: Any
    roads: Any
    communities: Any
    shelters: Any
    summary: dict[str, Any] = field(default_factory=dict)

    TABLES = ("buildings", "roads", "communities", "shelters")

    def to_dict(self, rows: bool = True) -> dict[str, Any]:
        """The summary, and (with `rows`) every table's rows without geometry."""
        out: dict[str, Any] = {"summary": self.summary}
        if rows:
            for name in self.TABLES:
                frame = getattr(self, name)
                out[name] = json.loads(frame.drop(columns=frame.geometry.name).to_json(orient="records",
                                                                                       force_ascii=False))
        return out

    def to_csv(self, folder: str | os.PathLike[str]) -> list[Path]:
        """One CSV per table (UTF-8 with BOM, so spreadsheet programs read the Chinese), geometry as WKT in lon/lat."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in self.TABLES:
            frame = getattr(self, name).to_crs(4490)
            table = frame.drop(columns=frame.geometry.name)
            table["wkt"] = shapely.to_wkt(frame.geometry.values, rounding_precision=7)
            p = out / f"{name}.csv"
            table.to_csv(p, index=False, encoding="utf-8-sig")
            paths.append(p)
        return paths

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Keep the impacts beside a run: impacts.json (summary and rows), impacts.gpkg (one layer per table), CSVs."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "impacts.json").write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1),
                                          encoding="utf-8")
        gpkg = out / "impacts.gpkg"
        if gpkg.exists():
            gpkg.unlink()
        for name in self.TABLES:
            frame = getattr(self, name)
            if len(frame):
                frame.to_file(gpkg, layer=name, driver="GPKG")
        self.to_csv(out)
        return out

    def to_layer(self, store: Any, prefix: str = "flood_", *, security: str = "internal") -> dict[str, Any]:
        """Store the non-empty tables as layers `<prefix><table>` (new layers or new versions), under 公共专题/内涝风险.

        Returns:
            The store's import report per layer name.
        """
        import tempfile

        titles = {"buildings": "受淹建筑", "roads": "受阻道路", "communities": "受影响人口", "shelters": "避难场所状态"}
        reports = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in self.TABLES:
                frame = getattr(self, name)
                if not len(frame):
                    continue
                path = Path(tmp) / f"{name}.gpkg"
                frame.to_file(path, layer=name, driver="GPKG")
                reports[prefix + name] = import_layer(store, path, name, prefix + name, titles[name], security)
        return reports


# ------------------------------------------------------------------------------------------------ sampling


class _Depth:
    """A depth raster with point sampling (nearest cell; NaN outside and on walls counts as 0)."""

    def __init__(self, data: np.ndarray, transform: Any, fill: float = 0.0) -> None:
        self.data = np.where(np.isfinite(data), np.asarray(data, np.float64), fill)
        self.fill = fill
        self.transform = transform
        self.cell = float(abs(transform.a))

    def at(self, xy: np.ndarray) -> np.ndarray:
        inv = ~self.transform
        col, row = inv @ (xy[:, 0], xy[:, 1])
        c = np.floor(col).astype(np.int64)
        r = np.floor(row).astype(np.int64)
        ok = (r >= 0) & (r < self.data.shape[0]) & (c >= 0) & (c < self.data.shape[1])
        out = np.full(len(xy), self.fill)
        out[ok] = self.data[r[ok], c[ok]]
        return out

    def max_along(self, geoms: np.ndarray, step: float) -> np.ndarray:
        """Deepest water at points every `step` along (multi)line geometries, per geometry."""
        dense = shapely.segmentize(geoms, step)
        xy, idx = shapely.get_coordinates(dense, return_index=True)
        out = np.zeros(len(geoms))
        if len(xy):
            np.maximum.at(out, idx, self.at(xy))
        return out

    def max_in(self, polys: np.ndarray) -> np.ndarray:
        """Deepest water at the cell centres inside polygons (0 where a polygon has none)."""
        import rasterio.features

        out = np.zeros(len(polys))
        if not len(polys):
            return out
        labels = rasterio.features.rasterize(((g, i + 1) for i, g in enumerate(polys)), out_shape=self.data.shape,
                                             transform=self.transform, fill=0, dtype="int32")
        sel = labels > 0
        np.maximum.at(out, labels[sel] - 1, self.data[sel])
        return out


def _read(source: Any, name: str, crs: Any, files: Mapping[str, str | os.PathLike[str]] | None,
          required: bool = True) -> Any:
    import geopandas as gpd

    if files and name in files:
        gdf = gpd.read_file(files[name])
    elif source is not None:
        from layers.errors import LayerNotFoundError

        try:
            gdf = source.query(name)
        except LayerNotFoundError:
            if required:
                raise FloodInputError(f"the layer store has no layer {name!r}; import it or pass another name "
                                      f"(ImpactParams)") from None
            return None
    elif required:
        raise FloodInputError(f"layer {name!r}: give a layer store or a file for it")
    else:
        return None
    if gdf.crs is None:
        raise FloodInputError(f"layer {name!r} declares no CRS")
    return gdf.to_crs(crs)


def _col(gdf: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in gdf.columns:
            return gdf[n].to_numpy()
    return np.full(len(gdf), default, dtype=object)


def _classes(depth: np.ndarray, bounds: list[float]) -> np.ndarray:
    from cim.analysis.flood.outputs import class_labels

    labels = class_labels(bounds)
    out = np.full(depth.shape, "", dtype=object)
    for lo, hi, label in labels:
        out[(depth >= lo) & (depth < hi)] = label
    return out


def flood_impacts(result: FloodResult, store: Any = None, params: ImpactParams | None = None, *,
                  files: Mapping[str, str | os.PathLike[str]] | None = None) -> FloodImpacts:
    """Buildings, roads, people and shelters affected by a flood run.

    Args:
        result: a finished run (`run_flood` or `FloodResult.open`).
        store: an open layer store to read the layers from (read-only is enough).
        params: thresholds and layer names.
        files: layer name -> file, read instead of the store (e.g. the sample city's GeoPackages).

    Raises:
        FloodInputError: a layer is missing, or the time is not an output time of the run.
    """
    import geopandas as gpd
    import rasterio

    p = params or ImpactParams()
    what, t = ("depth", p.time_s) if p.time_s is not None else ("max_depth", None)
    with rasterio.open(result.raster_path(what, t)) as src:
        depth = _Depth(src.read(1), src.transform)
        crs = src.crs
    arrival = None
    if (result.root / "time_to_0.15m.tif").is_file():
        with rasterio.open(result.root / "time_to_0.15m.tif") as src:
            arrival = src.read(1).astype(np.float64)
    classes = result.report.get("params", {}).get("depth_classes", [0.15, 0.3, 0.5, 1.0])
    step = depth.cell / 2

    # buildings: outline pushed out by 0.75 cell, every half cell; and cells inside (porosity)
    bld = _read(store, p.buildings, crs, files)
    geoms = shapely.make_valid(np.asarray(bld.geometry.values, dtype=object))
    ring = shapely.boundary(shapely.buffer(geoms, 0.75 * depth.cell, quad_segs=2))
    b_depth = np.maximum(depth.max_along(ring, step), depth.max_in(geoms))
    b_arrival = np.full(len(bld), np.nan)
    if arrival is not None:
        dense = shapely.segmentize(ring, step)
        xy, idx = shapely.get_coordinates(dense, return_index=True)
        arr = _Depth(arrival, depth.transform, fill=np.inf).at(xy)
        arr[arr <= 0] = np.inf
        best = np.full(len(bld), np.inf)
        np.minimum.at(best, idx, arr)
        b_arrival = np.where(np.isfinite(best), best, np.nan)
    touched = b_depth > 0.01
    affected = b_depth >= p.building_threshold_m
    uses = _col(bld, "use", default="")

    # shelters: deepest water within the radius
    sh = _read(store, p.shelters, crs, files, required=False)
    if sh is None:
        sh = gpd.GeoDataFrame({"name": []}, geometry=[], crs=crs)
    sgeom = np.asarray(sh.geometry.values, dtype=object)
    if len(sh):
        sdisc = shapely.buffer(sgeom, max(p.shelter_radius_m, 0.01), quad_segs=4)
        s_depth = np.maximum(depth.max_along(shapely.boundary(sdisc), step), depth.max_in(sdisc))
        s_depth = np.maximum(s_depth, depth.at(shapely.get_coordinates(shapely.centroid(sgeom))))
    else:
        s_depth = np.zeros(0)
    dry = s_depth < p.shelter_dry_m
    s_ids = _col(sh, "shelter_id", "id", "name", default="")
    nearest = np.full(len(bld), None, dtype=object)
    distance = np.full(len(bld), np.nan)
    assigned = np.zeros(len(sh), np.int64)
    if dry.any() and affected.any():
        dry_idx = np.flatnonzero(dry)
        tree = shapely.STRtree(sgeom[dry_idx])
        cent = shapely.centroid(geoms[affected])
        hit, dist = tree.query_nearest(cent, return_distance=True, all_matches=False)
        rows = np.flatnonzero(affected)[hit[0]]
        sel = dry_idx[hit[1]]
        nearest[rows] = s_ids[sel]
        distance[rows] = np.round(dist, 1)
        np.add.at(assigned, sel, 1)
    buildings = gpd.GeoDataFrame({
        "id": _col(bld, "code", "id", "building_id", default=""), "name": _col(bld, "name", default=""),
        "address": _col(bld, "address", "addr", default=""), "community": _col(bld, "community", default=""),
        "use": uses, "max_depth_m": np.round(b_depth, 3), "time_to_0_15m_s": np.round(b_arrival, 1),
        "depth_class": _classes(b_depth, classes), "affected": affected, "nearest_dry_shelter": nearest,
        "shelter_distance_m": distance}, geometry=geoms, crs=crs)[touched].reset_index(drop=True)

    # roads: pieces of at most road_piece_m, deepest water along each
    rd = _read(store, p.roads, crs, files, required=False)
    roads = gpd.GeoDataFrame({"name": [], "class": [], "length_m": [], "max_depth_m": [], "impassable": []},
                             geometry=[], crs=crs)
    if rd is not None and len(rd):
        pieces, src = _cut(np.asarray(rd.geometry.values, dtype=object), p.road_piece_m)
        r_depth = depth.max_along(pieces, step)
        wet = r_depth > 0.01
        roads = gpd.GeoDataFrame({"name": _col(rd, "name", default="")[src], "class": _col(rd, "class",
                                  default="")[src], "length_m": np.round(shapely.length(pieces), 1),
                                  "max_depth_m": np.round(r_depth, 3), "impassable": r_depth > p.road_threshold_m},
                                 geometry=pieces, crs=crs)[wet].reset_index(drop=True)

    # communities: buildings by centroid, affected population by the affected share of (residential) buildings
    pop = _read(store, p.population, crs, files, required=False)
    communities = gpd.GeoDataFrame({"name": []}, geometry=[], crs=crs)
    if pop is not None and len(pop):
        cgeom = np.asarray(pop.geometry.values, dtype=object)
        cent = shapely.centroid(geoms)
        tree = shapely.STRtree(cgeom)
        b_idx, c_idx = tree.query(cent, predicate="within")
        home = np.full(len(bld), -1)
        home[b_idx] = c_idx
        residential = np.isin(uses, RESIDENTIAL) if np.isin(uses, RESIDENTIAL).any() else np.ones(len(bld), bool)
        n = len(pop)
        total = np.bincount(home[home >= 0], minlength=n)
        total_res = np.bincount(home[(home >= 0) & residential], minlength=n)
        hit = np.bincount(home[(home >= 0) & affected], minlength=n)
        hit_res = np.bincount(home[(home >= 0) & affected & residential], minlength=n)
        people = np.asarray(_col(pop, "population", default=0), dtype=np.float64)
        share = np.where(total_res > 0, hit_res / np.maximum(total_res, 1), _area_share(depth, cgeom, p))
        communities = gpd.GeoDataFrame({
            "name": _col(pop, "name", default=""), "code": _col(pop, "code", default=""), "population": people,
            "buildings": total, "affected_buildings": hit, "affected_residential": hit_res,
            "affected_population": np.round(people * share).astype(np.int64)}, geometry=cgeom, crs=crs)
    shelters = gpd.GeoDataFrame({
        "id": s_ids, "name": _col(sh, "name", default=""), "capacity": _col(sh, "capacity", default=None),
        "depth_m": np.round(s_depth, 3), "dry": dry, "assigned_buildings": assigned}, geometry=sgeom, crs=crs)
    summary = {
        "depth": what if t is None else f"depth at {t:g} s",
        "buildings_affected": int(affected.sum()), "buildings_touched": int(touched.sum()),
        "buildings_total": int(len(bld)),
        "roads_impassable_m": float(roads.loc[roads["impassable"], "length_m"].sum()) if len(roads) else 0.0,
        "road_pieces_impassable": int(roads["impassable"].sum()) if len(roads) else 0,
        "affected_population": int(communities["affected_population"].sum()) if len(communities) else 0,
        "shelters_dry": int(dry.sum()), "shelters_total": int(len(sh)),
        "thresholds": {"building_m": p.building_threshold_m, "road_m": p.road_threshold_m,
                       "shelter_m": p.shelter_dry_m}}
    return FloodImpacts(buildings, roads, communities, shelters, summary)


def _cut(lines: np.ndarray, piece: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut (multi)lines into pieces of at most `piece` metres; returns the pieces and their source row."""
    parts = shapely.get_parts(lines, return_index=True)
    geoms, src = parts
    out, rows = [], []
    for g, r in zip(geoms, src, strict=True):
        length = g.length
        n = max(1, int(np.ceil(length / piece)))
        for k in range(n):
            seg = shapely.ops.substring(g, k * length / n, (k + 1) * length / n)
            if seg.length > 0:
                out.append(seg)
                rows.append(r)
    return np.asarray(out, dtype=object), np.asarray(rows, np.int64)


def _area_share(depth: _Depth, polys: np.ndarray, p: ImpactParams) -> np.ndarray:
    """Share of each polygon's cells at or above the building threshold."""
    import rasterio.features

    labels = rasterio.features.rasterize(((g, i + 1) for i, g in enumerate(polys)), out_shape=depth.data.shape,
                                         transform=depth.transform, fill=0, dtype="int32")
    n = len(polys)
    cells = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    wet = np.bincount(labels[depth.data >= p.building_threshold_m], minlength=n + 1)[1:]
    return np.where(cells > 0, wet / np.maximum(cells, 1), 0.0)


def sample_city_files() -> dict[str, Path]:
    """The sample city's layers as files (for impacts without a store)."""
    from cim.sample import default_sample

    city = default_sample()
    return {name: Path(path) for name, path in city.layers.items()}
