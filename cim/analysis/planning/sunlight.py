"""Sunlight hours of dwellings (住宅日照) under GB 50180-2018, computed as GB/T 50947-2014 prescribes.

    >>> scene = CityScene.sample()
    >>> result = sunlight(scene, SunlightParams(climate_zone="II", large_city=True))
    >>> result.summary()["buildings_failing"]                                # doctest: +SKIP

For every building under test (residential by its `use`, or given by ID) the window sills of every floor are
sampled along its facades (`windows`), and for each the sunlit segments within the standard day's effective window
are computed by ray casting against every building and the terrain (`exposure`). The counting rule (`SunlightRule`:
cumulative or continuous, shortest counted segment, sweep angle) turns segments into counted minutes, compared with
the requirement of the building's climate zone and kind (`standards.requirement`).

Verdicts, from the finest to the coarsest (docs/planning.md says why):
- a window passes when its counted minutes reach the requirement;
- a window whose facade cannot reach the requirement even with nothing in front of it (it faces away from the sun)
  is `unfavourable`: reported, but not part of the building's verdict;
- a dwelling facade (one facade on one floor; dwelling plans are not known) passes when its best window passes;
- a building passes when all of its dwelling facades that are not unfavourable pass.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cim.analysis.planning.exposure import Progress, Segments, SunTable, sunlit_segments
from cim.analysis.planning.output import geojson, grid, json_records, write_layer, write_raster
from cim.analysis.planning.scene import TERRAIN, CityScene
from cim.analysis.planning.standards import (
    DAY_NAMES,
    WINDOWS,
    ClimateZone,
    HousingKind,
    Requirement,
    SunlightRule,
    requirement,
)
from cim.analysis.planning.sun import StandardDay, check_year, standard_date, sun_times
from cim.analysis.planning.windows import WindowPoints, window_points
from cim.errors import InputError

RESIDENTIAL_USES = ("住宅", "居住", "residential", "housing")
ELDERLY_USES = ("老年人居住建筑", "养老", "elderly")


def build_params(cls: type[BaseModel], **values: Any) -> Any:
    """A parameter object from keyword values; pydantic's validation errors become `InputError` (exit code 2,
    HTTP 400) naming every field and reason."""
    try:
        return cls(**values)
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise InputError(f"bad {cls.__name__}: " + "; ".join(parts)) from None


class GroundGrid(BaseModel):
    """A ground sunlight-hours raster.

    Attributes:
        cell: cell size in metres.
        bbox: lon/lat (minlon, minlat, maxlon, maxlat); default: the buildings under test plus `margin`.
        margin: metres around the buildings under test when `bbox` is not given.
        height: metres above the ground surface of the sample points (GB/T 50947's calculation height).
    """

    model_config = ConfigDict(frozen=True)

    cell: float = Field(5.0, gt=0.0, le=1000.0)
    bbox: tuple[float, float, float, float] | None = None
    margin: float = Field(50.0, ge=0.0)
    height: float = Field(0.0, ge=0.0, le=100.0)


class SunlightParams(BaseModel):
    """What to check and how (every field has the default a Chinese planner expects; see docs/planning.md).

    Attributes:
        year: year of the standard day (1..6000, SPA's range; 2001 is the base year Chinese sunlight tools use).
        climate_zone: building climate zone (GB 50178) of the city.
        large_city: urban resident population of at least 500,000.
        kind: housing, elderly (老年人居住建筑) or renewal (旧区改建): picks the requirement.
        day: override the standard day (大寒日 "dahan" / 冬至日 "dongzhi").
        window: override the effective window (true solar hours).
        required_hours: override the required hours.
        rule: the counting rule (cumulative/continuous, shortest segment, sweep angle, step).
        buildings: IDs of the buildings to check (default: every building whose use is in `uses`).
        uses: use values that mark housing.
        elderly_uses: use values that mark housing for the elderly (checked as kind "elderly").
        bbox: lon/lat box: only buildings intersecting it are checked.
        spacing, sill, storey_height: window sampling (see `windows.window_points`).
        ground: also compute a ground sunlight-hours raster.
        refraction: use the refracted (apparent) sun, as SPA gives it; False uses the geometric sun (no
            atmosphere), as simple tools do.
        workers: threads casting rays (default: CPU count).
    """

    model_config = ConfigDict(frozen=True)

    year: int = 2001
    climate_zone: ClimateZone = "II"
    large_city: bool = True
    kind: HousingKind = "housing"
    day: StandardDay | None = None
    window: tuple[float, float] | None = None
    required_hours: float | None = Field(None, ge=0.0, le=24.0)
    rule: SunlightRule = SunlightRule()
    buildings: list[str] | None = None
    uses: list[str] = list(RESIDENTIAL_USES)
    elderly_uses: list[str] = list(ELDERLY_USES)
    bbox: tuple[float, float, float, float] | None = None
    spacing: float = Field(3.0, gt=0.1, le=100.0)
    sill: float = Field(0.9, ge=0.0, le=3.0)
    storey_height: float = Field(3.0, gt=1.0, le=10.0)
    ground: GroundGrid | None = None
    refraction: bool = True
    workers: int | None = Field(None, ge=1, le=256)

    @field_validator("year")
    @classmethod
    def _year(cls, v: int) -> int:
        check_year(v)
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0.0 <= v[0] < v[1] <= 24.0:
            raise ValueError(f"window {v} must be (start, end) true solar hours with 0 <= start < end <= 24")
        return v

    def requirement_for(self, kind: HousingKind) -> Requirement:
        """The requirement for a building of `kind`, with this object's overrides applied."""
        r = requirement(self.climate_zone, self.large_city, kind)
        day = self.day or r.day
        window = self.window or (WINDOWS[day] if day != r.day else r.window)
        hours = self.required_hours if self.required_hours is not None else r.hours
        if (day, window, hours) == (r.day, r.window, r.hours):
            return r
        return Requirement(day=day, hours=hours, window=window, basis=r.basis + " (overridden)")


@dataclass
class SunlightResult:
    """Sunlight hours of every window, dwelling facade and building checked.

    Attributes:
        params: what was asked.
        windows: one row per window point: building (ID), name, facade, floor, x, y, z (scene CRS), azimuth
            (facing, grid degrees), counted_min, cumulative_min (segments long enough), continuous_min (longest
            segment), total_min (every sunlit second), potential_min (counted with nothing in front),
            unfavourable, passes, requirement_min, day.
        facades: one row per dwelling facade (building, facade, floor): windows, best_min, unfavourable, passes.
        buildings: one row per building checked: id, name, use, kind, requirement, windows, facades,
            facades_failing, floors_failing, passes.
        segments: per requirement day, the sunlit segments of its windows (seconds from the window start; the
            window rows' `segment_index` points into them).
        days: requirement day -> (civil date, sun times, requirement).
        ground: (minutes (rows, cols) float32 with NaN under buildings, affine transform) or None.
        crs: the scene's CRS.
        rays: rays cast.
        seconds: wall time by stage.
    """

    params: SunlightParams
    windows: pd.DataFrame
    facades: pd.DataFrame
    buildings: pd.DataFrame
    segments: dict[str, Segments]
    days: dict[str, dict[str, Any]]
    ground: tuple[np.ndarray, Any] | None
    crs: Any
    scheme: str | None = None
    rays: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts and verdicts (JSON-ready)."""
        w, b = self.windows, self.buildings
        return {
            "buildings": int(len(b)), "buildings_passing": int(b["passes"].sum()) if len(b) else 0,
            "buildings_failing": int((~b["passes"]).sum()) if len(b) else 0,
            "windows": int(len(w)), "windows_passing": int(w["passes"].sum()) if len(w) else 0,
            "windows_failing": int((~w["passes"] & ~w["unfavourable"]).sum()) if len(w) else 0,
            "windows_unfavourable": int(w["unfavourable"].sum()) if len(w) else 0,
            "dwelling_facades": int(len(self.facades)),
            "dwelling_facades_failing": int((~self.facades["passes"] & ~self.facades["unfavourable"]).sum())
            if len(self.facades) else 0,
            "rays": int(self.rays), "scheme": self.scheme,
        }

    def to_dict(self, windows: bool = False) -> dict[str, Any]:
        """Summary, days, rule and per-building verdicts (and every window with `windows=True`)."""
        out: dict[str, Any] = {
            "analysis": "sunlight", "summary": self.summary(),
            "days": {k: {"date": v["date"].isoformat(), "name": DAY_NAMES[k.split("-")[0]],
                         "requirement": v["requirement"], "basis": v["basis"], "window": list(v["window"]),
                         "sun": v["sun"]} for k, v in self.days.items()},
            "rule": self.params.rule.model_dump(), "params": self.params.model_dump(mode="json"),
            "buildings": json_records(self.buildings),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
        if windows:
            out["windows"] = json_records(self.windows.drop(columns=["x", "y"]))
        return out

    def windows_frame(self, only_failing: bool = False) -> gpd.GeoDataFrame:
        """Window points as a GeoDataFrame (3D points in the scene's CRS); `only_failing`: the windows that fail
        the requirement on facades that could meet it."""
        w = self.windows
        if only_failing:
            w = w[~w["passes"] & ~w["unfavourable"]]
        geom = shapely.points(w["x"].to_numpy(), w["y"].to_numpy(), w["z"].to_numpy())
        return gpd.GeoDataFrame(w.drop(columns=["x", "y", "z", "segment_index"]), geometry=geom, crs=self.crs)

    def buildings_frame(self, scene: CityScene) -> gpd.GeoDataFrame:
        """Building verdicts with their footprints."""
        idx = scene.buildings.index()
        geoms = [scene.buildings.geoms[idx[i]] for i in self.buildings["id"]]
        return gpd.GeoDataFrame(self.buildings.copy(), geometry=geoms, crs=self.crs)

    def to_geojson(self, scene: CityScene | None = None, what: str = "windows", only_failing: bool = False
                   ) -> dict[str, Any]:
        """GeoJSON (lon/lat): window points (`what="windows"`; `only_failing` keeps the failing ones) or building
        footprints with verdicts (`what="buildings"`, needs the scene)."""
        if what == "buildings":
            if scene is None:
                raise InputError("building footprints need the scene: to_geojson(scene, what='buildings')")
            return geojson(self.buildings_frame(scene))
        return geojson(self.windows_frame(only_failing))

    def to_layer(self, store: Any, name: str, **kw: Any) -> Any:
        """Store the window points as a layer (see `output.write_layer`)."""
        return write_layer(self.windows_frame(), store, name, title=kw.pop("title", f"日照分析 {name}"), **kw)

    def to_raster(self, path: Any, *, overwrite: bool = False) -> Any:
        """Write the ground sunlight-minutes raster as a GeoTIFF.

        Raises:
            InputError: no ground raster was computed (set `SunlightParams.ground`).
        """
        if self.ground is None:
            raise InputError("no ground raster was computed; ask for one with SunlightParams(ground=GroundGrid())")
        values, transform = self.ground
        return write_raster(path, values, transform, self.crs, overwrite=overwrite,
                            description="sunlight minutes (counted)")


def select_buildings(scene: CityScene, params: SunlightParams) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the buildings under test and their kinds.

    Raises:
        InputError: an unknown ID, or no building matches.
    """
    bs = scene.buildings
    if params.buildings:
        idx = bs.rows(params.buildings)
    else:
        uses = set(params.uses) | set(params.elderly_uses)
        idx = np.flatnonzero(np.isin(bs.use, list(uses)))
    if params.bbox is not None:
        box = scene.bbox_from_lonlat(params.bbox)
        idx = idx[shapely.intersects(bs.geoms[idx], box)]
    if len(idx) == 0:
        raise InputError("no building to check: none has a use in "
                         f"{sorted(set(params.uses) | set(params.elderly_uses))}"
                         + (" inside the bbox" if params.bbox is not None else "")
                         + "; pass buildings=[IDs] or uses=[...]")
    kinds = np.where(np.isin(bs.use[idx], list(params.elderly_uses)), "elderly", params.kind).astype(object)
    return idx, kinds


def _counted(seg: Segments, rule: SunlightRule) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(counted, cumulative, continuous, total) seconds per point under the rule."""
    min_s = rule.min_segment_minutes * 60.0
    cumulative = seg.total(min_s)
    continuous = seg.longest()
    total = seg.total(0.0)
    counted = cumulative if rule.counting == "cumulative" else np.where(continuous >= min_s, continuous, 0.0)
    return counted, cumulative, continuous, total


def potential_seconds(sun: SunTable, normals: np.ndarray, rule: SunlightRule) -> np.ndarray:
    """Counted seconds each facade normal would get with nothing in front of it (its orientation's limit).

    Args:
        normals: (n, 2) outward unit normals.
    """
    import math

    cos_limit = math.sin(math.radians(rule.sweep_angle))
    az = np.round(np.degrees(np.arctan2(normals[:, 0], normals[:, 1])) % 360.0, 3)
    uniq, inv = np.unique(az, return_inverse=True)
    h = sun.vectors[:, :2]
    hn = np.linalg.norm(h, axis=1)
    up = (sun.elevation > 0) & (hn > 1e-9)
    out = np.zeros(len(uniq))
    T = len(sun)
    for a in range(0, len(uniq), 256):
        block = uniq[a:a + 256]
        n = np.column_stack([np.sin(np.radians(block)), np.cos(np.radians(block))])
        valid = up[None, :] & ((n @ h.T) >= cos_limit * hn[None, :])
        valid[:, -1] = False  # the last instant ends segments
        edges = np.diff(np.c_[np.zeros(len(block), bool), valid].astype(np.int8), axis=1)
        ri, starts = np.nonzero(edges == 1)
        _, ends = np.nonzero(edges == -1)
        seg = Segments(len(block), ri, starts, np.minimum(ends, T - 1))
        out[a:a + len(block)] = _counted(seg, rule)[0]
    return out[inv]


def _ground(scene: CityScene, params: SunlightParams, idx: np.ndarray, sun: SunTable, rule: SunlightRule,
            progress: Progress | None) -> tuple[tuple[np.ndarray, Any], int]:
    g = params.ground
    assert g is not None
    if g.bbox is not None:
        b = scene.bbox_from_lonlat(g.bbox).bounds
    else:
        b = shapely.total_bounds(shapely.buffer(scene.buildings.geoms[idx], g.margin))
    x, y, transform = grid(tuple(float(v) for v in b), g.cell)  # type: ignore[arg-type]
    z, owner = scene.surface(x.ravel(), y.ravel())
    ok = (owner == TERRAIN) & np.isfinite(z)
    pts = np.column_stack([x.ravel()[ok], y.ravel()[ok], z[ok] + max(g.height, 0.05)])
    seg, rays = sunlit_segments(scene, sun, pts, None, step=rule.step_seconds, workers=params.workers,
                                progress=progress, stage="ground")
    counted = _counted(seg, rule)[0]
    values = np.full(x.size, np.nan, np.float32)
    values[ok] = counted / 60.0
    return (values.reshape(x.shape), transform), rays


def sunlight(scene: CityScene, params: SunlightParams | None = None, *,
             progress: Progress | None = None) -> SunlightResult:
    """Sunlight hours of the windows of every building under test (see the module docstring).

    Args:
        scene: the city (and a scheme, if one is attached: its buildings obstruct, and are checked when their use
            says housing).
        params: what to check and how.
        progress: called as progress(stage, done, total) ("windows", "rays", "ground").

    Raises:
        InputError: no building to check, an unknown building ID, bad parameters.
    """
    params = params or SunlightParams()
    rule = params.rule
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    idx, kinds = select_buildings(scene, params)
    bs = scene.buildings
    win_rows, fac_rows, bld_rows = [], [], []
    segments: dict[str, Segments] = {}
    days: dict[str, dict[str, Any]] = {}
    rays = 0
    site = scene.site if params.refraction else dataclasses.replace(scene.site, pressure=0.0)
    ground = None
    for kind in sorted(set(kinds.tolist())):
        req = params.requirement_for(kind)
        sel = idx[kinds == kind]
        day = standard_date(params.year, req.day)
        tick = time.perf_counter()
        sun = SunTable.compute(site, day, req.window)
        seconds["sun"] = seconds.get("sun", 0.0) + time.perf_counter() - tick
        tick = time.perf_counter()
        if progress:
            progress("windows", 0, len(sel))
        wp = window_points(bs, sel, spacing=params.spacing, sill=params.sill, storey_height=params.storey_height)
        if progress:
            progress("windows", len(sel), len(sel))
        seconds["windows"] = seconds.get("windows", 0.0) + time.perf_counter() - tick
        tick = time.perf_counter()
        seg, r = sunlit_segments(scene, sun, wp.xyz, wp.normal, sweep_angle=rule.sweep_angle,
                                 step=rule.step_seconds, workers=params.workers, progress=progress)
        rays += r
        seconds["rays"] = seconds.get("rays", 0.0) + time.perf_counter() - tick
        key = req.day if req.day not in segments else f"{req.day}-{kind}"
        segments[key] = seg
        days[key] = {"date": day, "requirement": req.describe(), "basis": req.basis, "window": req.window,
                     "sun": sun_times(site, day).to_dict()}
        win_rows.append(_window_table(bs, wp, seg, sun, rule, req, key))
        if params.ground is not None and ground is None:
            tick = time.perf_counter()
            ground, r = _ground(scene, params, idx, sun, rule, progress)
            rays += r
            seconds["ground"] = time.perf_counter() - tick
    windows = pd.concat(win_rows, ignore_index=True) if win_rows else pd.DataFrame()
    facades = _facade_table(windows)
    buildings = _building_table(bs, idx, kinds, windows, facades, params)
    seconds["total"] = time.perf_counter() - t0
    return SunlightResult(params=params, windows=windows, facades=facades, buildings=buildings, segments=segments,
                          days=days, ground=ground, crs=scene.crs, scheme=scene.scheme_name, rays=rays,
                          seconds=seconds)


def _window_table(bs: Any, wp: WindowPoints, seg: Segments, sun: SunTable, rule: SunlightRule, req: Requirement,
                  key: str) -> pd.DataFrame:
    counted, cumulative, continuous, total = _counted(seg, rule)
    potential = potential_seconds(sun, wp.normal, rule) if len(wp) else np.zeros(0)
    need = req.minutes * 60.0
    unfavourable = potential < need
    return pd.DataFrame({
        "building": bs.ids[wp.building], "name": bs.name[wp.building], "facade": wp.facade, "floor": wp.floor,
        "x": wp.xyz[:, 0], "y": wp.xyz[:, 1], "z": np.round(wp.xyz[:, 2], 3), "azimuth": np.round(wp.azimuth, 2),
        "counted_min": np.round(counted / 60.0, 2), "cumulative_min": np.round(cumulative / 60.0, 2),
        "continuous_min": np.round(continuous / 60.0, 2), "total_min": np.round(total / 60.0, 2),
        "potential_min": np.round(potential / 60.0, 2), "requirement_min": req.minutes,
        "unfavourable": unfavourable, "passes": counted >= need, "day": key,
        "segment_index": np.arange(len(wp)), "scheme_building": bs.scheme[wp.building],
    })


def _facade_table(w: pd.DataFrame) -> pd.DataFrame:
    if len(w) == 0:
        return pd.DataFrame(columns=["building", "facade", "floor", "windows", "best_min", "unfavourable", "passes"])
    g = w.groupby(["building", "facade", "floor"], sort=False)
    out = g.agg(windows=("counted_min", "size"), best_min=("counted_min", "max"),
                unfavourable=("unfavourable", "all"), passes=("passes", "any")).reset_index()
    return out


def _building_table(bs: Any, idx: np.ndarray, kinds: np.ndarray, w: pd.DataFrame, f: pd.DataFrame,
                    params: SunlightParams) -> pd.DataFrame:
    rows = []
    wc = w.groupby("building").size() if len(w) else pd.Series(dtype=int)
    applicable = f[~f["unfavourable"]] if len(f) else f
    failing = applicable[~applicable["passes"]] if len(applicable) else applicable
    fail_count = failing.groupby("building").size() if len(failing) else pd.Series(dtype=int)
    fail_floors = failing.groupby("building")["floor"].apply(lambda s: sorted(set(int(v) for v in s))) \
        if len(failing) else pd.Series(dtype=object)
    fac_count = applicable.groupby("building").size() if len(applicable) else pd.Series(dtype=int)
    for b, kind in zip(idx.tolist(), kinds.tolist()):
        bid = bs.ids[b]
        req = params.requirement_for(kind)
        n_fail = int(fail_count.get(bid, 0))
        rows.append({"id": bid, "name": bs.name[b], "use": bs.use[b], "kind": kind, "requirement": req.describe(),
                     "windows": int(wc.get(bid, 0)), "facades": int(fac_count.get(bid, 0)),
                     "facades_failing": n_fail, "floors_failing": fail_floors.get(bid, []),
                     "passes": n_fail == 0 and int(wc.get(bid, 0)) > 0, "scheme": bool(bs.scheme[b])})
    return pd.DataFrame(rows)


def window_segments(result: SunlightResult, row: int) -> list[tuple[float, float]]:
    """The sunlit segments of window `row` of `result.windows` as (start, end) true solar hours."""
    w = result.windows.iloc[row]
    start = result.days[w["day"]]["window"][0]
    seg = result.segments[w["day"]]
    return [(start + a / 3600.0, start + b / 3600.0) for a, b in seg.of(int(w["segment_index"]))]


__all__ = ["ELDERLY_USES", "RESIDENTIAL_USES", "GroundGrid", "SunlightParams", "SunlightResult", "build_params",
           "potential_seconds", "select_buildings", "sunlight", "window_segments"]
