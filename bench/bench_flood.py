"""Flood analysis speed, against a memory-bandwidth floor and the depression-filling peers, measured in one run.

1. Dynamic solver throughput (cell-updates per second) on the sample city (2 m, buildings as walls) and on a
   generated city of about 4M cells, every cell wet (a 5 cm sheet over ponds filled to their spill level, rain
   falling): the worst case, where no face is skipped as dry. The floor is one pass over the arrays a step
   touches (`ShallowWaterSolver.step_arrays`), with the solver's threads: each fixed field read once, each state
   array (h, qx, qy, hmax: updated in place) read and rewritten once; a step cannot move less. Also timed: the
   earlier floor, a copy of every fixed field and state array whether a step reads it or not (until 2026-12-04
   the step double-buffered the state and read every field).
2. Static depression filling: ours (Priority-Flood, and fill-spill-merge of a 50-year hour) against pyflwdir's
   fill_depressions and pysheds' fill_depressions, on the sample city's DEM and on the Delft DTM; best of 3.
3. A one-hour 50-year storm over 1 km² at 1 m (1M cells, the sample city's centre resampled, buildings as walls):
   `run_flood` end to end (grid, solver, COG outputs every 5 min, polygons, report). Target: under 2 minutes. Then
   the same storm with local time stepping (`--local-levels`, 3 by default) and its difference from the global
   step's run: maximum depths (max and RMS) and times to 0.15 m.

    python bench/bench_flood.py                     # everything (the 4M-cell city is generated once, ~1 min)
    python bench/bench_flood.py --skip-big --steps 50
    python bench/bench_flood.py --only storm --work W   # one part (each under 15 minutes here); --only lts
                                                        # compares with the storm part's run kept in W
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import rasterio
import rasterio.warp
from affine import Affine
from numba import njit, prange
from rasterio.enums import Resampling

from cim.analysis.flood import FloodParams, ShallowWaterSolver, fill_depressions, fill_spill_merge, prepare_grid
from cim.analysis.flood.rain import ChicagoStorm

PARTS = ("solver", "big", "static", "storm", "lts")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@njit(parallel=True, cache=True)
def _copy(src, dst):  # pragma: no cover
    a = src.ravel()
    b = dst.ravel()
    n = a.size
    k = numba.get_num_threads()
    for t in prange(k):
        for i in range(t * n // k, (t + 1) * n // k):
            b[i] = a[i]


#: the floor's kernels take float32 and float64 arrays: two signatures each, so never cached (numba's on-disk cache
#: can mix up the object code of two signatures written by two processes); `fastmath` lets the sum vectorise
@njit(parallel=True, fastmath=True)
def _read(src, out):  # pragma: no cover
    a = src.ravel()
    n = a.size
    k = numba.get_num_threads()
    for t in prange(k):
        acc = 0.0
        for i in range(t * n // k, (t + 1) * n // k):
            acc += a[i]
        out[t] = acc


@njit(parallel=True)
def _rewrite(dst, one):  # pragma: no cover
    a = dst.ravel()
    n = a.size
    k = numba.get_num_threads()
    for t in prange(k):
        for i in range(t * n // k, (t + 1) * n // k):
            a[i] = a[i] * one


def floor_seconds(solver: ShallowWaterSolver, rounds: int) -> float:
    """Seconds per step of one pass over what a step touches (`step_arrays`): the fixed fields read, the state
    read and rewritten in place (on copies: the solver's state is left alone); best of `rounds`."""
    fixed, state = solver.step_arrays()
    fixed64 = [a for a in fixed if a.dtype == np.float64]
    fixed32 = [a for a in fixed if a.dtype == np.float32]
    state = [a.copy() for a in state]
    sums = np.zeros(numba.config.NUMBA_NUM_THREADS)

    def one_pass() -> None:
        for a in fixed64 + fixed32:
            _read(a, sums)
        for a in state:
            _rewrite(a, a.dtype.type(1.0))

    one_pass()
    return _best(one_pass, rounds)


def copy_floor_seconds(solver: ShallowWaterSolver, rounds: int) -> float:
    """The earlier floor (until 2026-12-04): seconds per step of copying every fixed field and the state once."""
    g, s = solver.grid, solver.state
    arrays = [g.z, g.sa, g.wx, g.wy, g.n2, g.rain_area, g.drain, g.infil, s.h, s.qx, s.qy, s.hmax]
    targets = [np.empty_like(a) for a in arrays]

    def copy_all() -> None:
        for a, b in zip(arrays, targets, strict=True):
            _copy(a, b)

    copy_all()
    return _best(copy_all, rounds)


def solver_throughput(dem: Path, buildings: Path | None, steps: int) -> dict:
    grid = prepare_grid(dem, buildings=buildings)
    ponds = fill_depressions(grid.z, walls=grid.walls) - grid.z
    solver = ShallowWaterSolver(grid.to_solver(open_boundary=True))
    solver.set_depth(np.where(grid.active, np.nan_to_num(ponds) + 0.05, 0.0))
    rain = ChicagoStorm().series().peak_mm_h / 3.6e6
    solver.advance(1e9, rain_rate=rain, max_steps=5)  # warm up (compiled already: the cache)
    t0 = time.perf_counter()
    n = solver.advance(1e9, rain_rate=rain, max_steps=steps)
    dt = (time.perf_counter() - t0) / n
    fl = floor_seconds(solver, 5)
    copy_fl = copy_floor_seconds(solver, 5)
    cells = solver.ncells
    return {"dem": str(dem), "shape": list(grid.shape), "active_cells": cells, "steps": n, "s_per_step": dt,
            "cell_updates_per_s": cells / dt, "floor_s_per_step": fl, "floor_cell_updates_per_s": cells / fl,
            "ratio_to_floor": dt / fl, "bytes_per_step": solver.nbytes, "copy_floor_s_per_step": copy_fl,
            "ratio_to_copy_floor": dt / copy_fl, "threads": numba.get_num_threads()}


def _best(fn, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def static_fill(dem: Path) -> dict:
    import pyflwdir.dem as pfd
    from pysheds.grid import Grid

    with rasterio.open(dem) as src:
        z = src.read(1, masked=True).filled(np.nan).astype(np.float64)
        res = abs(src.res[0] * src.res[1])
    z_nodata = np.where(np.isfinite(z), z, -9999.0)
    fill_depressions(z)
    ours = _best(lambda: fill_depressions(z, connectivity=8))
    ours4 = _best(lambda: fill_depressions(z, connectivity=4))
    depth = ChicagoStorm().series().depth_mm / 1000
    fsm = _best(lambda: fill_spill_merge(z, depth * res, cell_area=res))
    pfd.fill_depressions(z_nodata.copy(), nodata=-9999.0)
    pyflwdir = _best(lambda: pfd.fill_depressions(z_nodata.copy(), nodata=-9999.0, connectivity=8))
    grid = Grid.from_raster(str(dem))
    raster = grid.read_raster(str(dem))
    pysheds = _best(lambda: grid.fill_depressions(raster))
    same = bool(np.array_equal(fill_depressions(z, connectivity=8),
                               np.where(np.isfinite(z), pfd.fill_depressions(z_nodata.copy(), nodata=-9999.0)[0],
                                        np.nan), equal_nan=True))
    return {"dem": str(dem), "shape": list(z.shape), "ours_pf8_s": ours, "ours_pf4_s": ours4,
            "ours_fill_spill_merge_s": fsm, "pyflwdir_s": pyflwdir, "pysheds_s": pysheds,
            "faster_peer_over_ours": min(pyflwdir, pysheds) / ours, "identical_to_pyflwdir": same}


def one_km_dem(work: Path) -> tuple[Path, Path]:
    """The sample city's central 1 km² resampled to 1 m (bilinear): 1000 x 1000 cells."""
    from cim.sample import default_sample

    city = default_sample()
    with rasterio.open(city.dem) as src:
        cx, cy = (src.bounds.left + src.bounds.right) / 2, (src.bounds.bottom + src.bounds.top) / 2
        t = Affine(1.0, 0, cx - 500, 0, -1.0, cy + 500)
        out = np.full((1000, 1000), np.nan, np.float32)
        rasterio.warp.reproject(rasterio.band(src, 1), out, dst_transform=t, dst_crs=src.crs,
                                dst_nodata=np.nan, resampling=Resampling.bilinear)
        profile = {"driver": "GTiff", "width": 1000, "height": 1000, "count": 1, "dtype": "float32",
                   "crs": src.crs, "transform": t, "nodata": np.nan, "tiled": True, "compress": "deflate"}
    path = work / "dem_1m.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out, 1)
    return path, Path(city.buildings)


def _warm_up(local_levels: int) -> None:
    """Compile the solver's parallel kernels (compiled in each process, never cached) outside the timed run."""
    from cim.analysis.flood.solver import SMALL_GRID, solver_grid

    n = int(SMALL_GRID ** 0.5) + 8
    z = np.add.outer(np.linspace(0.0, 1.0, n), np.linspace(0.0, 0.5, n))
    s = ShallowWaterSolver(solver_grid(z, np.ones_like(z), 1.0, 1.0, manning=0.03, open_boundary=True),
                           local_levels=local_levels)
    s.set_depth(np.full_like(z, 0.1))
    s.advance(1e9, rain_rate=1e-5, max_steps=16)


def storm_run(work: Path, local_levels: int = 0, name: str = "storm") -> dict:
    from cim.analysis.flood import run_flood

    dem, buildings = one_km_dem(work)
    _warm_up(local_levels)
    params = FloodParams(dem=dem, buildings=buildings, storm=ChicagoStorm(return_period=50, duration_min=60),
                         after_min=0.0, output_interval_min=5.0, local_levels=local_levels)
    t0 = time.perf_counter()
    result = run_flood(params, work / name, overwrite=True)
    wall = time.perf_counter() - t0
    rep = result.report
    return {"cells": rep["grid"]["active_cells"], "wall_s": wall, "solve_s": rep["times"]["solve_s"],
            "outputs_s": rep["times"]["outputs_s"], "steps": rep["solver"]["steps"],
            "mean_dt_s": rep["solver"]["mean_dt_s"], "cell_updates_per_s": rep["solver"]["cell_updates_per_s"],
            "time_stepping": rep["solver"]["time_stepping"], "max_depth_m": rep["statistics"]["max_depth_m"],
            "mass_balance_relative_error": rep["mass_balance"]["relative_error"], "target_s": 120.0,
            "run": str(work / name)}


def against_reference(ref: dict, other: dict) -> dict:
    """Max depth (max and RMS difference over the cells wet in either run) and time to 0.15 m (cells reaching it
    in both runs: median, 95th percentile and max difference; cells reaching it in one run only) of `other`'s
    run against `ref`'s."""
    from cim.analysis.flood import FloodResult

    a, b = FloodResult.open(ref["run"]), FloodResult.open(other["run"])

    def read(r: FloodResult, what: str) -> np.ndarray:
        return np.asarray(r.read(what), np.float64)

    ha, hb = read(a, "max_depth"), read(b, "max_depth")
    wet = (np.nan_to_num(ha) > 0) | (np.nan_to_num(hb) > 0)
    d = (np.nan_to_num(hb) - np.nan_to_num(ha))[wet]
    ta, tb = read(a, "time_to_0.15m"), read(b, "time_to_0.15m")
    both = np.isfinite(ta) & np.isfinite(tb)
    late = np.abs(tb - ta)[both]
    return {"wet_cells": int(wet.sum()), "max_depth_max_abs_diff_m": float(np.abs(d).max()),
            "max_depth_rms_diff_m": float(np.sqrt(np.mean(d ** 2))),
            "cells_reaching_0.15m_both": int(both.sum()),
            "cells_reaching_0.15m_one_only": int((np.isfinite(ta) != np.isfinite(tb)).sum()),
            "time_to_0.15m_diff_median_s": float(np.median(late)) if late.size else None,
            "time_to_0.15m_diff_p95_s": float(np.percentile(late, 95)) if late.size else None,
            "time_to_0.15m_diff_max_s": float(late.max()) if late.size else None,
            "wall_ratio": other["wall_s"] / ref["wall_s"]}


def big_city(work: Path) -> tuple[Path, Path]:
    from cim.sample import generate

    city = generate(work / "city4m", buildings=10000, ortho=False)
    return Path(city.dem), Path(city.buildings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="solver steps timed per city")
    parser.add_argument("--skip-big", action="store_true", help="skip the generated 4M-cell city")
    parser.add_argument("--skip-storm", action="store_true", help="skip the 1-hour storm over 1 km²")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only this part (repeatable): solver (the sample city), big (the solver on the 4M-cell "
                             "city), static, storm (global step), "
                             "lts (the storm with local steps, compared with the storm part's run in --work)")
    parser.add_argument("--work", type=Path, help="where to keep generated data (default: a temp dir)")
    parser.add_argument("--local-levels", type=int, default=3,
                        help="also run the storm with local time stepping (this many levels; 0: not) and compare it "
                             "with the global step's run")
    args = parser.parse_args()
    parts = set(args.only or PARTS)
    if args.skip_big:
        parts.discard("big")
    if args.skip_storm:
        parts -= {"storm", "lts"}
    if not args.local_levels:
        parts.discard("lts")
    from cim.sample import default_sample

    city = default_sample()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    out: dict = {"load_start": os.getloadavg(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "solver" in parts:
            out["solver_sample_city"] = solver_throughput(Path(city.dem), Path(city.buildings), args.steps)
            print(json.dumps(out["solver_sample_city"]), flush=True)
        if "big" in parts:
            dem, b = big_city(work) if not (work / "city4m").exists() else (work / "city4m/dem.tif",
                                                                           work / "city4m/buildings.gpkg")
            out["solver_4m_city"] = solver_throughput(dem, b, args.steps)
            print(json.dumps(out["solver_4m_city"]), flush=True)
        if "static" in parts:
            out["static_sample_city"] = static_fill(Path(city.dem))
            print(json.dumps(out["static_sample_city"]), flush=True)
        delft = SHARED / "dem" / "delft_ahn3_dtm_0.5m.tif"
        if "static" in parts and delft.exists():
            out["static_delft"] = static_fill(delft)
            print(json.dumps(out["static_delft"]), flush=True)
        if "storm" in parts:
            out["storm_1km2_1m"] = storm_run(work)
            (work / "storm.json").write_text(json.dumps(out["storm_1km2_1m"]))
            print(json.dumps(out["storm_1km2_1m"]), flush=True)
        if "lts" in parts:
            if "storm_1km2_1m" not in out:
                if not (work / "storm.json").exists():
                    parser.error(f"--only lts compares with the storm part's run: none in {work}; "
                                 "run --only storm --work with the same directory first")
                out["storm_1km2_1m"] = json.loads((work / "storm.json").read_text())
            lts = storm_run(work, args.local_levels, "storm_lts")
            lts["against_global_step"] = against_reference(out["storm_1km2_1m"], lts)
            out["storm_1km2_1m_lts"] = lts
            print(json.dumps(lts), flush=True)
    out["load_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
