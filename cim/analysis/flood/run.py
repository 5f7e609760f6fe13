"""A flood run: parameters in (`FloodParams`), outputs written, a result out (`FloodResult`).

The same `FloodParams` comes from `cim analyze flood`, an HTTP job body or a notebook; `run_flood` is the one library
call behind all of them, reporting progress through one callback `(stage, done, total)`.

Outputs (folder `out`, written beside it and renamed into place when complete; nothing is left behind on error;
a dynamic run writes each step's depth and velocity on a thread while the solver runs on, `OutputWriter`):

    run.json            the report: inputs, grid, rain, mass balance, times, statistics, output steps
    max_depth.tif       deepest water per cell (m)
    time_to_0.15m.tif   seconds until each cell first held 0.15 m (NaN: never)          (dynamic runs)
    depth/<t>.tif       depth at each output step, t in seconds, six digits             (dynamic runs)
    velocity/<t>.tif    flow speed (m/s) at each output step                            (dynamic runs)
    inundation.gpkg     polygons of max depth by class (layer `inundation`)
    rain.csv            the rain applied (start_min, end_min, mm_h; grid mean for gauges)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cim.analysis.flood.errors import FloodInputError
from cim.analysis.flood.fill import fill_spill_merge
from cim.analysis.flood.gauges import GaugeRain, GaugeSource, RecordedGauges
from cim.analysis.flood.grid import FloodGrid, prepare_grid
from cim.analysis.flood.outputs import (
    DEFAULT_CLASSES,
    OutputWriter,
    class_labels,
    inundation_polygons,
    write_cog,
    write_inundation,
    write_rain_csv,
)
from cim.analysis.flood.rain import ChicagoStorm, RainSeries, StormFormula, read_rain
from cim.analysis.flood.solver import ShallowWaterSolver
from cim.errors import OutputExistsError
from cim.files import replace_dir

Progress = Callable[[str, int, int], None]
REPORT_VERSION = 1
_DESIGN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*y(?:ears?)?\s*$", re.IGNORECASE)


class FloodParams(BaseModel):
    """Parameters of a flood run (validated; field names are the CLI options and the JSON body).

    Attributes:
        dem: the DEM; None = the sample city (its DEM and buildings).
        buildings: footprints to burn in (None with the sample city = its buildings; "" = none).
        building_mode: "walls" or "porosity".
        outlets: polygons of rivers and lakes that take the water reaching them (None with the sample city = its
            river; "" = none).
        storm: a Chicago design storm (the default rain: P = 50 years, 60 min).
        rain_file: a rainfall series CSV (instead of the storm).
        gauges_file: recorded rain-gauge readings CSV (instead of the storm); `start` is the run's start.
        start: the run's start (UTC) for gauge rain.
        gauge_hold_min: after each gauge's last reading, keep its rate this long (a persistence nowcast: warning
            runs look ahead from the current readings).
        duration_min: simulated time; default: the rain's duration + `after_min`.
        after_min: time simulated after the rain stops (default run length).
        drainage: drainage capacity: mm/h, a raster or vector file, or "3y" (a network built for the 3-year storm).
        infiltration: infiltration capacity: mm/h, a raster or vector file.
        manning: Manning's n, or a raster of it.
        static: the static model only (fill-spill-merge of rain minus losses), in seconds.
        resolution: average the DEM onto cells of this size (m) first.
        bbox: (left, bottom, right, top) in the DEM's CRS.
        boundary: "open" (water leaves at the edges) or "closed".
        output_interval_min: minutes between depth/velocity outputs.
        depth_classes: lower bounds (m) of the inundation polygon classes.
        cfl, theta, h_min: solver parameters (`ShallowWaterSolver`).
        threads: cores for the solver (default all).
        local_levels: local time stepping: blocks of `lts_block` cells a side step up to 2^local_levels times the
            global CFL step where their water is shallow (`cim.analysis.flood.lts`). 0 (default): the global step,
            the reference (LTS's error and status: `cim.analysis.flood.lts`).
        lts_block: cells a side of a local-time-stepping block.
        velocity: write velocity COGs.
    """

    model_config = ConfigDict(extra="forbid")

    dem: Path | None = None
    buildings: Path | str | None = None
    building_mode: Literal["walls", "porosity"] = "walls"
    outlets: Path | str | None = None
    storm: ChicagoStorm | None = None
    rain_file: Path | None = None
    gauges_file: Path | None = None
    start: datetime | None = None
    gauge_hold_min: float = Field(0.0, ge=0)
    duration_min: float | None = Field(None, gt=0)
    after_min: float = Field(30.0, ge=0)
    drainage: float | str = 0.0
    infiltration: float | str = 0.0
    manning: float | str = 0.035
    static: bool = False
    resolution: float | None = Field(None, gt=0)
    bbox: tuple[float, float, float, float] | None = None
    boundary: Literal["open", "closed"] = "open"
    output_interval_min: float = Field(5.0, gt=0)
    depth_classes: list[float] = Field(default_factory=lambda: list(DEFAULT_CLASSES))
    cfl: float = Field(0.5, gt=0, le=1)
    theta: float = Field(0.7, ge=0, le=1)
    h_min: float = Field(1e-3, ge=0)
    threads: int | None = Field(None, ge=1)
    local_levels: int = Field(0, ge=0, le=8)
    lts_block: int = Field(16, ge=4, le=1024)
    velocity: bool = True

    @field_validator("depth_classes")
    @classmethod
    def _classes(cls, v: list[float]) -> list[float]:
        if not v or any(b <= a for a, b in zip(v, v[1:], strict=False)) or v[0] <= 0:
            raise ValueError(f"depth_classes {v} must be positive and increasing")
        return v

    @model_validator(mode="after")
    def _one_rain(self) -> FloodParams:
        given = [n for n in ("storm", "rain_file", "gauges_file") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one rain source, not {' and '.join(given)}")
        if self.gauges_file is not None and self.start is None:
            raise ValueError("gauge rain needs the run's start time (start, UTC)")
        for name in ("drainage", "infiltration", "manning"):
            v = getattr(self, name)
            if isinstance(v, float | int) and (not math.isfinite(v) or v < 0 or (name == "manning" and v == 0)):
                raise ValueError(f"{name} {v} must be a number > 0 (or >= 0 for losses), or a file")
        return self

    @classmethod
    def build(cls, **values: Any) -> FloodParams:
        """Validate like the constructor, but report bad values as `FloodInputError` (for the CLI's exit codes).

        Raises:
            FloodInputError: naming each bad field, its value and why.
        """
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: "
                                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
            raise FloodInputError(f"flood parameters: {problems}") from None

    def storm_or_default(self) -> ChicagoStorm:
        return self.storm if self.storm is not None else ChicagoStorm()


# ------------------------------------------------------------------------------------------------------ result


@dataclass
class FloodResult:
    """A finished run on disk.

    Attributes:
        root: the output folder.
        report: run.json as a dict.
    """

    root: Path
    report: dict[str, Any] = field(repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> FloodResult:
        """Read a run folder back (its run.json)."""
        p = Path(root)
        f = p / "run.json"
        if not f.is_file():
            raise FloodInputError(f"{p} is not a flood run (no run.json)")
        return cls(p, json.loads(f.read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """The report (run.json)."""
        return self.report

    @property
    def times(self) -> list[float]:
        """Output times (s) of the depth rasters."""
        return [s["t_s"] for s in self.report.get("steps", [])]

    def raster_path(self, what: str = "max_depth", t: float | None = None) -> Path:
        """Path of an output raster: "max_depth", "time_to_0.15m", or "depth"/"velocity" at time t (s)."""
        if what in ("depth", "velocity"):
            if t is None:
                raise FloodInputError(f"{what} needs a time; this run has {self.times}")
            p = self.root / what / f"{int(round(t)):06d}.tif"
        else:
            p = self.root / f"{what}.tif"
        if not p.is_file():
            raise FloodInputError(f"this run has no {what} raster{'' if t is None else f' at t={t:g} s'} ({p})")
        return p

    def read(self, what: str = "max_depth", t: float | None = None) -> np.ndarray:
        """An output raster as a float32 array (NaN nodata)."""
        import rasterio

        with rasterio.open(self.raster_path(what, t)) as src:
            return src.read(1)

    def to_raster(self, path: str | os.PathLike[str], what: str = "max_depth", t: float | None = None) -> Path:
        """Copy an output raster (a COG) to `path`."""
        dst = Path(path)
        shutil.copyfile(self.raster_path(what, t), dst)
        return dst

    def point(self, x: float, y: float) -> dict[str, Any]:
        """What the run says at one place (x, y in the run's CRS): maximum depth, when 0.15 m came, depth and speed
        at every output time. Values are None outside the grid and on walls."""
        import rasterio

        def sample(path: Path) -> float | None:
            if not path.is_file():
                return None
            with rasterio.open(path) as src:
                row, col = src.index(x, y)
                if not (0 <= row < src.height and 0 <= col < src.width):
                    return None
                v = float(src.read(1, window=((row, row + 1), (col, col + 1)))[0, 0])
            return v if np.isfinite(v) else None

        series = [{"t_s": t, "depth_m": sample(self.root / "depth" / f"{int(round(t)):06d}.tif"),
                   "speed_m_s": sample(self.root / "velocity" / f"{int(round(t)):06d}.tif")} for t in self.times]
        return {"max_depth_m": sample(self.root / "max_depth.tif"),
                "time_to_0.15m_s": sample(self.root / "time_to_0.15m.tif"), "series": series}

    def inundation(self) -> Any:
        """The inundation polygons (GeoDataFrame)."""
        import geopandas as gpd

        return gpd.read_file(self.root / "inundation.gpkg", layer="inundation")

    def to_layer(self, store: Any, name: str = "flood_inundation", *, title: str | None = None,
                 security: str = "internal") -> Any:
        """Import the inundation polygons into a layer store: a new layer, or a new version of `name`.

        The layer goes under the theme `public_topics/waterlogging` (公共专题/内涝风险), created when missing.

        Args:
            store: an open, writable `layers.store.LayerStore`.
            name: the layer's name.
            title: its display title (default 内涝淹没范围 and the run's folder name).
            security: public, internal or confidential.

        Returns:
            The store's import report.
        """
        return import_layer(store, self.root / "inundation.gpkg", "inundation", name,
                            title or f"内涝淹没范围 {self.root.name}", security)


#: the catalogue theme of flood results (a sub-theme of 公共专题 the store adds on first use)
THEME = ("public_topics", "waterlogging", "内涝风险", "Waterlogging risk")


def import_layer(store: Any, path: Path, source_layer: str, name: str, title: str, security: str) -> Any:
    """Import one layer of a file into the store, under the waterlogging theme, as a new layer or version."""
    from layers.errors import LayerError

    parent, tid, zh, en = THEME
    try:
        store.themes().get(f"{parent}/{tid}")
    except LayerError:
        store.add_theme(parent, tid, zh, en)
    exists = any(info.name == name for info in store.list())
    return store.import_file(path, name, None if exists else f"{parent}/{tid}", title=title, security=security,
                             source_layer=source_layer, new_version=exists)


# ------------------------------------------------------------------------------------------------------- run


def _sample_inputs(params: FloodParams) -> tuple[Path, Path | None, Path | None]:
    """DEM, buildings and outlets: as given, or the sample city's (its DEM, buildings and river)."""
    b, o = params.buildings, params.outlets
    if params.dem is not None:
        return params.dem, (Path(b) if b else None), (Path(o) if o else None)
    from cim.sample import default_sample

    city = default_sample()
    river = city.layers.get("river")
    return (Path(city.dem), Path(city.buildings) if b is None else (Path(b) if b else None),
            (Path(river) if river else None) if o is None else (Path(o) if o else None))


def _rain(params: FloodParams, gauges: GaugeSource | None) -> RainSeries | None:
    if params.rain_file is not None:
        return read_rain(params.rain_file)
    if params.gauges_file is not None or gauges is not None:
        return None
    return params.storm_or_default().series()


def _loss(value: float | str, rain_min: float, formula: StormFormula, name: str) -> float | str:
    if isinstance(value, str):
        m = _DESIGN.match(value)
        if m:
            if name != "drainage":
                raise FloodInputError(f"{name} {value!r}: a design return period only makes sense for drainage")
            p = float(m.group(1))
            if p < 1:
                raise FloodInputError(f"drainage {value!r}: the return period must be >= 1 year")
            return formula.intensity(p, rain_min) * 60.0
        try:
            return float(value)
        except ValueError:
            return value
    return float(value)


def _report_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=_jsonable), encoding="utf-8")


def _jsonable(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(type(o))


def _stats(depth: np.ndarray, cell_area: float, classes: Sequence[float]) -> dict[str, Any]:
    d = np.nan_to_num(depth, nan=0.0)
    return {"max_depth_m": round(float(d.max()), 4), "wet_area_m2": float((d > 0.01).sum() * cell_area),
            "area_by_class_m2": {label: float(((d >= lo) & (d < hi)).sum() * cell_area)
                                 for lo, hi, label in class_labels(classes)}}


def run_flood(params: FloodParams, out: str | os.PathLike[str], *, overwrite: bool = False,
              gauges: GaugeSource | None = None, progress: Progress | None = None) -> FloodResult:
    """Run a flood analysis and write its outputs (module docstring).

    Args:
        params: the run's parameters.
        out: the output folder.
        overwrite: replace an existing `out` (only once the new run is complete).
        gauges: a live gauge source (e.g. `SensingGauges`) for gauge rain; `params.start` is the run's start.
        progress: called as (stage, done, total): "prepare", "flood" (simulated seconds), "outputs".

    Raises:
        OutputExistsError: `out` exists and `overwrite` is False.
        FloodInputError / InputError / CRSError: an input is unusable (nothing is written).
        FloodError: the solver became unstable.
    """
    report_progress = progress or (lambda stage, done, total: None)
    dst = Path(out)
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    t_start = time.perf_counter()
    report_progress("prepare", 0, 1)
    dem, buildings, outlets = _sample_inputs(params)
    rain = _rain(params, gauges)
    storm = params.storm_or_default()
    rain_min = rain.duration_s / 60.0 if rain is not None else (params.duration_min or 60.0)
    drainage = _loss(params.drainage, rain_min, storm.formula, "drainage")
    infiltration = _loss(params.infiltration, rain_min, storm.formula, "infiltration")
    manning = _loss(params.manning, rain_min, storm.formula, "manning")
    grid = prepare_grid(dem, buildings=buildings, building_mode=params.building_mode,
                        resolution=params.resolution, bbox=params.bbox, manning=manning,
                        drainage_mm_h=drainage, infiltration_mm_h=infiltration, outlets=outlets)
    gauge_rain = None
    if rain is None:
        source = gauges if gauges is not None else RecordedGauges(params.gauges_file)  # type: ignore[arg-type]
        span_min = params.duration_min or 60.0
        start = params.start or datetime.now(timezone.utc).replace(tzinfo=None)
        series = source.rain_gauges(start, start + timedelta(minutes=span_min))
        gauge_rain = GaugeRain(series, start, span_min * 60.0, grid.transform, grid.shape, grid.crs,
                               hold_last_s=params.gauge_hold_min * 60.0)
    report_progress("prepare", 1, 1)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        report = {"version": REPORT_VERSION, "kind": "static" if params.static else "dynamic",
                  "params": params.model_dump(mode="json"), "inputs": {"drainage_mm_h": drainage,
                                                                     "infiltration_mm_h": infiltration},
                  "grid": grid.summary(), "created": datetime.now().astimezone().isoformat(timespec="seconds")}
        t_prep = time.perf_counter() - t_start
        if params.static:
            _run_static(params, grid, rain, gauge_rain, tmp, report, report_progress)
        else:
            _run_dynamic(params, grid, rain, gauge_rain, tmp, report, report_progress)
        report["times"]["prepare_s"] = round(t_prep, 3)
        report["times"]["total_s"] = round(time.perf_counter() - t_start, 3)
        _report_json(tmp / "run.json", report)
        dst.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FloodResult(dst, report)


def _rain_rows(rain: RainSeries | None, gauge_rain: GaugeRain | None, grid: FloodGrid
               ) -> list[tuple[float, float, float, np.ndarray | None]]:
    """(start, end, mean mm/h, field mm/h or None for uniform) of every rain interval."""
    if rain is not None:
        return [(a, b, r, None) for a, b, r in rain.intervals()]
    assert gauge_rain is not None
    active = grid.active
    return [(a, b, float(f[active].mean()) if active.any() else 0.0, f) for a, b, f in gauge_rain.intervals()]


def _run_static(params: FloodParams, grid: FloodGrid, rain: RainSeries | None, gauge_rain: GaugeRain | None,
                tmp: Path, report: dict[str, Any], progress: Progress) -> None:
    t0 = time.perf_counter()
    rows = _rain_rows(rain, gauge_rain, grid)
    area = grid.cell_area
    duration = rows[-1][1] if rows else 0.0
    depth_m = np.zeros(grid.shape)
    for a, b, r, f in rows:
        depth_m += (np.full(grid.shape, r) if f is None else f) * (b - a) / 3.6e6
    rain_vol = grid.route(depth_m * area)
    losses = (grid.drainage * area + grid.infiltration * grid.phi * area) * duration
    net = np.maximum(rain_vol - losses, 0.0)
    progress("fill", 0, 1)
    res = fill_spill_merge(grid.z, net, cell_area=area, porosity=grid.phi, walls=grid.walls,
                           open_boundary=params.boundary == "open")
    progress("fill", 1, 1)
    t_solve = time.perf_counter() - t0
    depth = np.where(grid.active, res.depth, np.nan)
    progress("outputs", 0, 1)
    write_cog(tmp / "max_depth.tif", depth, grid.transform, grid.crs)
    write_inundation(tmp / "inundation.gpkg", inundation_polygons(depth, grid.transform, grid.crs,
                                                                  params.depth_classes))
    write_rain_csv(tmp / "rain.csv", [(a, b, r) for a, b, r, _ in rows])
    rain_in = float(rain_vol.sum())
    report["rain"] = rain.to_dict() if rain is not None else gauge_rain.to_dict()  # type: ignore[union-attr]
    report["mass_balance"] = {"rain_m3": rain_in, "losses_m3": float(np.minimum(rain_vol, losses).sum()),
                              "stored_m3": res.stored, "outflow_m3": res.outflow,
                              "error_m3": rain_in - float(np.minimum(rain_vol, losses).sum()) - res.stored
                              - res.outflow}
    report["mass_balance"]["relative_error"] = abs(report["mass_balance"]["error_m3"]) / rain_in if rain_in else 0.0
    report["statistics"] = _stats(depth, area, params.depth_classes) | {"depressions": res.depressions}
    report["times"] = {"solve_s": round(t_solve, 3), "outputs_s": round(time.perf_counter() - t0 - t_solve, 3)}
    report["outputs"] = {"max_depth": "max_depth.tif", "inundation": "inundation.gpkg", "rain": "rain.csv"}
    report["steps"] = []
    progress("outputs", 1, 1)


def _run_dynamic(params: FloodParams, grid: FloodGrid, rain: RainSeries | None, gauge_rain: GaugeRain | None,
                 tmp: Path, report: dict[str, Any], progress: Progress) -> None:
    rows = _rain_rows(rain, gauge_rain, grid)
    rain_end = rows[-1][1] if rows else 0.0
    t_end = params.duration_min * 60.0 if params.duration_min else rain_end + params.after_min * 60.0
    sg = grid.to_solver(open_boundary=params.boundary == "open")
    solver = ShallowWaterSolver(sg, cfl=params.cfl, theta=params.theta, h_min=params.h_min,
                                threads=params.threads, local_levels=params.local_levels,
                                lts_block=params.lts_block)
    every = params.output_interval_min * 60.0
    outputs = set(np.round(np.arange(every, t_end + 1e-6, every), 6).tolist()) | {t_end}
    events = sorted({0.0, t_end} | outputs | {a for a, *_ in rows if a < t_end} | {b for _, b, *_ in rows
                                                                                  if b < t_end})
    (tmp / "depth").mkdir()
    if params.velocity:
        (tmp / "velocity").mkdir()
    area = grid.cell_area
    steps: list[dict[str, Any]] = []
    t_solve = 0.0
    t_out = 0.0
    k = 0
    total = int(math.ceil(t_end))
    progress("flood", 0, total)

    def write_speed(path: Path, flow: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        write_cog(path, np.where(grid.active, solver.speed(flow), np.nan), grid.transform, grid.crs)

    # each output step's rasters are written on a thread while the solver runs on (`OutputWriter`); the
    # `with` waits for them (or, on an error, for the one being written) before run_flood renames or deletes tmp
    with OutputWriter() as writer:
        for a, b in zip(events[:-1], events[1:], strict=True):
            while k < len(rows) and rows[k][1] <= a:
                k += 1
            rate, fld = (rows[k][2], rows[k][3]) if k < len(rows) and rows[k][0] <= a < rows[k][1] else (0.0, None)
            c0 = time.perf_counter()
            if fld is None:
                solver.advance(b, rain_rate=rate / 3.6e6)
            else:
                solver.advance(b, rain_volume=grid.route(fld / 3.6e6 * area))
            t_solve += time.perf_counter() - c0
            if b in outputs:
                c0 = time.perf_counter()
                depth = np.where(grid.active, solver.depth(), np.nan)
                name = f"{int(round(b)):06d}.tif"
                writer.submit(write_cog, tmp / "depth" / name, depth, grid.transform, grid.crs)
                if params.velocity:
                    writer.submit(write_speed, tmp / "velocity" / name, solver.flow())
                d = np.nan_to_num(depth)
                steps.append({"t_s": b, "depth": f"depth/{name}",
                              "velocity": f"velocity/{name}" if params.velocity else None,
                              "stored_m3": solver.stored_volume(), "rain_m3": solver.balance.rain,
                              "max_depth_m": round(float(d.max()), 4),
                              "area_over_0.15m_m2": float((d >= 0.15).sum() * area)})
                t_out += time.perf_counter() - c0
            progress("flood", int(math.floor(b)), total)
        c0 = time.perf_counter()
        progress("outputs", 0, 1)
        hmax = np.where(grid.active, solver.max_depth(), np.nan)
        write_cog(tmp / "max_depth.tif", hmax, grid.transform, grid.crs)
        write_cog(tmp / "time_to_0.15m.tif", np.where(grid.active, solver.time_to_mark(), np.nan), grid.transform,
                  grid.crs, decimals=1)
        write_inundation(tmp / "inundation.gpkg", inundation_polygons(hmax, grid.transform, grid.crs,
                                                                      params.depth_classes))
        write_rain_csv(tmp / "rain.csv", [(a, b, r) for a, b, r, _ in rows])
    t_out += time.perf_counter() - c0
    st = solver.state
    report["rain"] = rain.to_dict() if rain is not None else gauge_rain.to_dict()  # type: ignore[union-attr]
    report["mass_balance"] = solver.balance.to_dict()
    report["solver"] = {"scheme": "local inertial (Bates et al. 2010; de Almeida et al. 2012)", "cfl": solver.cfl,
                        "theta": solver.theta, "h_min_m": solver.h_min, "steps": st.steps,
                        "mean_dt_s": t_end / st.steps if st.steps else None, "simulated_s": t_end,
                        "cell_updates_per_s": st.cell_updates / t_solve if t_solve > 0 else None,
                        "cell_updates": st.cell_updates, "boundary": params.boundary,
                        "time_stepping": ({"kind": "local", "levels": solver.local_levels,
                                           "block_cells": solver.lts_block,
                                           "work_vs_global_step": st.cell_updates / (st.steps * solver.ncells)
                                           if st.steps and solver.ncells else None}
                                          if solver.local_levels else {"kind": "global"})}
    report["statistics"] = _stats(hmax, area, params.depth_classes) | {
        "area_reached_0.15m_m2": float(np.isfinite(solver.time_to_mark()).sum() * area)}
    report["times"] = {"solve_s": round(t_solve, 3), "outputs_s": round(t_out, 3)}
    report["outputs"] = {"max_depth": "max_depth.tif", "time_to_0.15m": "time_to_0.15m.tif",
                         "inundation": "inundation.gpkg", "rain": "rain.csv", "depth": "depth/", "velocity":
                         "velocity/" if params.velocity else None}
    report["steps"] = steps
    progress("outputs", 1, 1)
