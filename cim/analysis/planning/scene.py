"""The city the planning analyses look at: buildings (LOD1 prisms or LOD2 roofs), terrain, a proposed scheme, and an
Embree ray tracer over all of it.

A `CityScene` is built from the same inputs as `cim build` (footprints, DEM, level) with the same rules (stable
IDs, cleaning, base = lowest terrain under the footprint, heights from attributes / floors / default), so the
analyses see the geometry the 3D model shows. Geometry is held in float64 in the footprints' projected CRS;
the ray tracer gets it in float32 relative to a local origin near the centre (float32 would lose half a metre at
Gauss-Krüger northings).

    >>> scene = CityScene.sample()                       # the sample city, level 2
    >>> scene = CityScene.open("footprints.gpkg", dem="dem.tif", level=3)
    >>> proposed = scene.with_scheme(Scheme.read("scheme.geojson"))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from cim.analysis.planning.sun import Site
from cim.errors import InputError, InputNotFoundError
from cim.models.footprints import BuildingOptions, footprint_heights, prepare_footprints
from cim.models.roofs import flat_solids
from cim.sources.crs import lonlat, parse_crs, transformer
from cim.sources.footprints import numeric_field
from cim.sources.raster import read_dem

TERRAIN = -2  # owner of terrain triangles
NOTHING = -1  # owner when a ray hits nothing
OPEN_MARGIN = 500.0  # metres around the buildings that count as the model when there is no DEM
FLAT_GROUND_MARGIN = 50_000.0  # metres the flat ground of a scene without DEM reaches beyond its buildings
SCHEME_PREFIX = "scheme:"


@dataclass
class BuildingSet:
    """Buildings as the analyses need them (one row per building; arrays of equal length k).

    Attributes:
        ids: (k,) object str, stable building IDs (scheme buildings are prefixed "scheme:").
        geoms: (k,) shapely (Multi)Polygons in the scene's CRS.
        base: (k,) float64 absolute height of the ground floor (lowest terrain under the footprint).
        height: (k,) float64 LOD1 height above the base.
        eave, ridge: (k,) float64 roof heights above the base (both = height for flat roofs and at level 2).
        roof: (k,) object roof type ("flat", "gabled", ...).
        floors: (k,) float64 number of floors, NaN when unknown.
        use: (k,) object use / function attribute ("住宅", ...), "" when unknown.
        name: (k,) object name attribute, "" when unknown.
        scheme: (k,) bool, part of a proposed scheme.
    """

    ids: np.ndarray
    geoms: np.ndarray
    base: np.ndarray
    height: np.ndarray
    eave: np.ndarray
    ridge: np.ndarray
    roof: np.ndarray
    floors: np.ndarray
    use: np.ndarray
    name: np.ndarray
    scheme: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> BuildingSet:
        return BuildingSet(**{f: getattr(self, f)[idx] for f in self.__dataclass_fields__})

    @staticmethod
    def concat(parts: list[BuildingSet]) -> BuildingSet:
        return BuildingSet(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in BuildingSet.__dataclass_fields__})

    def index(self) -> dict[str, int]:
        return {str(i): k for k, i in enumerate(self.ids)}

    def rows(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """(n,) int64 row of each building ID in `ids`, in their order.

        Raises:
            InputError: an ID that is not a building of the set (the first five are named).
        """
        known = self.index()
        unknown = [i for i in ids if str(i) not in known]
        if unknown:
            raise InputError(f"buildings {unknown[:5]} are not in the model; pass IDs of its buildings")
        return np.array([known[str(i)] for i in ids], np.int64)

    def top(self, level: int) -> np.ndarray:
        """(k,) float64 absolute height of each building's highest point (LOD1 top at level 2, ridge at level 3)."""
        return self.base + (self.height if level < 3 else np.maximum(self.ridge, self.eave))


def _same_crs(a: Any, b: Any) -> bool:
    def wkt(c: Any) -> str:
        return c.to_wkt() if hasattr(c, "to_wkt") else str(c)

    return bool(parse_crs(wkt(a)).equals(parse_crs(wkt(b))))


