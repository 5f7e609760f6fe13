"""LOD1 builds on Dask: the same footprints built in this process and on LocalClusters of 1 and 2 workers.

For each city size (footprint-only sample cities, GeoParquet footprints + the generator's DEM, as bench_lod1) this
runs `cim.models.lod1.build_buildings` with
  - `scheduler="synchronous"`: every tile in the driver process (the floor: no scheduling, no transfer);
  - a LocalCluster of 1 worker and of 2 workers (started and warmed up on a small city before the timing; the
    start-up is printed apart).
It prints the tile stage's seconds and the whole build's, peak memory (PSS of the driver and its workers together,
and the peak RSS of the largest worker process: what a worker needs), the
scaling efficiency from 1 to 2 workers (t1 / (2 t2), of the tile stage and of the whole build) and the cost of
Dask against the synchronous floor (t1 / t_sync), and checks that all three outputs are the same bytes.

With `--oblique` it also converts the oblique production (../shared/data/oblique_osgb/zhongshan, one task per
`.osgb` file, then the merged levels) the same three ways, best and worst of `--repeat` runs taken in turn.
Both clusters stay up for the whole run, so the idle one takes CPU from the 2-worker runs on a 2-core machine:
the oblique efficiency this prints reads low (0.77-0.78 against 0.83-0.84 here); `bench_oblique_scaling.py`
measures it with one cluster at a time.

    python bench/bench_dask.py                  # 100k buildings
    python bench/bench_dask.py --sizes 20000    # a quick run
    python bench/bench_dask.py --sizes 1000000 --oblique
    python bench/bench_dask.py --sizes 1000000 --trees explicit auto   # the explicit tree too (as before 3b)

`--trees` builds each size as an explicit tile tree, an implicit quadtree, or as `cim build` does (auto: implicit
from 500,000 buildings); each run writes into a fresh folder.

Where the time goes: each row also has the driver's CPU seconds (this process: the build's serial parts, and the
local cluster's scheduler, which runs here), the worker processes' CPU seconds, and per stage of the 1- and 2-worker
runs the wave from Dask's task stream (`waves`: tasks, span, compute seconds, efficiency, and the tail from the first
worker out of work to the wave's end).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
from distributed import get_task_stream


PSS_EVERY_S = 0.5  # PSS walks every page table (/proc/PID/smaps_rollup): at 0.05 s it took ~17 % of a core here
RSS_EVERY_S = 0.05


def _pss(stop: threading.Event, out: list[int]) -> None:
    """Peak PSS of this process and its children together (every `PSS_EVERY_S`), and peak RSS of the largest
    child (a Dask worker; every `RSS_EVERY_S`: reading it is cheap).

    The sampler runs in the driver, beside the local cluster's scheduler, on the cores the workers use: sampling PSS
    every 0.05 s cost 4.4 CPU seconds in a 26.5 s 1-worker build of 200,000 buildings (measured per thread), time
    the 2-worker runs lost on this 2-core machine and the 1-worker runs did not (a free core).
    """
    me = psutil.Process()
    peak = worker = 0
    last_pss = 0.0
    while not stop.is_set():
        try:
            kids = me.children(recursive=True)
            worker = max([worker, *(p.memory_info().rss for p in kids)])
            if time.monotonic() - last_pss >= PSS_EVERY_S:
                last_pss = time.monotonic()
                peak = max(peak, sum(p.memory_full_info().pss for p in [me, *kids]))
        except psutil.Error:
            pass
        time.sleep(RSS_EVERY_S)
    out.extend([peak, worker])


def _digest(root: Path) -> str:
    h = hashlib.blake2b()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def run(footprints: Path, dem: Path, out: Path, runner, tree: str = "auto") -> dict:
    from cim.models.footprints import BuildingOptions
    from cim.models.lod1 import build_buildings

    shutil.rmtree(out, ignore_errors=True)  # a fresh folder: no tiles of an earlier run (or tree) in the digest
    stop, peak = threading.Event(), []
    t = threading.Thread(target=_pss, args=(stop, peak), daemon=True)
    t.start()
    options = BuildingOptions(implicit={"auto": None, "explicit": False, "implicit": True}[tree])
    client = runner.client
    stream = contextlib.nullcontext(None) if client is None else get_task_stream(client=client)
    kids0, cpu0, t0 = _kids_cpu(), time.process_time(), time.perf_counter()
    with stream as ts:
        res = build_buildings(footprints, dem, out, runner=runner, options=options)
    seconds = time.perf_counter() - t0
    driver_cpu, kids_cpu = time.process_time() - cpu0, _kids_cpu() - kids0
    stop.set()
    t.join()
    n = len(client.scheduler_info(n_workers=-1)["workers"]) if client is not None else 1
    return {"seconds": seconds, "tiles_s": res.stage_seconds["tiles"], "peak_mb": peak[0] / 2**20,
            "worker_mb": peak[1] / 2**20, "driver_cpu_s": driver_cpu, "workers_cpu_s": kids_cpu,
            "buildings": res.buildings, "tiles": res.tiles, "digest": _digest(out),
            "stages": {k: round(v, 2) for k, v in res.stage_seconds.items()},
            "waves": waves(ts.data, n) if ts is not None else {}}


def _kids_cpu() -> float:
    """CPU seconds (user + system) of this process's children so far (the local clusters' worker processes)."""
    total = 0.0
    for p in psutil.Process().children(recursive=True):
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def waves(stream: list[dict], workers: int) -> dict[str, dict[str, float]]:
    """Where a run's worker time went, per stage, from Dask's task stream (`distributed.get_task_stream`).

    A stage's tasks are keyed `<stage>-<uuid>-<first job>` (`cim.tiling.Runner`). Per stage: Dask tasks, the wave's
    span (first compute start to last compute end), the compute seconds of all its tasks, its efficiency (compute /
    (workers x span)) and its tail: from the moment the first worker ran out of tasks for good to the wave's end
    (what a worker idles at the end of a wave).
    """
    computes: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for task in stream:
        key = task["key"]
        stage = key.rsplit("-", 2)[0] if isinstance(key, str) and key.count("-") >= 2 else str(key)
        for ss in task.get("startstops", ()):
            if ss["action"] == "compute":
                computes[stage].append((task["worker"], ss["start"], ss["stop"]))
    out = {}
    for stage, xs in computes.items():
        start, end = min(x[1] for x in xs), max(x[2] for x in xs)
        last = defaultdict(float)
        for w, _, b in xs:
            last[w] = max(last[w], b)
        first_idle = min(last.values()) if len(last) == workers else start
        busy = sum(b - a for _, a, b in xs)
        span = end - start
        out[stage] = {"tasks": len(xs), "span_s": round(span, 2), "compute_s": round(busy, 2),
                      "efficiency": round(busy / (workers * span), 3) if span > 0 else 1.0,
                      "tail_s": round(end - first_idle, 2)}
    return out


PRODUCTION = Path(__file__).resolve().parents[2] / "shared" / "data" / "oblique_osgb" / "zhongshan"


def run_oblique(production: Path, out: Path, runner) -> dict:
    from cim.models.oblique import convert_production

    t0 = time.perf_counter()
    res = convert_production(production, out, overwrite=True, runner=runner)
    return {"seconds": time.perf_counter() - t0, "convert_s": res.stage_seconds["convert"],
            "merge_s": res.stage_seconds["merge"], "files": res.files, "mb": res.input_bytes / 1e6,
            "digest": _digest(out)}


def bench_oblique(production: Path, work: Path, clusters: dict, repeat: int) -> dict:
    """The production converted synchronously and on 1 and 2 workers, `repeat` times in turn; best and worst."""
    from cim.tiling import SYNCHRONOUS, Runner

    runs: dict = {"sync": [], 1: [], 2: []}
    for _ in range(repeat):
        for key in runs:
            with (Runner(scheduler=SYNCHRONOUS) if key == "sync" else Runner(client=clusters[key])) as r:
                runs[key].append(run_oblique(production, work / f"oblique-{key}", r))
    best = {k: min(v, key=lambda x: x["seconds"]) for k, v in runs.items()}
    row = {"files": best["sync"]["files"], "input_mb": round(best["sync"]["mb"], 1), "repeat": repeat,
           "same_bytes": len({x["digest"] for v in runs.values() for x in v}) == 1,
           **{f"{k}_s": round(v["seconds"], 2) for k, v in best.items()},
           **{f"{k}_worst_s": round(max(x["seconds"] for x in runs[k]), 2) for k in runs},
           **{f"{k}_convert_s": round(v["convert_s"], 2) for k, v in best.items()},
           **{f"{k}_merge_s": round(v["merge_s"], 2) for k, v in best.items()},
           "efficiency_build": round(best[1]["seconds"] / (2 * best[2]["seconds"]), 2),
           "efficiency_convert": round(best[1]["convert_s"] / (2 * best[2]["convert_s"]), 2),
           "mb_per_s_2": round(best[2]["mb"] / best[2]["seconds"], 1)}
    return row


def _row(res: dict, same: bool, tree: str) -> dict:
    """One size and tree's JSON row: seconds, tile-stage seconds, memory, efficiencies, stage seconds per run."""
    row = {"buildings": res["sync"]["buildings"], "tree": tree, "tiles": res["sync"]["tiles"], "same_bytes": same,
           **{f"{k}_s": round(v["seconds"], 2) for k, v in res.items()},
           **{f"{k}_tiles_s": round(v["tiles_s"], 2) for k, v in res.items()},
           **{f"{k}_peak_mb": round(v["peak_mb"]) for k, v in res.items()},
           **{f"{k}_worker_mb": round(v["worker_mb"]) for k, v in res.items() if k != "sync"},
           "efficiency_tiles": round(res[1]["tiles_s"] / (2 * res[2]["tiles_s"]), 2),
           "efficiency_build": round(res[1]["seconds"] / (2 * res[2]["seconds"]), 2),
           "one_worker_over_sync": round(res[1]["seconds"] / res["sync"]["seconds"], 2),
           "stages_s": {str(k): v["stages"] for k, v in res.items()},
           "driver_cpu_s": {str(k): round(v["driver_cpu_s"], 2) for k, v in res.items()},
           "workers_cpu_s": {str(k): round(v["workers_cpu_s"], 2) for k, v in res.items() if k != "sync"},
           "waves": {str(k): v["waves"] for k, v in res.items() if k != "sync"}}
    return row


