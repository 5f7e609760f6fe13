"""LOD2 buildings: footprints with roof shapes (cim.models.roofs), walls from the terrain up, roofs textured with the
orthophoto, tiled as 3D Tiles with per-building metadata (the same tiling and attributes as LOD1).

Heights per building: base = lowest terrain under the footprint; eave and ridge from the `eave_height` and
`ridge_height` attributes (metres above the base); when they are missing, the LOD1 height (attribute, floors x
storey height, DSM - DEM median, default; see cim.models.footprints) is taken as the roof's median height and a pitched
roof spans 1.5 m either side of it. Roof type from the `roof_type` attribute (flat/shed/gabled/hipped/pyramidal),
flat when absent or unknown.

Footprints with none of the three roof attributes, given a DSM and a DEM, get their roof from the DSM instead
(`detect_roofs`): the DSM cells inside the footprint, read window by window, are fitted with every candidate roof
(cim.models.roofs.fit_roofs), which gives the roof type, eave and ridge heights above the base and the ridge direction;
footprints with fewer than MIN_ROOF_SAMPLES cells get a flat roof at their median DSM height above the base.
Attribute values, when present, win.

Rectangles are meshed in bulk per roof type (gabled ridges and shed slopes turned to the detected direction);
other shapes one by one (straight skeleton); MultiPolygons get one solid per part under one feature ID.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from cim.geodesy import enu_frame, region_of
from cim.models.footprints import ROWS_FOLDER, BuildingOptions, take_column
from cim.models.lod1 import implicit_root, scratch_rows
from cim.models.partitioned import PartitionedFootprints, arrange_rows, prepare_partitions
from cim.models.roofs import (
    MIN_ROOF_SAMPLES,
    ROOF_TYPES,
    RoofFit,
    as_rectangle,
    building_solid,
    fit_roofs,
    flat_solids,
    orient_rectangles,
    rectangle_solids,
    roof_frames,
)
from cim.partitions import RowStore
from cim.sources import crs as crsmod
from cim.sources.footprints import Skipped, numeric_field
from cim.sources.raster import open_raster, polygons_geojson, window_over
from cim.tiling import Runner, nest_tiles, runner_scope
from tiles.compression import WEBP_QUALITY_FILLED
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable, StringColumn
from tiles.textures import encode_texture, fill_unsampled, triangle_mask
from tiles.tileset import BoundingVolume, Content, Tile, write_atomic

Progress = Callable[[str, int, int], None]

DEFAULT_HALF_PITCH = 1.5


@dataclass
class Lod2Result:
    """What the LOD2 step produced (the root tile carries absolute transforms)."""

    root: Tile
    buildings: int
    skipped: Skipped
    roof_types: dict[str, int]
    fallbacks: dict[str, int]
    fallback_ids: list[str]
    height_sources: dict[str, int]
    roof_sources: dict[str, int]
    roof_detection: dict[str, Any] | None
    tiles: int
    triangles: int
    textured: bool
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    footprints: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None  # the metadata schema of an implicit root (its tileset.json `schema`)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lod": 2,
            "implicit": self.root.implicit_tiling is not None,
            "buildings": self.buildings,
            "skipped": {"count": self.skipped.count, "reasons": self.skipped.to_dict()},
            "roof_types": self.roof_types,
            "fallbacks": self.fallbacks,
            "fallback_ids": self.fallback_ids[:20],
            "height_sources": self.height_sources,
            "roof_sources": self.roof_sources,
            "roof_detection": self.roof_detection,
            "tiles": self.tiles,
            "triangles": self.triangles,
            "textured": self.textured,
            "footprints": self.footprints,
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def roof_heights(attrs: pd.DataFrame, lod1_height: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per building: roof type (object array of ROOF_TYPES), eave and ridge heights above the base (float64)."""
    n = len(attrs)
    kinds = np.full(n, "flat", dtype=object)
    if "roof_type" in attrs.columns:
        raw = attrs["roof_type"].astype(object).where(attrs["roof_type"].notna(), "flat").to_numpy()
        raw = np.array([str(r).strip().lower() for r in raw], dtype=object)
        kinds = np.where(np.isin(raw, ROOF_TYPES), raw, "flat")
    eave = numeric_field(attrs, "eave_height")
    ridge = numeric_field(attrs, "ridge_height")
    pitched = kinds != "flat"
    half = np.where(pitched, DEFAULT_HALF_PITCH, 0.0)
    eave_missing = ~np.isfinite(eave)
    ridge_missing = ~np.isfinite(ridge)
    both = eave_missing & ridge_missing
    eave = np.where(both, np.maximum(lod1_height - half, 0.5 * lod1_height), eave)
    ridge = np.where(both, lod1_height + half, ridge)
    eave = np.where(eave_missing & ~both, np.maximum(2 * lod1_height - ridge, 0.5 * ridge), eave)
    ridge = np.where(ridge_missing & ~both, np.maximum(2 * lod1_height - eave, eave), ridge)
    ridge = np.maximum(ridge, eave)
    ridge = np.where(pitched, ridge, eave)
    return kinds, eave, ridge


