"""Sunlight-hours check (GB 50180-2018, 1-minute steps) of every residential window, against Embree's own floor
measured in the same run.

  - the check: `cim.analysis.planning.sunlight` end to end on a city (window sampling, SPA sun table, ray casting
    with the per-step bookkeeping and the bisection of every change to the second, counting rules, verdicts);
  - the floor: the same rays cast with no bookkeeping. Every `--record-every`-th batch of rays the check casts is
    copied aside (the copying is charged to the check); afterwards those batches are cast again straight through
    embreex (`EmbreeScene.run`, OCCLUDED, same origins, directions and lengths, as many threads as the check used),
    which gives Embree's own rays per second on these very rays; floor time = rays cast / that rate.
It prints windows, rays, seconds, rays/s, the floor's rays/s and check time / floor time, for the sample city and
a generated district (10,000 buildings by default).

    python bench/bench_planning.py                          # sample city + generated 10k-building district
    python bench/bench_planning.py --district 0             # sample city only
    python bench/bench_planning.py --spacing 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cim.analysis.planning.scene import CityScene, RayTracer
from cim.analysis.planning.sunlight import SunlightParams, sunlight


class RecordingTracer:
    """A ray tracer that keeps a copy of every n-th batch it is asked (for the floor)."""

    def __init__(self, tracer: RayTracer, every: int) -> None:
        self.tracer = tracer
        self.every = max(1, every)
        self.calls = 0
        self.saved: list[tuple[np.ndarray, np.ndarray, Any]] = []
        self.lock = threading.Lock()

    def occluded(self, origins: np.ndarray, directions: np.ndarray, tfar: Any = None) -> np.ndarray:
        with self.lock:
            self.calls += 1
            keep = self.calls % self.every == 0
        if keep:
            t = None if tfar is None else (tfar if np.isscalar(tfar) else np.array(tfar, np.float32))
            with self.lock:
                self.saved.append((np.array(origins, np.float32), np.array(directions, np.float32), t))
        return self.tracer.occluded(origins, directions, tfar)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracer, name)


def floor_rate(tracer: RayTracer, batches: list[tuple[np.ndarray, np.ndarray, Any]], workers: int) -> float:
    """Rays per second of embreex alone on the recorded batches, cast by `workers` threads."""
    scene = tracer._scene  # noqa: SLF001 - the floor is Embree itself, below our wrapper
    jobs = [(o, d, None if t is None else (float(t) if np.isscalar(t) else np.array(t, np.float32)))
            for o, d, t in batches]
    rays = sum(len(o) for o, _, _ in jobs)

    def cast(part: list[tuple[np.ndarray, np.ndarray, Any]]) -> None:
        for o, d, t in part:
            scene.run(o, d, dists=t, query="OCCLUDED")

    parts = [jobs[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(cast, parts))
    return rays / (time.perf_counter() - t0)


def run(name: str, scene_factory: Any, params: SunlightParams, every: int, workers: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    scene = scene_factory()
    t1 = time.perf_counter()
    tracer = scene.tracer()
    t2 = time.perf_counter()
    rec = RecordingTracer(tracer, every)
    scene._tracer = rec  # type: ignore[assignment]  # noqa: SLF001 - measure the same rays
    t3 = time.perf_counter()
    result = sunlight(scene, params)
    t4 = time.perf_counter()
    rate = floor_rate(tracer, rec.saved, workers)
    s = result.summary()
    rays = result.rays
    check = t4 - t3
    rays_s = result.seconds.get("rays", check)
    floor_s = rays / rate
    return {"city": name, "buildings": int(len(scene.buildings)), "checked": s["buildings"],
            "windows": s["windows"], "rays": rays, "triangles": tracer.triangles,
            "scene_s": round(t1 - t0, 2), "tracer_s": round(t2 - t1, 2),
            "check_s": round(check, 2), "stages_s": {k: round(v, 2) for k, v in result.seconds.items()},
            "rays_per_s": round(rays / rays_s), "floor_rays_per_s": round(rate), "floor_s": round(floor_s, 2),
            "rays_stage_over_floor": round(rays_s / floor_s, 2), "check_over_floor": round(check / floor_s, 2),
            "recorded_rays": int(sum(len(o) for o, _, _ in rec.saved)),
            "buildings_failing": s["buildings_failing"], "windows_failing": s["windows_failing"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--district", type=int, default=10_000, help="buildings of the generated district (0: none)")
    parser.add_argument("--spacing", type=float, default=3.0, help="metres between windows along a facade")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--record-every", type=int, default=10, help="copy every n-th ray batch for the floor")
    parser.add_argument("--bbox", help="minlon,minlat,maxlon,maxlat: check only these buildings (quick runs)")
    args = parser.parse_args()
    bbox = tuple(float(v) for v in args.bbox.split(",")) if args.bbox else None
    params = SunlightParams(spacing=args.spacing, workers=args.workers, bbox=bbox)
    print(f"load average at start: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}; cores: {os.cpu_count()}")
    rows = [run("sample city", CityScene.sample, params, args.record_every, args.workers)]
    if args.district:
        from cim.sample import generate

        with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmp:
            tick = time.perf_counter()
            city = generate(Path(tmp) / "district", buildings=args.district, ortho=False, layers=["buildings"])
            print(f"generated the {args.district}-building district in {time.perf_counter() - tick:.1f} s")
            rows.append(run(f"district {args.district}", lambda: CityScene.open(city.buildings, city.dem), params,
                            args.record_every, args.workers))
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    print(f"load average at end: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("\n| city | buildings checked | windows | rays | check (s) | rays stage (s) | rays/s | Embree floor rays/s "
          "| rays stage / floor | check / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['city']} | {r['checked']} | {r['windows']} | {r['rays']:,} | {r['check_s']} | "
              f"{r['stages_s'].get('rays')} | {r['rays_per_s']:,} | {r['floor_rays_per_s']:,} | "
              f"{r['rays_stage_over_floor']} | {r['check_over_floor']} |")


if __name__ == "__main__":
    main()