def main() -> None:
    from cim.sample import generate, load
    from cim.tiling import SYNCHRONOUS, Runner, start_local_cluster

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--work", type=Path, default=None, help="folder for generated cities (default: a temp dir)")
    ap.add_argument("--oblique", type=Path, nargs="?", const=PRODUCTION, default=None,
                    help="also the oblique production (default: ../shared/data/oblique_osgb/zhongshan)")
    ap.add_argument("--repeat", type=int, default=3, help="oblique runs (best and worst reported)")
    ap.add_argument("--trees", nargs="+", choices=["auto", "explicit", "implicit"], default=["auto"],
                    help="tile trees to build each size as (auto: implicit from 500,000 buildings, as cim build)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cim-bench-dask-"))
    print(f"load average at start: {os.getloadavg()}", flush=True)
    from distributed import Client

    clusters = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        clusters[n] = Client(start_local_cluster(n), set_as_default=False)
        print(f"LocalCluster of {n} worker(s) started in {time.perf_counter() - t0:.1f} s", flush=True)
    # warm the workers up (imports, pyproj's transformers) on a small city, so the timings are the build's
    small = work / "city-warmup"
    city = load(small) if (small / "sample.json").exists() else generate(
        small, buildings=2000, seed=2, footprint_format="parquet", ortho=False, layers=("buildings",))
    for n, client in clusters.items():
        with Runner(client=client) as r:
            run(city.buildings, city.dem, work / f"warmup-{n}", r)
    rows = []
    for size in args.sizes:
        city_dir = work / f"city-{size}"
        city = load(city_dir) if (city_dir / "sample.json").exists() else generate(
            city_dir, buildings=size, seed=1, footprint_format="parquet", ortho=False, layers=("buildings",))
        for tree in args.trees:
            res = {}
            with Runner(scheduler=SYNCHRONOUS) as r:
                res["sync"] = run(city.buildings, city.dem, work / f"out-{size}-{tree}-sync", r, tree)
            for n, client in clusters.items():
                with Runner(client=client) as r:
                    res[n] = run(city.buildings, city.dem, work / f"out-{size}-{tree}-{n}", r, tree)
            same = res["sync"]["digest"] == res[1]["digest"] == res[2]["digest"]
            rows.append(_row(res, same, tree))
            print(json.dumps(rows[-1]), flush=True)
    obl = None
    if args.oblique is not None:
        obl = bench_oblique(args.oblique, work, clusters, args.repeat)
        print(json.dumps(obl), flush=True)
    for c in clusters.values():
        c.cluster.close()
        c.close()
    print(f"load average at end: {os.getloadavg()}")
    print("\n| buildings | tree | tiles | sync s (tiles) | 1 worker s (tiles) | 2 workers s (tiles) | efficiency "
          "1->2 tiles (build) | 1 worker / sync | peak MB sync / 1 / 2 | worker peak RSS MB 1 / 2 | same bytes |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        print(f"| {r['buildings']:,} | {r['tree']} | {r['tiles']} | {r['sync_s']} ({r['sync_tiles_s']}) | "
              f"{r['1_s']} ({r['1_tiles_s']}) | {r['2_s']} ({r['2_tiles_s']}) | {r['efficiency_tiles']} "
              f"({r['efficiency_build']}) | {r['one_worker_over_sync']} | {r['sync_peak_mb']} / {r['1_peak_mb']} / "
              f"{r['2_peak_mb']} | {r['1_worker_mb']} / {r['2_worker_mb']} | {'yes' if r['same_bytes'] else 'NO'} |")

    if obl is not None:
        print(f"\noblique production: {obl['files']} files, {obl['input_mb']} MB; best (worst) of {obl['repeat']}")
        print("| sync s (convert) | 1 worker s (convert) | 2 workers s (convert) | efficiency 1->2 build (convert) |"
              " MB/s on 2 | same bytes |")
        print("|---:|---:|---:|---:|---:|:---:|")
        print(f"| {obl['sync_s']} ({obl['sync_convert_s']}) | {obl['1_s']} ({obl['1_convert_s']}) | {obl['2_s']} "
              f"({obl['2_convert_s']}) | {obl['efficiency_build']} ({obl['efficiency_convert']}) | {obl['mb_per_s_2']} |"
              f" {'yes' if obl['same_bytes'] else 'NO'} |")


if __name__ == "__main__":
    main()
