"""A Dask simulation of a city build on a cluster: the build's waves of tasks with durations drawn from costs
measured on this machine, run by a real Dask scheduler on a LocalCluster of many single-threaded workers.

The tasks sleep instead of computing (this machine has 2 cores, the simulated cluster M x C), so what the run
measures is what a cost model leaves out: the scheduler's own time per task, the tail of each wave (its slowest
tasks on the last busy workers) and the barrier between waves (the driver gathers a wave's results before the next
is planned). Durations are the measured CPU seconds of real tasks (`bench_scale.py --costs-out`), resampled to the
target's task counts, divided by `--speedup` (how much faster one core of the cluster is than one here; 1.0 =
the same) and by `--compress` (a time scale for the simulation only: the printed projection multiplies back, but the
scheduler's overhead is then counted `--compress` times over, so keep it 1 unless the run is too long).

The driver's serial work between the waves (the quadtree, the merges; measured per building, or per file of an
oblique production) is added as it is measured, scaled to the target: it runs on one core whatever the cluster.
The waves are planned as the build plans them: partitions sized for the workers, tiles (and an oblique folder's
files) batched several to a Dask task (`cim.tiling.batches`).

    python bench/bench_scale.py --buildings 1000000 --costs-out costs.json
    python bench/sim_cluster.py lod1 --costs costs.json --target 10000000 --machines 8 --cores 16
    python bench/bench_scale.py --oblique --copies 10 --costs-out oblique-costs.json
    python bench/sim_cluster.py oblique --costs oblique-costs.json --target-gb 1024 --machines 8 --cores 16
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def run_waves(waves: list[tuple[str, np.ndarray]], workers: int, compress: float,
              serial: dict[str, float]) -> dict[str, dict[str, float]]:
    """Run each wave's sleeping tasks on a LocalCluster of `workers` single-threaded workers (in this process),
    one wave after the other, costliest first (as `cim.tiling.Runner` submits them); per wave its wall time."""
    from distributed import Client, LocalCluster, wait

    out: dict[str, dict[str, float]] = {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None,
                      memory_limit=0) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(workers)
        for name, durations in waves:
            d = np.sort(durations)[::-1] / compress
            t0 = time.perf_counter()
            futures = [client.submit(_sleep, float(x), pure=False, priority=len(d) - i) for i, x in enumerate(d)]
            wait(futures)
            wall = time.perf_counter() - t0
            del futures
            ideal = float(d.sum()) / workers
            out[name] = {"tasks": len(d), "task_s": float(durations.sum()), "sim_wall_s": wall,
                         "ideal_s": ideal, "efficiency": ideal / wall if wall else 1.0,
                         "projected_s": wall * compress, "driver_s": serial.get(name, 0.0)}
    return out


PARTITION_STAGES = ("footprints-scan", "footprints-ids", "footprints-clean", "footprints-prepare", "lod1-rows")


def lod1_waves(costs: dict, target: int, workers: int, speedup: float, rng: np.random.Generator,
               batched: bool = True) -> tuple[list[tuple[str, np.ndarray]], dict[str, float]]:
    """The LOD1 build's waves at `target` buildings on `workers` workers, as `cim build` plans them.

    Partition waves: as many partitions as `cim.sources.footprints.partition_size` gives for the target and the
    workers (at least `PARTS_PER_WORKER` a worker, of at most 100,000 rows), each lasting a measured partition's
    CPU scaled by its rows. Tile waves: the measured tiles resampled to the target's count, then grouped into Dask
    tasks by `cim.tiling.batches` (`batched=False`: one tile a task, as before).
    """
    from cim.models.partitioned import PARTS_PER_WORKER
    from cim.sources.footprints import PARTITION_ROWS, partition_size
    from cim.tiling import batches

    n = costs["buildings"]
    waves = []
    for stage, durations in costs["task_cpu"].items():
        measured = np.asarray(durations, np.float64)
        if stage in PARTITION_STAGES:
            rows = partition_size(PARTITION_ROWS, target, PARTS_PER_WORKER * workers)
            count = -(-target // rows)
            waves.append((stage, rng.choice(measured, count) * rows / (n / len(measured)) / speedup))
            continue
        count = max(1, round(len(measured) * target / n))
        d = rng.choice(measured, count) / speedup
        if batched:
            d = np.array([d[g].sum() for g in batches(d, workers)])
        waves.append((stage, d))
    serial = {stage: s * target / n / speedup for stage, s in costs.get("driver_after", {}).items()}
    return waves, serial


def oblique_waves(target_gb: float, mb_per_task: float, costs: dict | None, cpu_s_per_mb: float,
                  merge_s: float, speedup: float, rng: np.random.Generator, workers: int = 1, batched: bool = True
                  ) -> tuple[list[tuple[str, np.ndarray]], dict[str, float]]:
    """A ContextCapture production of `target_gb`: `mb_per_task` of OSGB per `Tile_*` folder, the folders' files
    batched into Dask tasks as the build batches them (`batched`), then the merged coarse levels (a node per four
    children, a wave per level, its nodes batched as well: `Runner.map` batches every wave).

    With `costs` (bench_scale.py --oblique --costs-out) a folder's CPU is its size times CPU-per-MB ratios drawn
    from the measured file tasks, a merged node's CPU is drawn from the measured merge tasks, and the driver's
    serial CPU per file is added to the file wave; otherwise `cpu_s_per_mb` and `merge_s` are used.
    """
    total_mb = target_gb * 1024
    count = max(1, round(total_mb / mb_per_task))
    sizes = rng.uniform(0.5, 1.5, count) * mb_per_task  # folders vary +-50 %
    serial: dict[str, float] = {}
    if costs is not None:
        f = np.asarray(costs["file_tasks"], np.float64)  # (cpu s, bytes) per file
        ratio = f[:, 0] / (f[:, 1] / 1e6)
        files = sizes * rng.choice(ratio, count) / speedup
        merge_pool = np.asarray(costs["merge_task_cpu"], np.float64)
        per_file_mb = costs["input_mb"] / costs["files"]
        serial["oblique files"] = total_mb / per_file_mb * costs["driver_ms_per_file"] / 1000 / speedup
    else:
        files = sizes * cpu_s_per_mb / speedup
        merge_pool = np.array([merge_s])
    levels = []
    level = count
    while level > 1:  # the merged quadtree over the folders: a node merges up to 4 children's coarse meshes
        level = max(1, -(-level // 4))
        levels.append(level)
    merges = [(f"oblique-merge ({k:,} nodes)", rng.choice(merge_pool, k) / speedup) for k in levels]
    if batched:  # consecutive folders' files, and a level's merged nodes, run as one Dask task (`cim.tiling.batches`)
        from cim.tiling import batches

        files = np.array([files[g].sum() for g in batches(files, workers)])
        merges = [(name, np.array([d[g].sum() for g in batches(d, workers)])) for name, d in merges]
    return [("oblique files", files), *merges], serial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", choices=["lod1", "oblique"])
    ap.add_argument("--costs", help="bench_scale.py --costs-out file (lod1; oblique: bench_scale.py --oblique)")
    ap.add_argument("--target", type=int, default=10_000_000, help="buildings (lod1)")
    ap.add_argument("--target-gb", type=float, default=1024.0, help="OSGB production size (oblique)")
    ap.add_argument("--mb-per-task", type=float, default=64.0, help="OSGB per task: one Tile_* folder (oblique)")
    ap.add_argument("--cpu-s-per-mb", type=float, default=0.043,
                    help="CPU seconds per MB of OSGB without --costs (benchmarks.md: 31.8 MB in 0.69 s on 2 workers)")
    ap.add_argument("--merge-s", type=float, default=0.25, help="CPU seconds per merged node without --costs")
    ap.add_argument("--fs-mb-s", type=float, default=1000.0,
                    help="shared file system bandwidth, reads and writes together (oblique)")
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--speedup", type=float, default=1.0, help="a cluster core's speed over one here")
    ap.add_argument("--compress", type=float, default=1.0, help="simulated time scale (see above)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--unbatched", action="store_true",
                    help="one tile (lod1) or one folder (oblique) a Dask task: no batching")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    workers = args.machines * args.cores
    print(f"load average at start: {os.getloadavg()}", flush=True)
    serial: dict[str, float] = {}
    if args.build == "lod1":
        with open(args.costs) as fh:
            costs = json.load(fh)
        waves, serial = lod1_waves(costs, args.target, workers, args.speedup, rng, batched=not args.unbatched)
        what = f"{args.target:,} LOD1 buildings"
    else:
        costs = None
        if args.costs:
            with open(args.costs) as fh:
                costs = json.load(fh)
        waves, serial = oblique_waves(args.target_gb, args.mb_per_task, costs, args.cpu_s_per_mb, args.merge_s,
                                      args.speedup, rng, workers, batched=not args.unbatched)
        what = f"a {args.target_gb:,.0f} GB oblique production ({args.mb_per_task:g} MB per task)"
    t0 = time.perf_counter()
    result = run_waves(waves, workers, args.compress, serial)
    print(f"load average at end: {os.getloadavg()} (simulation ran {time.perf_counter() - t0:.0f} s)")
    print(json.dumps(result), flush=True)
    total = sum(r["projected_s"] + r["driver_s"] for r in result.values())
    print(f"\n| {what} on {args.machines} x {args.cores} workers (simulated) | tasks | task CPU s | "
          f"wall s | efficiency | driver s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in result.items():
        print(f"| `{name}` | {r['tasks']:,} | {r['task_s']:,.0f} | {r['projected_s']:,.1f} | {r['efficiency']:.2f} | "
              f"{r['driver_s']:,.1f} |")
    if args.build == "oblique":
        ratio = costs["output_mb"] * 2**20 / 1e6 / costs["input_mb"] if costs else 0.7
        io = args.target_gb * 1024 * (1 + ratio) / args.fs_mb_s
        print(f"| reading {args.target_gb:,.0f} GB and writing {ratio * args.target_gb:,.0f} GB of tiles at "
              f"{args.fs_mb_s:,.0f} MB/s in all (bound if slower than the tasks) | | | {io:,.0f} | | |")
        total = max(total, io)
    print(f"| **total** | | | **{total:,.0f} ({total / 60:.1f} min)** | | |")


if __name__ == "__main__":
    main()
