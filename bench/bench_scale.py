"""The city-scale plan from measurement: per-task costs of an LOD1 build here, projected to a cluster.

Builds a footprint-only sample city (GeoParquet footprints + the generator's DEM, as bench_dask) with
`cim.models.lod1.build_buildings` on the synchronous scheduler, and times the CPU seconds (`time.process_time`) of
every Dask task it would run, per stage, and of the whole build: what is not in a task is the driver's serial part
(reading and cleaning the footprints, the quadtree, writing the row store, the tileset). CPU seconds, not wall
seconds, so that a busy machine inflates the figures less. It prints per stage the tasks, the CPU per task
(mean, max) and per building, the driver's serial CPU per building, the driver's peak RSS, and the data volumes
(input file, output tiles).

Then it projects a target city (default 10M buildings) onto M machines of C single-threaded workers:

    wall = serial x (target / n)                                  (the driver, alone)
         + tasks(target) x overhead                               (the scheduler, alone: ~1 ms a task)
         + parallel x (target / n) / (M C e)                      (the tasks, spread; e the scaling efficiency)

with e from `--efficiency` (bench_dask's 1 -> 2 worker figure), and the output written at `--fs-mb-s` to the
shared file system (counted when it is slower than the tasks). Every assumption is printed beside the result.

    python bench/bench_scale.py --buildings 1000000
    python bench/bench_scale.py --buildings 20000 --target 10000000 --machines 8 --cores 16

`--end-to-end N` instead builds the city on a LocalCluster of N single-threaded workers, as `cim build` does
(the footprint waves and the tiles), sampling every 0.2 s the RSS of the driver and of each worker process
(psutil), and prints the wall time, the peak RSS of the driver and of the largest worker, and those peaks per
building: the check that a city's size sets neither (10M buildings: workers < 4 GB).

    python bench/bench_scale.py --buildings 10000000 --end-to-end 2

`--oblique [PRODUCTION]` measures an oblique production instead (default: ../shared/data/oblique_osgb/zhongshan):
`convert_production` on the synchronous scheduler, the CPU seconds of every file task (with the file's size) and
of every merged-node task, and the driver's serial CPU (listing the files, assembling the tree, the tileset),
per MB of input; `--costs-out` keeps them for `sim_cluster.py oblique --costs`.

    python bench/bench_scale.py --oblique --copies 10 --costs-out oblique-costs.json   # + 10 x its folders
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil


PRODUCTION = Path(__file__).resolve().parents[2] / "shared" / "data" / "oblique_osgb" / "zhongshan"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    from cim.models.lod1 import build_buildings
    from cim.sample import generate, load
    from cim.tiling import SYNCHRONOUS, Runner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buildings", type=int, default=1_000_000)
    ap.add_argument("--target", type=int, default=10_000_000)
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--efficiency", type=float, default=0.8, help="scaling efficiency of the tasks (bench_dask)")
    ap.add_argument("--overhead-ms", type=float, default=1.0, help="scheduler time per task (Dask: ~1 ms)")
    ap.add_argument("--fs-mb-s", type=float, default=1000.0, help="write bandwidth of the shared file system")
    ap.add_argument("--work", type=Path, default=None, help="folder for generated cities (default: a temp dir)")
    ap.add_argument("--costs-out", type=Path, default=None,
                    help="write every task's CPU seconds per stage and the driver's serial CPU (for sim_cluster.py)")
    ap.add_argument("--copies", type=int, default=1,
                    help="build COPIES x the sample city side by side (streamed from its row groups, see tiled_city)")
    ap.add_argument("--oblique", type=Path, nargs="?", const=PRODUCTION, default=None,
                    help="measure the oblique production's task costs instead (see above)")
    ap.add_argument("--end-to-end", type=int, default=0, metavar="WORKERS",
                    help="build on a LocalCluster of WORKERS processes; print wall time and peak RSS per process")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cim-bench-scale-"))
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if args.oblique is not None:
        _oblique_costs(args.oblique, work / "oblique", args.copies, args.costs_out)
        return
    city_dir = work / f"city-{args.buildings}"
    city = load(city_dir) if (city_dir / "sample.json").exists() else generate(
        city_dir, buildings=args.buildings, seed=1, footprint_format="parquet", ortho=False, layers=("buildings",))

    if args.copies > 1:
        from types import SimpleNamespace

        big = tiled_city(city_dir, args.copies, work / f"city-{args.buildings}x{args.copies}")
        city = SimpleNamespace(buildings=big / "buildings.parquet", dem=big / "dem.tif")
        args.buildings *= args.copies
    if args.end_to_end:
        _end_to_end(city, work / f"out-{args.buildings}-e2e", args.end_to_end)
        return
    out = work / f"out-{args.buildings}"
    me = psutil.Process()
    base_rss = me.memory_info().rss
    stop, peak = threading.Event(), [base_rss]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0, c0 = time.perf_counter(), time.process_time()
    with timed_tasks() as cpu, Runner(scheduler=SYNCHRONOUS) as runner:
        res = build_buildings(city.buildings, city.dem, out, runner=runner)
    wall, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    stop.set()
    sampler.join()
    n = res.buildings
    task_cpu = sum(sum(v) for v in cpu.values())
    serial = total_cpu - task_cpu
    rss_mb = peak[0] / 2**20
    grew_mb = (peak[0] - base_rss) / 2**20  # what the build added to the process (it grows with the city)
    in_mb, out_mb = _size(Path(city.buildings)) / 2**20, _size(out) / 2**20
    stages = {s: {"tasks": len(v), "cpu_s": round(sum(v), 2), "mean_ms": round(1000 * sum(v) / len(v), 1),
                  "max_ms": round(1000 * max(v), 1), "us_per_building": round(1e6 * sum(v) / n, 1)}
              for s, v in cpu.items()}
    print(json.dumps({"buildings": n, "tiles": res.tiles, "wall_s": round(wall, 2), "cpu_s": round(total_cpu, 2),
                      "serial_cpu_s": round(serial, 2), "driver_stage_wall_s": {k: round(v, 2) for k, v in
                                                                                res.stage_seconds.items()},
                      "tasks": stages, "driver_peak_rss_mb": round(rss_mb), "driver_build_mb": round(grew_mb), "input_mb": round(in_mb, 1),
                      "output_mb": round(out_mb, 1)}), flush=True)

    if args.costs_out is not None:
        args.costs_out.write_text(json.dumps({"buildings": n, "tiles": res.tiles, "task_cpu": dict(cpu),
                                              "driver_after": {"lod1": serial}}))
    scale = args.target / n
    workers = args.machines * args.cores
    # Dask tasks at the target: partitions sized for the workers, tiles batched (cim.tiling.batches)
    from cim.models.partitioned import PARTS_PER_WORKER
    from cim.sources.footprints import PARTITION_ROWS, partition_size
    from cim.tiling import TASKS_PER_WORKER

    parts = -(-args.target // partition_size(PARTITION_ROWS, args.target, PARTS_PER_WORKER * workers))
    tasks = sum(parts if s.startswith("footprints-") or s.endswith("-rows") else
                min(len(v) * scale, TASKS_PER_WORKER * workers) for s, v in cpu.items())
    t_serial = serial * scale
    t_sched = tasks * args.overhead_ms / 1000
    t_tasks = task_cpu * scale / (workers * args.efficiency)
    t_fs = out_mb * scale / args.fs_mb_s
    total = t_serial + t_sched + max(t_tasks, t_fs)
    print(f"load average at end: {os.getloadavg()}")
    print(f"\n| measured: {n:,} buildings, {res.tiles} tiles | CPU s | per building |")
    print("|---|---:|---:|")
    print(f"| driver (serial: read, clean, quadtree, row store, tileset) | {serial:.1f} | "
          f"{1e6 * serial / n:.0f} µs |")
    for s, v in stages.items():
        print(f"| tasks `{s}`: {v['tasks']} x {v['mean_ms']} ms (max {v['max_ms']}) | {v['cpu_s']} | "
              f"{v['us_per_building']} µs |")
    print(f"| whole build (wall {wall:.1f} s; driver peak RSS {rss_mb:.0f} MB; in {in_mb:.0f} MB, out "
          f"{out_mb:.0f} MB) | {total_cpu:.1f} | {1e6 * total_cpu / n:.0f} µs |")
    print(f"\n| projected: {args.target:,} buildings on {args.machines} x {args.cores} workers | s |")
    print("|---|---:|")
    print(f"| driver, serial ({scale:.0f} x measured) | {t_serial:.0f} |")
    print(f"| scheduler, {tasks:,.0f} tasks x {args.overhead_ms} ms | {t_sched:.0f} |")
    print(f"| tasks on {workers} workers at efficiency {args.efficiency} | {t_tasks:.0f} |")
    print(f"| output {out_mb * scale / 1024:.1f} GB at {args.fs_mb_s:.0f} MB/s (overlaps the tasks) | {t_fs:.0f} |")
    print(f"| **total** | **{total:.0f} ({total / 60:.1f} min)** |")
    print(f"\n(the build added {grew_mb:.0f} MB to this process, the tasks' memory included: they ran in it; the "
          f"driver's own growth with the city is measured by --end-to-end)")


@contextlib.contextmanager
def timed_tasks(size: Callable[[str, Any], float] | None = None) -> Iterator[dict[str, list]]:
    """Every job that `Runner.start` (and so `Runner.map`) or `Runner.start_graph` (and `Runner.graph`) runs
    meanwhile timed (CPU seconds of its process), per stage: a list of seconds, or of (seconds, size(stage, job))
    with `size`. Run synchronously, so the jobs run in this process."""
    from cim.tiling import Runner

    cpu: dict[str, list] = defaultdict(list)
    real_start, real_graph = Runner.start, Runner.start_graph

    def timing(fn, stage):
        def timed(job, *rest):
            t = time.process_time()
            try:
                return fn(job, *rest)
            finally:
                used = time.process_time() - t
                cpu[stage].append(used if size is None else (used, size(stage, job)))

        return timed

    def timed_start(self, fn, jobs, state=None, *, stage="tiles", **kw):
        return real_start(self, timing(fn, stage), jobs, state, stage=stage, **kw)

    def timed_graph(self, fn, jobs, deps, state=None, *, stage="tiles", **kw):
        return real_graph(self, timing(fn, stage), jobs, deps, state, stage=stage, **kw)

    Runner.start, Runner.start_graph = timed_start, timed_graph
    try:
        yield cpu
    finally:
        Runner.start, Runner.start_graph = real_start, real_graph


def tiled_city(src: Path, copies: int, dest: Path) -> Path:
    """A city of `copies` x the sample city in `src`, side by side eastwards, streamed row group by row group
    (the generator holds a city in memory: 2M buildings took 5.8 GB here, so 10M cannot be generated in one
    process on 24 GB). Copy k is shifted by k city sides; its `code`s get the suffix `-k` (IDs stay unique);
    the DEM is the source DEM repeated. Returns the folder (buildings.parquet, dem.tif)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.parquet as pq
    import rasterio
    import rasterio.windows
    import shapely

    dest.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src / "dem.tif") as dem:
        side = dem.bounds.right - dem.bounds.left
        data = dem.read(1)
        profile = dem.profile
    profile.update(width=data.shape[1] * copies, transform=dem.transform, BIGTIFF="IF_SAFER")
    with rasterio.open(dest / "dem.tif", "w", **profile) as out:
        for k in range(copies):
            out.write(data, 1, window=rasterio.windows.Window(k * data.shape[1], 0, data.shape[1], data.shape[0]))
    pf = pq.ParquetFile(src / "buildings.parquet")
    geo = json.loads(pf.schema_arrow.metadata[b"geo"])
    bbox = geo["columns"]["geometry"]["bbox"]
    geo["columns"]["geometry"]["bbox"] = [bbox[0], bbox[1], bbox[2] + (copies - 1) * side, bbox[3]]
    schema = pf.schema_arrow.with_metadata({b"geo": json.dumps(geo).encode()})
    with pq.ParquetWriter(dest / "buildings.parquet", schema, compression="zstd") as writer:
        for k in range(copies):
            for rg in range(pf.num_row_groups):
                t = pf.read_row_group(rg)
                g = shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False))
                g = shapely.transform(g, lambda xy, dx=k * side: xy + np.array([dx, 0.0]))
                t = t.set_column(t.schema.get_field_index("geometry"), "geometry",
                                 pa.array(shapely.to_wkb(g, output_dimension=2), pa.binary()))
                code = pa.compute.binary_join_element_wise(t.column("code"), pa.scalar(f"-{k}"), "")
                t = t.set_column(t.schema.get_field_index("code"), "code", code)
                writer.write_table(t, row_group_size=len(t))
    return dest