def _text_column(attrs: pd.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    for n in names:
        if n in attrs.columns:
            col = attrs[n].astype(object)
            return np.array(["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                             for v in col], dtype=object)
    return np.full(len(attrs), "", dtype=object)


def _roofs(attrs: pd.DataFrame, height: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if level < 3:
        return np.full(len(height), "flat", dtype=object), height.copy(), height.copy()
    from cim.models.lod2 import roof_heights

    kinds, eave, ridge = roof_heights(attrs, height)
    return kinds, eave, ridge


@dataclass
class Scheme:
    """A proposed massing (体块): footprints with heights, checked and analysed before it is built.

    Attributes:
        frame: the footprints (any CRS that says what it is) with a `height` (m) or `floors` column per footprint;
            optional `id`, `name`, `use`, `base` (absolute ground height), `roof_type`, `eave_height`,
            `ridge_height`.
        replaces: IDs of existing buildings the scheme demolishes.
        replace_overlapping: also demolish existing buildings whose footprints overlap a scheme footprint.
        name: a label for reports.
    """

    frame: gpd.GeoDataFrame
    replaces: tuple[str, ...] = ()
    replace_overlapping: bool = True
    name: str = "scheme"

    @classmethod
    def read(cls, path: str | os.PathLike[str], **kw: Any) -> Scheme:
        """A scheme from a vector file (GeoJSON, GeoPackage, Shapefile, GeoParquet, ...).

        Raises:
            InputNotFoundError: no such file.
            InputError: unreadable, no CRS, or no footprint (see `from_frame`).
        """
        p = Path(path)
        if not p.exists():
            raise InputNotFoundError(f"scheme file {p} does not exist")
        try:
            gdf = gpd.read_parquet(p) if p.suffix.lower() in (".parquet", ".geoparquet") else gpd.read_file(p)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
            raise InputError(f"scheme file {p} is not a vector file GDAL can read: {exc}") from exc
        return cls.from_frame(gdf, name=kw.pop("name", p.stem), source=str(p), **kw)

    @classmethod
    def from_geojson(cls, doc: dict[str, Any], **kw: Any) -> Scheme:
        """A scheme from a GeoJSON FeatureCollection in lon/lat (CRS84), e.g. drawn in the viewer."""
        if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
            raise InputError("a scheme must be a GeoJSON FeatureCollection of footprint polygons with a height")
        feats = doc.get("features") or []
        try:
            gdf = gpd.GeoDataFrame.from_features(feats, crs="OGC:CRS84") if feats else gpd.GeoDataFrame(
                geometry=[], crs="OGC:CRS84")
        except Exception as exc:  # noqa: BLE001 - malformed features
            raise InputError(f"the scheme's GeoJSON features cannot be read: {exc}") from exc
        return cls.from_frame(gdf, source="GeoJSON", **kw)

    @classmethod
    def from_frame(cls, gdf: gpd.GeoDataFrame, *, name: str = "scheme", source: str = "scheme",
                   replaces: tuple[str, ...] | list[str] = (), replace_overlapping: bool = True) -> Scheme:
        """Check a scheme's footprints: polygons, a CRS, and a positive height (or floors) each.

        Raises:
            InputError: no CRS, no footprint, a footprint that is not a polygon, or without a height.
        """
        if gdf.crs is None:
            raise InputError(f"{source} declares no CRS; save it with one (GeoJSON is lon/lat)")
        gdf = gdf[~gdf.geometry.isna() & ~gdf.geometry.is_empty].reset_index(drop=True)
        if len(gdf) == 0:
            raise InputError(f"{source} holds no footprint: a scheme needs at least one polygon with a height")
        kinds = set(gdf.geometry.geom_type)
        if not kinds <= {"Polygon", "MultiPolygon"}:
            raise InputError(f"{source}: scheme footprints must be polygons, not {sorted(kinds - {'Polygon', 'MultiPolygon'})}")
        h = numeric_field(gdf, "height" if "height" in gdf.columns else None)
        f = numeric_field(gdf, "floors" if "floors" in gdf.columns else None)
        ok = (np.isfinite(h) & (h > 0)) | (np.isfinite(f) & (f > 0))
        if not ok.all():
            bad = np.flatnonzero(~ok)[:5].tolist()
            raise InputError(f"{source}: footprints {bad} have no positive `height` (m) or `floors`; give every "
                             f"scheme footprint its height")
        return cls(gdf, tuple(str(r) for r in replaces), replace_overlapping, name)


class RayTracer:
    """Embree (through embreex) over the scene's triangles, in float32 local coordinates.

    Triangles are double-sided; each belongs to an owner (a building index, or `TERRAIN`). Queries are thread-safe
    once the scene is committed (done in the constructor), and the ray loop runs without the GIL, so callers split
    large batches across threads.
    """

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        import embreex.mesh_construction as mc
        import embreex.rtcore_scene as rs

        self._scene = rs.EmbreeScene()
        self._owners: list[np.ndarray] = []
        self.triangles = 0
        for verts, tris, owner in parts:
            if len(tris) == 0:
                continue
            mc.TriangleMesh(self._scene, np.ascontiguousarray(verts, np.float32),
                            np.ascontiguousarray(tris, np.int32))
            self._owners.append(np.asarray(owner, np.int32))
            self.triangles += len(tris)
        # commit now (embreex commits on the first query, which is not thread-safe)
        self._scene.run(np.zeros((1, 3), np.float32), np.array([[0, 0, 1]], np.float32), query="OCCLUDED")
        self._owner_of = np.concatenate(self._owners) if self._owners else np.zeros(0, np.int32)
        self._offsets = np.cumsum([0] + [len(o) for o in self._owners])

    def occluded(self, origins: np.ndarray, directions: np.ndarray, tfar: np.ndarray | float | None = None
                 ) -> np.ndarray:
        """(n,) bool: the ray from each origin along its direction hits a triangle before `tfar` (metres).

        Args:
            origins: (n, 3) float32 local coordinates.
            directions: (n, 3) or (1, 3) float32 unit vectors.
            tfar: (n,) float32 or one number; default unbounded.
        """
        o = np.ascontiguousarray(origins, np.float32)
        if len(o) == 0:
            return np.zeros(0, bool)
        d = np.ascontiguousarray(directions, np.float32)
        # an occlusion query only reads the lengths (embreex writes them for INTERSECT / DISTANCE only)
        dists = None if tfar is None else (float(tfar) if np.isscalar(tfar) else np.ascontiguousarray(tfar, np.float32))
        return self._scene.run(o, d, dists=dists, query="OCCLUDED") == 0

    def first_hit(self, origins: np.ndarray, directions: np.ndarray, tfar: np.ndarray | float | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The first thing each ray hits: (owner (n,) int32: building index, `TERRAIN` or `NOTHING`; distance (n,)
        float32, inf when nothing)."""
        o = np.ascontiguousarray(origins, np.float32)
        if len(o) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        d = np.ascontiguousarray(directions, np.float32)
        n = len(o)
        dists = np.full(n, 1e37, np.float32) if tfar is None else (
            np.full(n, float(tfar), np.float32) if np.isscalar(tfar) else np.ascontiguousarray(tfar, np.float32).copy())
        out = self._scene.run(o, d, dists=dists, output=True)
        geom, prim = out["geomID"], out["primID"]
        owner = np.full(n, NOTHING, np.int32)
        hit = geom >= 0
        owner[hit] = self._owner_of[self._offsets[geom[hit]] + prim[hit]]
        dist = np.where(hit, out["tfar"], np.inf).astype(np.float32)
        return owner, dist


@dataclass
class CityScene:
    """Buildings and terrain of one city model, ready for the planning analyses.

    Attributes:
        buildings: every building (existing, then scheme buildings when a scheme is attached).
        crs: the projected CRS of all coordinates.
        level: 2 (LOD1 prisms) or 3 (LOD2 roofs from attributes).
        dem: the terrain grid (heights float64 NaN = nodata, transform, crs), or None (flat ground at z = 0).
        origin: (3,) float64 local origin of the ray tracer (x, y, z).
        scheme_name: the attached scheme's label, or None.
        removed: IDs of existing buildings the scheme demolished.
        source: where the scene came from (for reports).
    """

    buildings: BuildingSet
    crs: Any
    level: int = 2
    dem: Any = None
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scheme_name: str | None = None
    removed: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)
    terrain_tolerance: float = 0.1
    _tracer: RayTracer | None = field(default=None, repr=False)
    _terrain: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, buildings: str | os.PathLike[str], dem: str | os.PathLike[str] | None = None, *, level: int = 2,
             crs: str | None = None, options: BuildingOptions | None = None) -> CityScene:
        """A scene from a footprints file and a DEM, with `cim build`'s rules for IDs, bases and heights.

        Args:
            buildings: footprints file (any GDAL vector format or GeoParquet) in a projected CRS.
            dem: terrain raster (None: flat ground at height 0, no terrain obstruction).
            level: 2 (LOD1 prisms) or 3 (LOD2 roofs from `roof_type`, `eave_height`, `ridge_height`).
            crs: CRS of a footprints file that declares none.
            options: height field, floors field, storey height, default height, ID field (as `cim build`).

        Raises:
            InputError: level not 2 or 3, unreadable inputs, no buildable footprint.
        """
        if level not in (2, 3):
            raise InputError(f"level {level!r}: the planning analyses use level 2 (LOD1 prisms) or 3 (LOD2 roofs)")
        options = options or BuildingOptions()
        fp = prepare_footprints(buildings, dem, options=options, crs=crs)
        kinds, eave, ridge = _roofs(fp.attrs, fp.height, level)
        floors = numeric_field(fp.attrs, fp.floors_field)
        bs = BuildingSet(ids=np.asarray(fp.ids, dtype=object), geoms=np.asarray(fp.geoms, dtype=object),
                         base=np.asarray(fp.base, np.float64), height=np.asarray(fp.height, np.float64),
                         eave=np.asarray(eave, np.float64), ridge=np.asarray(ridge, np.float64), roof=kinds,
                         floors=floors, use=_text_column(fp.attrs, ("use", "function", "用途", "usage")),
                         name=_text_column(fp.attrs, ("name", "名称")), scheme=np.zeros(len(fp.ids), bool))
        grid = read_dem(dem, fp.crs.to_wkt() if crs is None else crs) if dem is not None else None
        return cls._make(bs, fp.crs, level, grid, {"buildings": str(buildings), "dem": None if dem is None
                                                   else str(dem), "level": level})

    @classmethod
    def from_frame(cls, footprints: gpd.GeoDataFrame, dem: str | os.PathLike[str] | None = None, *,
                   level: int = 2, options: BuildingOptions | None = None) -> CityScene:
        """A scene from footprints in memory (a GeoDataFrame in a projected CRS), with the rules of `open`."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cim-scene-") as tmp:
            path = Path(tmp) / "footprints.parquet"
            footprints.to_parquet(path)
            scene = cls.open(path, dem, level=level, options=options)
        scene.source["buildings"] = "GeoDataFrame"
        return scene

    @classmethod
    def sample(cls, level: int = 2) -> CityScene:
        """The embedded sample city (`cim.sample.default_sample()`)."""
        from cim.sample import default_sample

        city = default_sample()
        return cls.open(city.buildings, city.dem, level=level)

    @classmethod
    def from_build(cls, model_dir: str | os.PathLike[str], level: int | None = None) -> CityScene:
        """The scene of a `cim build` output, from the inputs its `build.json` names (footprints, DEM, level).

        Raises:
            InputNotFoundError: no build.json, or an input it names is gone.
            InputError: the model was built without footprints (terrain only, or an oblique production).
        """
        root = Path(model_dir)
        report_path = root / "build.json"
        if not report_path.is_file():
            raise InputNotFoundError(f"{report_path} does not exist; pass a folder written by `cim build`")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        inputs = report.get("inputs") or {}
        fp, dem = inputs.get("buildings"), inputs.get("dem")
        if not fp:
            raise InputError(f"model {root} was built without building footprints; the planning analyses need them")

        def locate(p: str | None) -> str | None:
            if not p:
                return None
            for cand in (Path(p), root / p, root.parent / p):  # as written, else relative to the model
                if cand.exists():
                    return str(cand)
            raise InputNotFoundError(f"model {root}: its input {p} is gone; rebuild the model or pass the inputs")

        fp, dem = locate(fp), locate(dem)
        lvl = level or int(report.get("level") or 2)
        return cls.open(fp, dem, level=3 if lvl >= 3 else 2)

    @classmethod
    def _make(cls, bs: BuildingSet, crs: Any, level: int, grid: Any, source: dict[str, Any]) -> CityScene:
        b = np.asarray(shapely.total_bounds(bs.geoms), np.float64)
        if grid is not None:
            d = grid.bounds
            b = np.array([min(b[0], d[0]), min(b[1], d[1]), max(b[2], d[2]), max(b[3], d[3])])
        z0 = float(np.nanmedian(bs.base)) if len(bs) else 0.0
        origin = np.array([round((b[0] + b[2]) / 2), round((b[1] + b[3]) / 2), round(z0)], np.float64)
        return cls(buildings=bs, crs=crs, level=level, dem=grid, origin=origin, source=source)

    def with_scheme(self, scheme: Scheme) -> CityScene:
        """This scene with a proposed scheme built into it (and the buildings it replaces demolished).

        Scheme footprints are reprojected to the scene's CRS; each gets its base from the terrain (lowest under it,
        as in `cim build`) unless it has a `base`, and its height from `height`, else `floors` x 3 m.

        Raises:
            InputError: a scheme footprint outside the terrain, or a replaced ID that does not exist.
        """
        gdf = scheme.frame.to_crs(self.crs)
        geoms = np.asarray(shapely.make_valid(gdf.geometry.to_numpy()), dtype=object)
        k = len(geoms)
        h = numeric_field(gdf, "height" if "height" in gdf.columns else None)
        f = numeric_field(gdf, "floors" if "floors" in gdf.columns else None)
        height = np.where(np.isfinite(h) & (h > 0), h, f * 3.0)
        base = numeric_field(gdf, "base" if "base" in gdf.columns else None)
        if self.dem is not None and not np.isfinite(base).all():
            lowest, _ = footprint_heights(geoms, self.crs, self.dem.path)
            missing = ~np.isfinite(base)
            base[missing] = lowest[missing]
            outside = ~np.isfinite(base)
            if outside.any():
                raise InputError(f"scheme {scheme.name!r}: footprints {np.flatnonzero(outside)[:5].tolist()} lie "
                                 f"outside the terrain model; draw them inside the city")
        base = np.where(np.isfinite(base), base, 0.0)
        raw_ids = _text_column(gdf, ("id", "code", "name"))
        ids = np.array([SCHEME_PREFIX + (r or f"{scheme.name}-{i + 1}") for i, r in enumerate(raw_ids)], dtype=object)
        if len(set(ids)) < len(ids):
            ids = np.array([f"{SCHEME_PREFIX}{scheme.name}-{i + 1}" for i in range(k)], dtype=object)
        attrs = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        kinds, eave, ridge = _roofs(attrs, height, self.level)
        new = BuildingSet(ids=ids, geoms=geoms, base=base, height=height, eave=eave, ridge=ridge, roof=kinds,
                          floors=f, use=_text_column(gdf, ("use", "function", "用途")),
                          name=_text_column(gdf, ("name", "名称")), scheme=np.ones(k, bool))
        existing = self.buildings
        known = existing.index()
        unknown = [r for r in scheme.replaces if r not in known]
        if unknown:
            raise InputError(f"scheme {scheme.name!r} replaces {unknown[:5]}, which are not buildings of the model")
        drop = np.zeros(len(existing), bool)
        drop[[known[r] for r in scheme.replaces]] = True
        if scheme.replace_overlapping and k:
            tree = shapely.STRtree(existing.geoms)
            pairs = tree.query(geoms, predicate="intersects")
            for s, e in zip(*pairs):
                inter = shapely.area(shapely.intersection(geoms[s], existing.geoms[e]))
                if inter > 0.01 * min(shapely.area(geoms[s]), shapely.area(existing.geoms[e])):
                    drop[e] = True
        kept = existing.take(np.flatnonzero(~existing.scheme & ~drop))
        out = replace(self, buildings=BuildingSet.concat([kept, new]), scheme_name=scheme.name,
                      removed=tuple(str(i) for i in existing.ids[drop]), _tracer=None,
                      _lock=threading.Lock())
        return out

    def without(self, ids: list[str] | np.ndarray) -> CityScene:
        """This scene without the buildings `ids` (for "what does this building change" questions).

        Raises:
            InputError: an ID that is not a building of the scene.
        """
        keep = np.ones(len(self.buildings), bool)
        keep[self.buildings.rows(ids)] = False
        return replace(self, buildings=self.buildings.take(np.flatnonzero(keep)), _tracer=None,
                       _lock=threading.Lock())

    # ------------------------------------------------------------------ geometry
    @property
    def site(self) -> Site:
        """Where the sun is seen from: the scene's centre (lon, lat, ground height, grid convergence)."""
        lon, lat = lonlat(self.crs, np.array([self.origin[0]]), np.array([self.origin[1]]))
        lon0, lat0 = float(lon[0]), float(lat[0])
        to_grid = transformer("EPSG:4326", self.crs)
        x0, y0 = to_grid.transform(lon0, lat0)
        x1, y1 = to_grid.transform(lon0, lat0 + 1e-4)
        convergence = math.degrees(math.atan2(x1 - x0, y1 - y0))  # grid azimuth of true north
        return Site(lon=lon0, lat=lat0, elevation=float(self.origin[2]), convergence=convergence)

    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of the model: the terrain's extent, else the buildings' plus `OPEN_MARGIN`."""
        if self.dem is not None:
            return tuple(float(v) for v in self.dem.bounds)  # type: ignore[return-value]
        b = shapely.total_bounds(self.buildings.geoms)
        m = OPEN_MARGIN
        return (float(b[0] - m), float(b[1] - m), float(b[2] + m), float(b[3] + m))

    def building_mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every building as closed triangles: positions (v, 3) float64 absolute, triangles (t, 3) int64, owner
        (t,) int32 building index. Level 2: LOD1 prisms; level 3: LOD2 roofs (as `cim build --level 3`)."""
        bs = self.buildings
        if len(bs) == 0:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int32)
        if self.level >= 3:
            from cim.models.lod2 import lod2_solids

            pos, roof, rest, vowner, _, _ = lod2_solids(bs.geoms, bs.roof, bs.base, bs.eave, bs.ridge)
            tris = np.vstack([roof, rest])
            return pos, tris, vowner[tris[:, 0]].astype(np.int32)
        pos, roof, rest, vowner = flat_solids(bs.geoms, bs.base, bs.base + bs.height)
        tris = np.vstack([roof, rest])
        return pos, tris, vowner[tris[:, 0]].astype(np.int32)

    def terrain_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The DEM as a TIN: positions (v, 3) float64 in the scene's CRS, triangles (t, 3) int64. Without a DEM:
        flat ground at height 0 reaching `FLAT_GROUND_MARGIN` beyond the buildings.

        The TIN is pydelatin's on the DEM samples (cell centres) at `terrain_tolerance` metres (0.1 by default:
        every DEM sample within 10 cm of the surface), which is 10-100 times fewer triangles than the full grid on
        real terrain and keeps the ray tracer quick to build. Nodata samples are filled from their nearest valid
        sample for the fit; triangles with a nodata corner are dropped.
        """
        if self._terrain is not None:
            return self._terrain
        if self.dem is None:  # flat ground at height 0, far beyond the buildings
            b = shapely.total_bounds(self.buildings.geoms) if len(self.buildings) else np.r_[self.origin[:2],
                                                                                             self.origin[:2]]
            m = FLAT_GROUND_MARGIN
            pos = np.array([[b[0] - m, b[1] - m, 0.0], [b[2] + m, b[1] - m, 0.0], [b[2] + m, b[3] + m, 0.0],
                            [b[0] - m, b[3] + m, 0.0]])
            self._terrain = (pos, np.array([[0, 1, 2], [0, 2, 3]], np.int64))
            return self._terrain
        from pydelatin import Delatin
        from scipy import ndimage

        g = self.dem
        h = g.heights
        valid = np.isfinite(h)
        filled = h
        if not valid.all():
            near = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
            filled = h[tuple(near)]
        tin = Delatin(np.ascontiguousarray(filled, np.float32), max_error=self.terrain_tolerance)
        vc = np.asarray(tin.vertices, np.float64)
        ci = np.rint(vc[:, 0]).astype(np.int64)
        ri = h.shape[0] - 1 - np.rint(vc[:, 1]).astype(np.int64)  # pydelatin's y axis points up
        col, row = ci.astype(np.float64), ri.astype(np.float64)
        x, y = g.sample_xy(col, row)
        pos = np.column_stack([x, y, filled[ri, ci]])
        if not _same_crs(g.crs, self.crs):
            t = transformer(g.crs, self.crs)
            pos[:, 0], pos[:, 1] = t.transform(pos[:, 0], pos[:, 1])
        tris = np.asarray(tin.triangles, np.int64).reshape(-1, 3)
        tris = tris[valid[ri, ci][tris].all(axis=1)]
        self._terrain = (pos, tris)
        return self._terrain

    def tracer(self) -> RayTracer:
        """The ray tracer over buildings and terrain (built once per scene, thread-safe)."""
        with self._lock:
            if self._tracer is None:
                o = self.origin
                bpos, btris, bowner = self.building_mesh()
                tpos, ttris = self.terrain_mesh()
                self._tracer = RayTracer([(bpos - o, btris, bowner),
                                          (tpos - o, ttris, np.full(len(ttris), TERRAIN, np.int32))])
            return self._tracer

    def to_local(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) float32 coordinates relative to the origin."""
        return (np.asarray(xyz, np.float64) - self.origin).astype(np.float32)

    def surface(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's top surface under points: (z (n,) float64 absolute, NaN where nothing is below; owner (n,)
        int32: building index, `TERRAIN` or `NOTHING`), by casting rays straight down from above everything.
        Without a DEM the ground is flat at height 0."""
        top = float(np.nanmax(self.buildings.top(self.level))) if len(self.buildings) else 0.0
        if self.dem is not None:
            top = max(top, float(np.nanmax(self.dem.heights)))
        start = top + 10.0
        org = np.column_stack([x, y, np.full(len(x), start)])
        owner, dist = self.tracer().first_hit(self.to_local(org), np.array([[0, 0, -1]], np.float32))
        z = np.where(np.isfinite(dist), start - dist.astype(np.float64), np.nan)
        if self.dem is None:  # no terrain model: flat ground at height 0
            ground = ~np.isfinite(z)
            z[ground] = 0.0
            owner[ground] = TERRAIN
        return z, owner

    def from_lonlat(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scene coordinates of lon/lat degrees (CRS84 / CGCS2000 alike at this precision)."""
        x, y = transformer("EPSG:4326", self.crs).transform(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
        return np.asarray(x, np.float64), np.asarray(y, np.float64)

    def to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat degrees of scene coordinates."""
        lon, lat = transformer(self.crs, "EPSG:4326").transform(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return np.asarray(lon, np.float64), np.asarray(lat, np.float64)

    def bbox_from_lonlat(self, bbox: tuple[float, float, float, float] | list[float]) -> shapely.Polygon:
        """The scene-CRS polygon of a lon/lat bbox (minlon, minlat, maxlon, maxlat).

        Raises:
            InputError: not four numbers with min < max.
        """
        if len(bbox) != 4 or not all(math.isfinite(float(v)) for v in bbox) or bbox[0] >= bbox[2] \
                or bbox[1] >= bbox[3]:
            raise InputError(f"bbox {list(bbox)} is not minlon,minlat,maxlon,maxlat with min < max")
        lon = np.linspace(bbox[0], bbox[2], 9)
        lat = np.linspace(bbox[1], bbox[3], 9)
        ring_lon = np.r_[lon, np.full(9, bbox[2]), lon[::-1], np.full(9, bbox[0])]
        ring_lat = np.r_[np.full(9, bbox[1]), lat, np.full(9, bbox[3]), lat[::-1]]
        x, y = self.from_lonlat(ring_lon, ring_lat)
        return shapely.Polygon(np.column_stack([x, y]))

    def inside(self, x: float, y: float) -> bool:
        """True when (x, y) lies within the model's extent."""
        b = self.bounds()
        return b[0] <= x <= b[2] and b[1] <= y <= b[3]

    def owner_ids(self, owner: np.ndarray) -> np.ndarray:
        """Building IDs of owner indices (`terrain` / None for the others), as an object array."""
        o = np.asarray(owner)
        out = np.full(len(o), None, dtype=object)
        b = o >= 0
        out[b] = self.buildings.ids[o[b]]
        out[o == TERRAIN] = "terrain"
        return out


__all__ = ["NOTHING", "SCHEME_PREFIX", "TERRAIN", "BuildingSet", "CityScene", "RayTracer", "Scheme"]
