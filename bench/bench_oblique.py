"""Oblique photography and LOD2 throughput, each against a floor measured in the same run.

OSGB -> 3D Tiles (the real ContextCapture production in ../shared/data/oblique_osgb/zhongshan, or --production):
  - floor: `osgconv` alone on every file of the production, two files at a time (2 cores), written as `.osgb`
    (read + the cheapest write osgconv has) and as the `.osg` text our reader parses;
  - build: `cim.oblique.convert_production` end to end with 2 workers (osgconv, parse, georeference, glb, tileset,
    merged levels);
  printing input MB/s, triangles/s, peak memory (PSS of the process tree) and build / floor.
LOD2: `cim.lod2.build_lod2_buildings` on a generated city (footprints with roof types, no rasters), buildings/s,
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

from bench_lod1 import _measured  # noqa: E402 - the same peak-memory sampler as the LOD1 benchmark

PRODUCTION = ROOT.parent / "shared" / "data" / "oblique_osgb" / "zhongshan"


def osgconv_floor(production: Path, work: Path, suffix: str, options: str = "") -> float:
    """Seconds for osgconv alone to convert every file of the production, two at a time."""
    from cim.osgb import osgconv_path

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


def bench_osgb(production: Path, work: Path) -> dict:
    from cim.oblique import ObliqueOptions, convert_production

    floor_osgb = osgconv_floor(production, work / "floor-osgb", ".osgb")
    floor_osg = osgconv_floor(production, work / "floor-osg", ".osg", "precision 9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, seconds, peak = _measured(lambda: convert_production(production, work / "tiles", overwrite=True,
                                                                  options=ObliqueOptions(workers=2)))
    mb = res.input_bytes / 1e6
    return {"input_mb": round(mb, 1), "files": res.files, "triangles": res.triangles, "build_s": round(seconds, 2),
            "mb_per_s": round(mb / seconds, 1), "triangles_per_s": round(res.triangles / seconds),
            "peak_mb": round(peak / 2**20), "floor_osgconv_osgb_s": round(floor_osgb, 2),
            "floor_osgconv_osg_s": round(floor_osg, 2), "ratio_to_osgb_floor": round(seconds / floor_osgb, 2),
            "ratio_to_osg_floor": round(seconds / floor_osg, 2), "stages_s": res.stage_seconds}


def bench_lod2(n: int, work: Path) -> dict:
    from cim.buildings import build_buildings
    from cim.lod2 import build_lod2_buildings
    from cim.sample import generate, load

    city_dir = work / f"city-{n}"
    city = load(city_dir) if (city_dir / "sample.json").exists() else generate(
        city_dir, buildings=n, seed=1, footprint_format="parquet", rasters=False, layers=("buildings",))
    lod1, lod1_s, _ = _measured(lambda: build_buildings(city.buildings, None, work / f"lod1-{n}"))
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
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cim-bench-oblique-"))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.only in (None, "osgb"):
        if not (args.production / "metadata.xml").is_file():
            print(f"skipping OSGB: {args.production} has no metadata.xml")
        else:
            r = bench_osgb(args.production, work)
            print(json.dumps(r), flush=True)
            print("\n| input MB | files | triangles | build s | MB/s | triangles/s | peak MB | osgconv->osgb s |"
                  " build / floor | osgconv->osg s | build / osg floor |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            print(f"| {r['input_mb']} | {r['files']} | {r['triangles']:,} | {r['build_s']} | {r['mb_per_s']} |"
                  f" {r['triangles_per_s']:,} | {r['peak_mb']} | {r['floor_osgconv_osgb_s']} |"
                  f" {r['ratio_to_osgb_floor']}x | {r['floor_osgconv_osg_s']} | {r['ratio_to_osg_floor']}x |")
    if args.only in (None, "lod2"):
        r = bench_lod2(args.lod2_buildings, work)
        print(json.dumps(r, ensure_ascii=False), flush=True)
        print("\n| buildings | LOD2 s | buildings/s | peak MB | LOD1 s | LOD2 / LOD1 | triangles | fallbacks |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {r['buildings']:,} | {r['build_s']} | {r['buildings_per_s']:,} | {r['peak_mb']} | {r['lod1_s']} |"
              f" {r['ratio_to_lod1']}x | {r['triangles']:,} | {r['fallbacks']:,} |")


if __name__ == "__main__":
    main()