def _oblique_run(production: Path, out: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per-task CPU of an oblique production's conversion (synchronous): the file tasks (CPU s, bytes), the merged
    nodes' CPU s, and a summary with the driver's serial CPU."""
    from cim.models.oblique import convert_production
    from cim.tiling import SYNCHRONOUS, Runner

    def file_bytes(stage: str, job) -> float:
        return Path(job[0]).stat().st_size if stage == "oblique" else 0

    t0, c0 = time.perf_counter(), time.process_time()
    with timed_tasks(file_bytes) as cpu, Runner(scheduler=SYNCHRONOUS) as runner:
        res = convert_production(production, out, overwrite=True, runner=runner)
    wall, total = time.perf_counter() - t0, time.process_time() - c0
    files = np.array(cpu["oblique"])
    merges = np.array([c for c, _ in cpu["oblique-merge"]])
    mb = files[:, 1].sum() / 1e6
    serial = total - files[:, 0].sum() - merges.sum()
    doc = {"production": str(production), "files": len(files), "tiles": res.tiles, "input_mb": round(mb, 2),
           "wall_s": round(wall, 2), "cpu_s": round(total, 2),
           "file_cpu_s": round(float(files[:, 0].sum()), 3),
           "cpu_s_per_mb": round(float(files[:, 0].sum()) / mb, 4),
           "file_cpu_ms": {"mean": round(1000 * float(files[:, 0].mean()), 1),
                           "max": round(1000 * float(files[:, 0].max()), 1)},
           "merge_tasks": len(merges), "merge_cpu_s": round(float(merges.sum()), 3),
           "merge_cpu_ms_mean": round(1000 * float(merges.mean()), 1) if len(merges) else 0.0,
           "driver_serial_cpu_s": round(serial, 3), "output_mb": round(_size(out) / 2**20, 1)}
    return doc, files, merges


def _oblique_costs(production: Path, work: Path, copies: int, costs_out: Path | None) -> None:
    """The production's task costs; with `copies` > 1 also a production of `copies` x its `Tile_*` folders
    (symbolic links under new tile names), so the driver's serial CPU per file is the slope between the two."""
    from cim.sources.contextcapture import read_metadata

    read_metadata(production).to_ecef(np.zeros((1, 3)))  # pyproj's first transformer: not the build's cost
    one, files, merges = _oblique_run(production, work / "out-1")
    print(json.dumps(one), flush=True)
    doc = dict(one, driver_ms_per_file=round(1000 * one["driver_serial_cpu_s"] / one["files"], 3))
    if copies > 1:
        from bench_oblique_scaling import copies_of  # bench/ is this script's folder, first on sys.path

        big = copies_of(production, copies, work / f"production-x{copies}")
        many, files, merges = _oblique_run(big, work / f"out-{copies}")
        print(json.dumps(many), flush=True)
        slope = (many["driver_serial_cpu_s"] - one["driver_serial_cpu_s"]) / (many["files"] - one["files"])
        doc = dict(many, driver_ms_per_file=round(1000 * slope, 3),
                   driver_fixed_s=round(one["driver_serial_cpu_s"] - slope * one["files"], 3))
    print(json.dumps({k: v for k, v in doc.items() if k in ("cpu_s_per_mb", "merge_cpu_ms_mean", "driver_ms_per_file",
                                                           "driver_fixed_s")}))
    if costs_out is not None:
        costs_out.write_text(json.dumps({**doc, "file_tasks": files.tolist(), "merge_task_cpu": merges.tolist()}))
    print(f"load average at end: {os.getloadavg()}")


def _end_to_end(city, out: Path, workers: int) -> None:
    """The whole LOD1 build on a LocalCluster of `workers` processes, with the driver's and every worker's RSS
    sampled (psutil, every 0.2 s)."""
    import shutil

    from cim.models.lod1 import build_buildings
    from cim.tiling import Runner

    shutil.rmtree(out, ignore_errors=True)
    me = psutil.Process()
    peaks = {"driver": me.memory_info().rss, "worker": 0}
    driver_idle = peaks["driver"]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peaks["driver"] = max(peaks["driver"], me.memory_info().rss)
            for p in me.children(recursive=True):
                try:
                    peaks["worker"] = max(peaks["worker"], p.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    with Runner(workers=workers) as runner:
        kids = me.children(recursive=True)
        worker_idle = max((p.memory_info().rss for p in kids), default=0)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        res = build_buildings(city.buildings, city.dem, out, runner=runner)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        tasks = dict(runner.counts)
    n = res.buildings
    mb = 2**20
    print(json.dumps({"buildings": n, "tiles": res.tiles, "workers": workers, "wall_s": round(wall, 1),
                      "stage_wall_s": {k: round(v, 1) for k, v in res.stage_seconds.items()}, "tasks": tasks,
                      "driver_peak_rss_mb": round(peaks["driver"] / mb), "driver_idle_rss_mb": round(driver_idle / mb),
                      "worker_peak_rss_mb": round(peaks["worker"] / mb), "worker_idle_rss_mb": round(worker_idle / mb),
                      "driver_bytes_per_building": round((peaks["driver"] - driver_idle) / n),
                      "output_mb": round(_size(out) / mb), "load_at_end": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