def roof_attributes_present(attrs: pd.DataFrame) -> np.ndarray:
    """(k,) bool: the footprint has a `roof_type`, `eave_height` or `ridge_height` value."""
    present = np.isfinite(numeric_field(attrs, "eave_height")) | np.isfinite(numeric_field(attrs, "ridge_height"))
    if "roof_type" in attrs.columns:
        text = attrs["roof_type"].astype(object).where(attrs["roof_type"].notna(), "").astype(str).str.strip()
        present |= (text != "").to_numpy()
    return present


def _detect_block(idx: np.ndarray, d: dict[str, Any]) -> tuple[np.ndarray, RoofFit]:
    """Roofs of the footprints `idx` (one block of the DSM): their cells read in one window, fitted in bulk (a Dask
    task; `d` holds the footprints, bases and the DSM's path)."""
    import rasterio.features
    import rasterio.windows

    g = d["geoms"][idx]
    frames = roof_frames(g)
    # a partition's share of a block (`_roof_partition`): the window of the whole block's footprints, and the later
    # partitions' footprints of the block drawn last, as the whole block draws them (a cell goes to the last one)
    bounds, later = d.get("block_bounds"), d.get("later")
    with open_raster(d["dsm"]) as src:
        window = window_over(src, d["crs"], d["crs"], tuple(bounds if bounds is not None else shapely.total_bounds(g)))
        if window is None:
            return idx, RoofFit.empty(len(idx))
        z = np.ma.filled(src.read(1, window=window, masked=True).astype(np.float64), np.nan)
        tf = rasterio.windows.transform(window, src.transform)
    shapes = list(zip(polygons_geojson(frames.parts), range(1, len(frames.parts) + 1)))
    if later is not None and len(later):
        parts = shapely.get_parts(later)
        shapes += list(zip(polygons_geojson(parts), range(len(frames.parts) + 1, len(frames.parts) + len(parts) + 1)))
    labels = rasterio.features.rasterize(shapes, out_shape=z.shape, transform=tf, all_touched=False, fill=0,
                                         dtype="int32")
    labels[labels > len(frames.parts)] = 0  # cells the later partitions' footprints take
    rows, cols = np.nonzero(labels)
    values = z[rows, cols]
    ok = np.isfinite(values)
    rows, cols, values = rows[ok], cols[ok], values[ok]
    part = labels[rows, cols].astype(np.int64) - 1
    x, y = tf * (cols + 0.5, rows + 0.5)
    h = values - d["base"][idx][frames.owner[part]]
    return idx, fit_roofs(frames, part, np.asarray(x, np.float64), np.asarray(y, np.float64), h,
                          min_samples=d["min_samples"])


