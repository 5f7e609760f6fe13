"""A Dask simulation of a city build on a cluster: the build's waves of tasks with durations drawn from costs
measured on this machine, run by a real Dask scheduler on a LocalCluster of many single-threaded workers.

The tasks sleep instead of computing (this machine has 2 cores, the simulated cluster M x C), so what the run
measures is what a cost model leaves out: the scheduler's own time per task, the tail of each wave (its slowest
tasks on the last busy workers) and the barrier between waves (the driver gathers a wave's results before the next
is planned). Durations are the measured CPU seconds of real tasks (`bench_scale.py --costs-out`), resampled to the
target's task counts, divided by `--speedup` (how much faster one core of the cluster is than one here; 1.0 =
the same) and by `--compress` (a time scale for the simulation only: the printed projection multiplies back, but the
scheduler's overhead is then counted `--compress` times over, so keep it 1 unless the run is too long).

The driver's serial work between the waves (the quadtree, the merges; measured per building) is added as it is
measured, scaled to the target: it runs on one core whatever the cluster.

    python bench/bench_scale.py --buildings 1000000 --costs-out costs.json
    python bench/sim_cluster.py lod1 --costs costs.json --target 10000000 --machines 8 --cores 16
    python bench/sim_cluster.py oblique --target-gb 1024 --machines 8 --cores 16 --compress 10
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


def lod1_waves(costs: dict, target: int, speedup: float, rng: np.random.Generator
               ) -> tuple[list[tuple[str, np.ndarray]], dict[str, float]]:
    """The LOD1 build's waves at `target` buildings, task counts scaled from the measured run."""
    n = costs["buildings"]
    waves = []
    for stage, durations in costs["task_cpu"].items():
        measured = np.asarray(durations, np.float64)
        count = max(1, round(len(measured) * target / n))
        waves.append((stage, rng.choice(measured, count) / speedup))
    serial = {stage: s * target / n / speedup for stage, s in costs.get("driver_after", {}).items()}
    return waves, serial


def oblique_waves(target_gb: float, mb_per_task: float, cpu_s_per_mb: float, merge_fraction: float,
                  speedup: float, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """A ContextCapture production of `target_gb`: one task per `mb_per_task` of OSGB (a Tile_* folder), CPU
    proportional to its size (sizes drawn +-50 %), then the merged coarse levels (a fraction of that work)."""
    total_mb = target_gb * 1024
    count = max(1, round(total_mb / mb_per_task))
    sizes = rng.uniform(0.5, 1.5, count) * mb_per_task
    files = sizes * cpu_s_per_mb / speedup
    levels = []
    level = count
    while level > 1:  # the merged quadtree over the folders: a node merges up to 4 children's coarse meshes
        level = max(1, -(-level // 4))
        levels.append(level)
    per_node = merge_fraction * files.sum() / max(1, sum(levels))  # a merge's cost does not grow with its depth
    merges = [(f"oblique-merge ({k:,} nodes)", rng.uniform(0.5, 1.5, k) * per_node) for k in levels]
    return [("oblique files", files), *merges]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", choices=["lod1", "oblique"])
    ap.add_argument("--costs", help="bench_scale.py --costs-out file (lod1)")
    ap.add_argument("--target", type=int, default=10_000_000, help="buildings (lod1)")
    ap.add_argument("--target-gb", type=float, default=1024.0, help="OSGB production size (oblique)")
    ap.add_argument("--mb-per-task", type=float, default=64.0, help="OSGB per task: one Tile_* folder (oblique)")
    ap.add_argument("--cpu-s-per-mb", type=float, default=0.043,
                    help="CPU seconds per MB of OSGB (benchmarks.md: 31.8 MB in 0.69 s on 2 workers)")
    ap.add_argument("--merge-fraction", type=float, default=0.1, help="merged levels' CPU / the files' CPU")
    ap.add_argument("--fs-mb-s", type=float, default=1000.0, help="shared file system bandwidth (oblique input)")
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--speedup", type=float, default=1.0, help="a cluster core's speed over one here")
    ap.add_argument("--compress", type=float, default=1.0, help="simulated time scale (see above)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    workers = args.machines * args.cores
    print(f"load average at start: {os.getloadavg()}", flush=True)
    serial: dict[str, float] = {}
    if args.build == "lod1":
        with open(args.costs) as fh:
            costs = json.load(fh)
        waves, serial = lod1_waves(costs, args.target, args.speedup, rng)
        what = f"{args.target:,} LOD1 buildings"
    else:
        waves = oblique_waves(args.target_gb, args.mb_per_task, args.cpu_s_per_mb, args.merge_fraction,
                              args.speedup, rng)
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
        read = args.target_gb * 1024 / args.fs_mb_s
        print(f"| reading {args.target_gb:,.0f} GB at {args.fs_mb_s:,.0f} MB/s (bound if slower than the tasks) "
              f"| | | {read:,.0f} | | |")
        total = max(total, read)
    print(f"| **total** | | | **{total:,.0f} ({total / 60:.1f} min)** | | |")


if __name__ == "__main__":
    main()
