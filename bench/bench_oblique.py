"""Oblique photography and LOD2 throughput, each against a floor measured in the same run.

OSGB -> 3D Tiles (the real ContextCapture production in ../shared/data/oblique_osgb/zhongshan, or --production):
  - floor: `osgconv` alone on every file of the production, two files at a time (2 cores), written as `.osgb`
    (read + the cheapest write osgconv has) and as the `.osg` text the osgconv reader parses;
  - build: `cim.models.oblique.convert_production` end to end with 2 workers (read, georeference, glb, tileset, merged
    levels), with each `.osgb` reader (CIM_OSGB_READER=native, the default, and =osgconv);
  - read: the native reader alone on every file (one process), against the same floor;
  printing input MB/s, triangles/s, peak memory (PSS of the process tree) and time / floor, best (and worst) of
  --repeat runs taken in turn.
LOD2: `cim.models.lod2.build_lod2_buildings` on a generated city (footprints with roof types, no rasters), buildings/s,
against the LOD1 build of the same footprints.

    python bench/bench_oblique.py                      # production + 100k LOD2 buildings
    python bench/bench_oblique.py --lod2-buildings 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_lod1 import _measured

PRODUCTION = ROOT.parent / "shared" / "data" / "oblique_osgb" / "zhongshan"


def osgconv_floor(production: Path, work: Path, suffix: str, options: str = "") -> float:
    """Seconds for osgconv alone to convert every file of the production, two at a time."""
    from cim.sources.osgb import osgconv_path

    exe = osgconv_path()
    files = sorted((production / "Data").rglob("*.osgb"))
    work.mkdir(parents=True, exist_ok=True)

    def one(k_f: tuple[int, Path]) -> None:
        k, f = k_f
        cmd = [exe] + (["-O", options] if options else []) + [str(f), str(work / f"{k}{suffix}")]
        subprocess.run(cmd, capture_output=True, check=True, cwd=work)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, enumerate(files)))
    return time.perf_counter() - t0


def _build(production: Path, work: Path, reader: str) -> tuple[object, float, int]:
    from cim.models.oblique import ObliqueOptions, convert_production

    old = os.environ.get("CIM_OSGB_READER")
    os.environ["CIM_OSGB_READER"] = reader
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _measured(lambda: convert_production(production, work / f"tiles-{reader}", overwrite=True,
                                                        options=ObliqueOptions(workers=2)))
    finally:
        if old is None:
            os.environ.pop("CIM_OSGB_READER", None)
        else:
            os.environ["CIM_OSGB_READER"] = old


def bench_osgb(production: Path, work: Path, repeat: int = 3) -> dict:
    """Floors, the native read alone and both builds, `repeat` times in turn; best and worst of each."""
    import numpy as np

    from cim.sources.contextcapture import read_metadata
    from cim.sources.osgb import read_osgb_native

    read_metadata(production).to_ecef(np.zeros((1, 3)))  # pyproj's first transformer is slow: not any run's cost
    files = sorted((production / "Data").rglob("*.osgb"))
    runs: dict[str, list[float]] = {"osgb": [], "osg": [], "read": [], "native": [], "osgconv": []}
    peaks: dict[str, int] = {}
    stages: dict[str, dict] = {}
    res = None
    for _ in range(repeat):
        runs["osgb"].append(osgconv_floor(production, work / "floor-osgb", ".osgb"))
        runs["osg"].append(osgconv_floor(production, work / "floor-osg", ".osg", "precision 9"))
        t0 = time.perf_counter()
        for f in files:
            read_osgb_native(f)
        runs["read"].append(time.perf_counter() - t0)
        for reader in ("native", "osgconv"):
            res, seconds, peak = _build(production, work, reader)
            if not runs[reader] or seconds < min(runs[reader]):
                peaks[reader], stages[reader] = peak, res.stage_seconds
            runs[reader].append(seconds)
    assert res is not None
    mb = res.input_bytes / 1e6
    floor = min(runs["osgb"])
    out: dict = {"input_mb": round(mb, 1), "files": res.files, "triangles": res.triangles, "repeat": repeat,
                 "floor_osgconv_osgb_s": round(floor, 2), "floor_osgconv_osg_s": round(min(runs["osg"]), 2),
                 "native_read_s": round(min(runs["read"]), 3),
                 "native_read_over_floor": round(min(runs["read"]) / floor, 3)}
    for reader in ("native", "osgconv"):
        best, worst = min(runs[reader]), max(runs[reader])
        out[reader] = {"build_s": round(best, 2), "worst_s": round(worst, 2), "mb_per_s": round(mb / best, 1),
                       "triangles_per_s": round(res.triangles / best), "peak_mb": round(peaks[reader] / 2**20),
                       "ratio_to_osgb_floor": round(best / floor, 2),
                       "ratio_to_osg_floor": round(best / min(runs["osg"]), 2), "stages_s": stages[reader]}
    return out


def bench_lod2(n: int, work: Path) -> dict:
    from cim.models.lod1 import build_buildings
    from cim.models.lod2 import build_lod2_buildings
    from cim.sample import generate, load

    city_dir = work / f"city-{n}"
    city = load(city_dir) if (city_dir / "sample.json").exists() else generate(
        city_dir, buildings=n, seed=1, footprint_format="parquet", rasters=False, layers=("buildings",))
    _lod1, lod1_s, _ = _measured(lambda: build_buildings(city.buildings, None, work / f"lod1-{n}"))
    res, seconds, peak = _measured(lambda: build_lod2_buildings(city.buildings, None, work / f"lod2-{n}"))
    return {"buildings": res.buildings, "build_s": round(seconds, 2), "buildings_per_s": round(res.buildings / seconds),
            "peak_mb": round(peak / 2**20), "lod1_s": round(lod1_s, 2), "ratio_to_lod1": round(seconds / lod1_s, 2),
            "triangles": res.triangles, "tiles": res.tiles, "roof_types": res.roof_types,
            "fallbacks": sum(res.fallbacks.values()), "stages_s": res.stage_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--production", type=Path, default=PRODUCTION)
    ap.add_argument("--lod2-buildings", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--only", choices=("osgb", "lod2"), default=None)
    ap.add_argument("--repeat", type=int, default=3, help="OSGB runs (best and worst reported)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cim-bench-oblique-"))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.only in (None, "osgb"):
        if not (args.production / "metadata.xml").is_file():
            print(f"skipping OSGB: {args.production} has no metadata.xml")
        else:
            r = bench_osgb(args.production, work, args.repeat)
            print(json.dumps(r), flush=True)
            print(f"\ninput {r['input_mb']} MB, {r['files']} files, {r['triangles']:,} triangles; best of"
                  f" {r['repeat']}: osgconv floor:"
                  f" ->osgb {r['floor_osgconv_osgb_s']} s, ->osg {r['floor_osgconv_osg_s']} s; native read alone"
                  f" {r['native_read_s']} s ({r['native_read_over_floor']}x the osgb floor)")
            print("\n| reader | build s (best) | worst s | MB/s | triangles/s | peak MB | build / osgb floor |"
                  " build / osg floor |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            for reader in ("native", "osgconv"):
                b = r[reader]
                print(f"| {reader} | {b['build_s']} | {b['worst_s']} | {b['mb_per_s']} | {b['triangles_per_s']:,} |"
                      f" {b['peak_mb']} |"
                      f" {b['ratio_to_osgb_floor']}x | {b['ratio_to_osg_floor']}x |")
    if args.only in (None, "lod2"):
        r = bench_lod2(args.lod2_buildings, work)
        print(json.dumps(r, ensure_ascii=False), flush=True)
        print("\n| buildings | LOD2 s | buildings/s | peak MB | LOD1 s | LOD2 / LOD1 | triangles | fallbacks |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {r['buildings']:,} | {r['build_s']} | {r['buildings_per_s']:,} | {r['peak_mb']} | {r['lod1_s']} |"
              f" {r['ratio_to_lod1']}x | {r['triangles']:,} | {r['fallbacks']:,} |")


if __name__ == "__main__":
    main()