def detect_roofs(geoms: np.ndarray, crs: crsmod.CRSLike, base: np.ndarray, dsm: str | os.PathLike[str], *,
                 min_samples: int = MIN_ROOF_SAMPLES, block_px: int = 1024, runner: Runner | None = None
                 ) -> RoofFit:
    """Roof type, eave and ridge heights and ridge direction of footprints from a DSM (see cim.models.roofs.fit_roofs).

    The footprints are grouped by the `block_px` x `block_px` block of the DSM their centroid falls in; each group
    reads one DSM window and rasterises its footprint parts once (cells whose centre is inside), so no Python
    runs per cell or per building. Groups run as Dask tasks.

    Args:
        geoms: (k,) (Multi)Polygons in `crs`.
        crs: the footprints' CRS.
        base: (k,) float64 base height of each building (the lowest terrain under it); roof heights are above it.
        dsm: surface raster path.
        min_samples: fewest DSM cells for a fit (fewer: flat at the median height).
        block_px: side of the DSM blocks footprints are grouped by.
        runner: the `cim.tiling.Runner` the groups run on (default: a local Dask cluster when there are several
            groups, this process otherwise).

    Returns:
        One row per footprint; "no_samples" where the DSM has no valid cell inside it.
    """
    geoms = np.asarray(geoms, dtype=object)
    k = len(geoms)
    out = RoofFit.empty(k)
    if k == 0:
        return out
    with open_raster(dsm) as src:
        dsm_crs = crsmod.parse_crs(src.crs.to_wkt(), what=str(dsm))
        inv = ~src.transform
    fp_crs = crsmod.parse_crs(crs)
    g = geoms
    if not dsm_crs.equals(fp_crs):
        t = crsmod.transformer(fp_crs, dsm_crs)
        g = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    key = _block_keys(g, inv, block_px)
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    jobs = np.split(order, cuts)
    state = dict(geoms=g, base=np.asarray(base, np.float64), dsm=dsm, crs=dsm_crs, min_samples=min_samples)
    with runner_scope(runner) as run:
        for idx, fit in run.map(_detect_block, jobs, state, stage="roofs"):
            out.put(idx, fit)
    return out


# --------------------------------------------------------------------------- roofs, partition by partition
ROOF_COLUMNS = ("roof_type", "eave_height", "ridge_height")
BLOCK_PX = 1024  # the side of the DSM blocks roof detection groups footprints by (`detect_roofs`)


def _roof_attrs(rows: dict[str, Any], n: int) -> pd.DataFrame:
    """The roof attribute columns of a partition's prepared rows, as the frame `roof_heights` reads."""
    data: dict[str, Any] = {}
    for name in ROOF_COLUMNS:
        values = rows.get(f"column/{name}")
        if values is not None:
            data[name] = pd.Series(values.to_list(), dtype=object) if isinstance(values, StringColumn) else \
                pd.Series(values)
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _dsm_geoms(geoms: np.ndarray, d: dict[str, Any]) -> np.ndarray:
    """Footprints in the DSM's CRS (as `detect_roofs` puts them)."""
    if d["dsm_crs"].equals(d["crs"]):
        return geoms
    t = crsmod.transformer(d["crs"], d["dsm_crs"])
    return shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def _roof_need(job: tuple[str], d: dict[str, Any]) -> dict[int, list[float]]:
    """A partition's footprints that take their roof from the DSM, written (in the DSM's CRS, with their block)
    for the earlier partitions' tasks; per block, their extent (a Dask task)."""
    (store,) = job
    rs = RowStore(store)
    rows = rs.read(0, len(rs), names={"geometry", *(f"column/{c}" for c in ROOF_COLUMNS)})
    need = ~roof_attributes_present(_roof_attrs(rows, len(rs)))
    g = _dsm_geoms(rows["geometry"][need], d)
    keys = _block_keys(g, d["inv"], BLOCK_PX)
    RowStore.write(Path(store) / "roof-need", {"geometry": g, "key": keys})
    out: dict[int, list[float]] = {}
    for k in np.unique(keys).tolist():
        out[k] = [float(v) for v in shapely.total_bounds(g[keys == k])]
    return out


def _roof_partition(job: tuple[str, str, str], d: dict[str, Any]) -> dict[str, Any]:
    """A partition's roofs (attributes, else the DSM) and its rows as an LOD2 tile reads them, in a `RowStore`
    beside its prepared rows (a Dask task). `job`: the prepared rows' folder, the folder to write, a digest of the
    later partitions it draws (for resuming)."""
    store, folder, _ = job
    rs = RowStore(store)
    n = len(rs)
    rows = rs.read(0, n)
    geoms = rows["geometry"]
    base, height = np.load(Path(store) / "heights.npy").T.copy()
    attrs = _roof_attrs(rows, n)
    kinds, eave, ridge = roof_heights(attrs, height)
    ridge_dir, up_dir = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
    azimuth = np.full(n, np.nan)
    has_roof = roof_attributes_present(attrs)
    roof_source = np.where(has_roof, "attribute", "default").astype(object)
    counts = None
    if d["dsm"] is not None and d["dem"] is not None and not has_roof.all():
        need = np.flatnonzero(~has_roof)
        g = _dsm_geoms(geoms[need], d)
        keys = _block_keys(g, d["inv"], BLOCK_PX)
        later = [RowStore(f).read(0, len(RowStore(f))) for f in d["later"].get(store, [])]
        fit = RoofFit.empty(len(need))
        state = dict(geoms=g, base=base[need], dsm=d["dsm"], crs=d["dsm_crs"], min_samples=MIN_ROOF_SAMPLES)
        order = np.argsort(keys, kind="stable")
        for idx in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
            k = int(keys[idx[0]])
            drawn = [r["geometry"][r["key"] == k] for r in later]
            state.update(block_bounds=d["blocks"][k], later=np.concatenate(drawn) if drawn else None)
            fit.put(*_detect_block(idx, state))
        got = fit.status != "no_samples"
        at = need[got]
        kinds[at] = fit.roof_type[got]
        eave[at] = np.maximum(fit.eave[got], 0.5)
        ridge[at] = np.maximum(fit.ridge[got], eave[at])
        ridge_dir[at], up_dir[at], azimuth[at] = fit.ridge_dir[got], fit.up_dir[got], fit.ridge_azimuth[got]
        roof_source[at] = np.where(fit.status[got] == "detected", "dsm", "dsm_median")
        counts = {"footprints": len(need), **fit.counts()}
    columns = {name: v for name, v in rows.items() if name.startswith("column/")}
    columns.update({"column/roof_source": StringColumn.from_values(roof_source),
                    "column/eave_height_built": np.round(eave, 3), "column/ridge_height_built": np.round(ridge, 3),
                    "column/ridge_azimuth": np.round(azimuth, 1)})
    RowStore.write(folder, {"geometry": geoms, "kinds": StringColumn.from_values(kinds), "ids": rows["column/id"],
                            "base": base, "eave": eave, "ridge": ridge, "ridge_dir": ridge_dir, "up_dir": up_dir,
                            **columns})
    np.save(Path(folder) / "size.npy", np.maximum(ridge, np.sqrt(shapely.area(geoms))))
    return {"store": folder, "kinds": list(Counter(kinds.tolist()).items()),
            "sources": {s: int(np.sum(roof_source == s)) for s in ("attribute", "dsm", "dsm_median", "default")},
            "detection": counts}


def partitioned_roofs(fp: PartitionedFootprints, dem: Any, dsm: Any, runner: Runner, scratch: Path
                      ) -> tuple[PartitionedFootprints, dict[str, Any]]:
    """Every partition's roofs as Dask waves ("roofs-need", then "roofs": see `_roof_partition`); the footprints
    with the partitions' LOD2 rows and each building's LOD2 size (ridge or footprint, the larger), and the report's
    roof counts (as the whole city's)."""
    d: dict[str, Any] = dict(dsm=None if dsm is None else str(dsm), dem=dem, crs=fp.crs, later={}, blocks={})
    if dsm is not None and dem is not None:
        with open_raster(dsm) as src:
            d.update(dsm_crs=crsmod.parse_crs(src.crs.to_wkt(), what=str(dsm)), inv=~src.transform)
        needs = runner.map(_roof_need, [(s,) for s in fp.stores], d, stage="roofs-need",
                           cost=np.diff(fp.offsets).tolist())
        for blocks in needs:  # each block's extent over every partition: the window the whole block reads
            for k, b in blocks.items():
                have = d["blocks"].get(k)
                d["blocks"][k] = b if have is None else [min(have[0], b[0]), min(have[1], b[1]),
                                                         max(have[2], b[2]), max(have[3], b[3])]
        for i, store in enumerate(fp.stores):
            mine = set(needs[i])
            d["later"][store] = [str(Path(s) / "roof-need") for s, blocks in zip(fp.stores[i + 1:], needs[i + 1:])
                                 if mine & set(blocks)]
    jobs = [(s, str(scratch / f"p{i:05d}"), hashlib.blake2b(repr(d["later"].get(s, [])).encode(),
                                                            digest_size=8).hexdigest())
            for i, s in enumerate(fp.stores)]
    results = runner.map(_roof_partition, jobs, d, stage="roofs", cost=np.diff(fp.offsets).tolist())
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(dict(r["kinds"]))
    sources = {s: sum(r["sources"][s] for r in results) for s in ("attribute", "dsm", "dsm_median", "default")}
    detection = None
    found = [r["detection"] for r in results if r["detection"] is not None]
    if found:
        detected: Counter[str] = Counter()
        for c in found:
            detected.update(c["detected"])
        detection = {"footprints": sum(c["footprints"] for c in found), "min_samples": MIN_ROOF_SAMPLES,
                     "detected": {t: detected[t] for t in sorted(detected)},
                     "fallback_flat": sum(c["fallback_flat"] for c in found),
                     "no_samples": sum(c["no_samples"] for c in found)}
    size = np.concatenate([np.load(Path(r["store"]) / "size.npy") for r in results])
    report = {"roof_types": {k: int(v) for k, v in kinds.items()}, "roof_sources": sources, "roof_detection": detection}
    return replace(fp, stores=[r["store"] for r in results], size=size), report


def _block_keys(g: np.ndarray, inv: Any, block_px: int) -> np.ndarray:
    """(k,) int64: the DSM block (`block_px` square, `inv` the DSM's inverse transform) of each footprint's centroid."""
    c = shapely.centroid(g)
    col, row = inv * (shapely.get_x(c), shapely.get_y(c))
    return np.floor(np.asarray(row) / block_px).astype(np.int64) * 1_000_003 + np.floor(
        np.asarray(col) / block_px).astype(np.int64)


def _mesh_tile(sel: np.ndarray, j: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Solids of the buildings `sel` of the build (see `lod2_solids`)."""
    return lod2_solids(j["geoms"][sel], j["kinds"][sel], j["base"][sel], j["eave"][sel], j["ridge"][sel],
                       j["ridge_dir"][sel], j["up_dir"][sel])


def lod2_solids(geoms: np.ndarray, kinds: np.ndarray, base: np.ndarray, eave: np.ndarray, ridge: np.ndarray,
                ridge_dir: np.ndarray | None = None, up_dir: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Closed LOD2 buildings, as `cim build --level 3` makes them (also used by the planning analyses).

    Args:
        geoms: (k,) (Multi)Polygons; kinds: (k,) roof types (ROOF_TYPES); base: (k,) absolute ground heights;
            eave, ridge: (k,) roof heights above the base.
        ridge_dir, up_dir: (k, 2) detected gable and shed directions (NaN rows or None: along the long side).

    Returns:
        (positions (v, 3) float64 absolute, roof triangles (r, 3), wall and floor triangles (w, 3), building of each
        vertex (v,) (index into the inputs), the roof type built per building, fallback reasons (one per
        fallback)).
    """
    k_all = len(geoms)
    if ridge_dir is None:
        ridge_dir = np.full((k_all, 2), np.nan)
    if up_dir is None:
        up_dir = np.full((k_all, 2), np.nan)
    pos_parts, roof_parts, wall_parts, owner_parts = [], [], [], []
    n = 0
    built = ["flat"] * k_all
    reasons: list[str] = []
    rect_groups: dict[str, list[tuple[int, np.ndarray]]] = {}
    others: list[tuple[int, Any]] = []
    flat = (kinds == "flat") | (ridge <= eave)
    if flat.any():
        fb = np.flatnonzero(flat)
        pos, roof, walls, owner = flat_solids(geoms[fb], base[fb], base[fb] + eave[fb])
        pos_parts.append(pos)
        roof_parts.append(roof)
        wall_parts.append(walls)
        owner_parts.append(fb[owner])
        n += len(pos)
    for b in range(k_all):
        if flat[b]:
            continue
        for part in shapely.get_parts(geoms[b]):
            corners = as_rectangle(part)
            kind = kinds[b]
            if corners is not None:
                lengths = np.linalg.norm(corners[[1, 2]] - corners[[0, 1]], axis=1)
                if kind == "hipped" and lengths[0] - lengths[1] < 1e-3:
                    kind = "pyramidal"
                rect_groups.setdefault(kind, []).append((b, corners))
            else:
                others.append((b, part))
    for kind, items in rect_groups.items():
        locs = np.array([i for i, _ in items])
        corners = orient_rectangles(np.stack([c for _, c in items]), kind, ridge_dir[locs], up_dir[locs])
        bb = base[locs]
        pos, roof, walls, floor = rectangle_solids(corners, bb, bb + eave[locs], bb + ridge[locs], kind)
        k, nv = pos.shape[:2]
        offs = (n + np.arange(k) * nv)[:, None, None]
        pos_parts.append(pos.reshape(-1, 3))
        roof_parts.append((roof[None] + offs).reshape(-1, 3))
        wall_parts.append((np.vstack([walls, floor])[None] + offs).reshape(-1, 3))
        owner_parts.append(np.repeat(locs, nv))
        n += k * nv
        for i in locs.tolist():
            built[i] = "flat" if ridge[i] <= eave[i] else kinds[i]
    for b, part in others:
        b0 = float(base[b])
        s = building_solid(part, b0, b0 + float(eave[b]), b0 + float(ridge[b]), kinds[b])
        pos_parts.append(s.positions)
        roof_parts.append(s.roof + n)
        wall_parts.append(np.vstack([s.walls, s.floor]) + n)
        owner_parts.append(np.full(len(s.positions), b))
        n += len(s.positions)
        built[b] = s.roof_type
        if s.fallback:
            reasons.append(s.fallback.split(";")[0].split(" (")[0])
    return (np.vstack(pos_parts), np.vstack(roof_parts), np.vstack(wall_parts), np.concatenate(owner_parts),
            built, reasons)


def _unindexed(pos: np.ndarray, tris: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    """Flat-shaded triangles: three own vertices each, face normals, feature IDs."""
    corners = pos[tris.reshape(-1)]
    tri = corners.reshape(-1, 3, 3)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    return corners, np.repeat(nrm, 3, axis=0), owner[tris.reshape(-1)], np.arange(len(corners)).reshape(-1, 3)


def _ortho_texture(bounds: tuple[float, float, float, float], j: dict[str, Any],
                   uv: np.ndarray | None = None, triangles: np.ndarray | None = None) -> tuple[bytes, str] | None:
    """The orthophoto under `bounds` as the roofs' texture. With the roofs' `uv` and `triangles`, texels no roof
    samples are filled from the roof texels (`tiles.textures.fill_unsampled`; not under `textures="original"`,
    which keeps the builder's texture as before) and a WebP is written at `WEBP_QUALITY_FILLED`: ground between
    the buildings is never drawn on a roof, and left as it is it takes most of the texture's bytes."""
    path = j.get("ortho")
    if path is None:
        return None
    import rasterio
    import rasterio.windows

    with rasterio.open(path) as src:
        if src.crs is None or not crsmod.parse_crs(src.crs.to_wkt()).equals(j["crs"]):
            return None
        win = rasterio.windows.from_bounds(*bounds, transform=src.transform)
        res = abs(src.transform.a)
        w = int(min(j["texture_px"], max(8, (bounds[2] - bounds[0]) / res)))
        h = int(min(j["texture_px"], max(8, (bounds[3] - bounds[1]) / res)))
        img = src.read([1, 2, 3], window=win, out_shape=(3, h, w), boundless=True, fill_value=160)
    pixels = np.moveaxis(img, 0, -1).astype(np.uint8)
    if uv is None or triangles is None or j["glb"].textures == "original":
        return encode_texture(pixels, j["glb"], 85)
    pixels = fill_unsampled(pixels, triangle_mask(uv, triangles, (h, w)))
    return encode_texture(pixels, j["glb"], 85, webp_quality=WEBP_QUALITY_FILLED)


def _write_tile(job: tuple[str, int, int, int, float], shared: dict[str, Any]
                ) -> tuple[str, Tile, int, list[str], list[str]]:
    """Mesh, texture, encode and write one tile (a Dask task): its buildings are rows `start` to `stop` of its
    group's `cim.partitions.RowStore` (rows in tile order: `cim.models.partitioned.arrange_rows`); `shared` holds
    a few small values (the stores' folder, the CRS, options)."""
    path, group, start, stop, error = job
    rows = RowStore(Path(shared["rows"]) / f"g{group:05d}").read(start, stop)
    j = {**shared, "geoms": rows.pop("geometry"), "kinds": np.asarray(rows.pop("kinds").to_list(), dtype=object),
         "ids": np.asarray(rows.pop("ids").to_list(), dtype=object), "base": rows.pop("base"),
         "eave": rows.pop("eave"), "ridge": rows.pop("ridge"), "ridge_dir": rows.pop("ridge_dir"),
         "up_dir": rows.pop("up_dir"), "columns": {name[7:]: v for name, v in rows.items()}}
    sel = np.arange(stop - start)
    pos, roof, walls, owner, built, reasons = _mesh_tile(sel, j)
    ecef = j["vertical"].apply_ecef(crsmod.to_ecef(j["crs"], pos[:, 0], pos[:, 1], pos[:, 2]))
    frame = enu_frame((ecef.min(axis=0) + ecef.max(axis=0)) / 2)
    local = frame.to_local(ecef)
    prims = []
    rp, rn, rf, rt = _unindexed(local, roof, owner)
    x0, y0, x1, y1 = (float(pos[:, 0].min()), float(pos[:, 1].min()), float(pos[:, 0].max()),
                      float(pos[:, 1].max()))
    src_xy = pos[roof.reshape(-1), :2]
    uv = np.column_stack([(src_xy[:, 0] - x0) / max(x1 - x0, 1e-9), (y1 - src_xy[:, 1]) / max(y1 - y0, 1e-9)])
    tex = _ortho_texture((x0, y0, x1, y1), j, uv, rt)
    if tex is None:
        uv = None
    prims.append(Primitive(positions=rp.astype(np.float32), indices=rt.astype(np.uint32), normals=rn,
                           texcoords=uv, feature_ids=rf,
                           material=Material(texture=tex[0], mime_type=tex[1],  # type: ignore[arg-type]
                                             base_color=(1, 1, 1, 1)) if tex else Material(base_color=j["roof_color"])))
    wp, wn, wf, wt = _unindexed(local, walls, owner)
    prims.append(Primitive(positions=wp.astype(np.float32), indices=wt.astype(np.uint32), normals=wn,
                           feature_ids=wf, material=Material(base_color=j["color"])))
    cols = {c: take_column(v, sel) for c, v in j["columns"].items()}
    cols["roof_type_built"] = np.asarray(built, dtype=object)
    uri = f"buildings/{path}.glb"
    implicit = j.get("implicit", False)  # a tile of an implicit tree has no transform: the glb places itself
    content = MeshContent(prims, PropertyTable("building", cols), placement=frame.matrix if implicit else None)
    write_atomic(j["out"] / uri, content.to_glb(j["glb"]))
    region = region_of(ecef, pad_m=0.01)
    tile = Tile(bounding_volume=BoundingVolume(region=region), geometric_error=error, refine="ADD",
                content=Content(uri=uri, bounding_volume=BoundingVolume(region=region)),
                transform=None if implicit else frame.column_major())
    fallback_ids = [str(j["ids"][sel[i]]) for i, b in enumerate(built) if b != j["kinds"][sel[i]]]
    return path, tile, len(rt) + len(wt), reasons, fallback_ids


def build_lod2_buildings(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    ortho: str | os.PathLike[str] | None = None,
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
    texture_px: int = 1024,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> Lod2Result:
    """Build LOD2 buildings as 3D Tiles content under `out_dir/buildings/`, one Dask task per tile (see the module
    docstring).

    Args:
        footprints: footprints file with optional `roof_type`, `eave_height`, `ridge_height` attributes.
        dem: terrain raster for the buildings' bases; None puts every base at height 0.
        out_dir: the tileset folder.
        ortho: orthophoto for the roof textures (same CRS as the footprints), or None for plain roofs.
        dsm: surface raster for the roofs of footprints without roof attributes (with a DEM; see the module
            docstring) and for the heights of buildings without height attributes.
        options: see cim.models.footprints.BuildingOptions (heights, tile capacity, colours, workers).
        crs: the footprints' CRS when the file declares none.
        texture_px: largest side of a tile's roof texture.
        progress: called as progress(stage, done, total) (when no `runner` is given).
        runner: the `cim.tiling.Runner` the roof detection and tile tasks run on; by default a local Dask cluster
            of `options.workers` processes (one per core).
    """
    options = options or BuildingOptions()
    t0 = time.perf_counter()
    out = Path(out_dir)
    scratch = out / ROWS_FOLDER
    with runner_scope(runner, options.workers, progress) as run, scratch_rows(scratch, run):
        fp = prepare_partitions(footprints, dem, runner=run, scratch=scratch / "footprints", dsm=dsm,
                                options=options, crs=crs)
        stages = dict(fp.seconds)
        tick = time.perf_counter()
        fp, roofs = partitioned_roofs(fp, dem, dsm, run, scratch / "roofs")
        stages["roofs"] = time.perf_counter() - tick
        tick = time.perf_counter()
        plan = fp.plan_tiles(options)
        implicit, nodes = plan.implicit, plan.nodes
        stages["tiling"] = time.perf_counter() - tick
        tick = time.perf_counter()
        (out / "buildings").mkdir(parents=True, exist_ok=True)
        # every tile's rows side by side on disk, in tile order: a task reads its own rows, nothing else
        spans = arrange_rows(fp, nodes, run, scratch / "lod2", stage="lod2-rows")
        stages["partition"] = time.perf_counter() - tick
        tick = time.perf_counter()
        state = dict(rows=str(scratch / "lod2"), crs=fp.crs, out=out, ortho=None if ortho is None else str(ortho),
                     texture_px=texture_px, color=options.color, roof_color=(0.62, 0.36, 0.30, 1.0),
                     glb=options.glb, vertical=options.vertical_datum, implicit=implicit)
        jobs = [(path, *span, node.error) for (node, path), span in zip(nodes, spans)]
        results = run.map(_write_tile, jobs, state, stage="lod2", cost=[j[3] - j[2] for j in jobs])
    tiles = {path: tile for path, tile, _, _, _ in results}
    triangles = sum(r[2] for r in results)
    reasons: Counter[str] = Counter()
    fallback_ids: list[str] = []
    for r in results:
        reasons.update(r[3])
        fallback_ids += r[4]
    stages["tiles"] = time.perf_counter() - tick
    schema = None
    if implicit:
        root, schema = implicit_root(out, plan.inodes, tiles, plan.root_cell)  # type: ignore[arg-type]
    else:
        root = nest_tiles(nodes, tiles)  # type: ignore[arg-type]
    return Lod2Result(
        root=root, buildings=len(fp), skipped=fp.skipped, roof_types=roofs["roof_types"],
        fallbacks=dict(reasons), fallback_ids=fallback_ids, height_sources=fp.height_sources,
        roof_sources=roofs["roof_sources"], roof_detection=roofs["roof_detection"],
        tiles=len(nodes), triangles=triangles, textured=ortho is not None,
        seconds=time.perf_counter() - t0, stage_seconds=stages, footprints=fp.describe(), notes=fp.notes,
        schema=schema)


__all__ = ["Lod2Result", "build_lod2_buildings", "detect_roofs", "lod2_solids", "roof_attributes_present",
           "roof_heights"]
