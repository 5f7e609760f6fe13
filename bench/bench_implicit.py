"""Implicit against explicit tilesets: the size of tileset.json a client must parse first, for a large LOD1 city.

For each city size (footprint-only sample cities, GeoParquet footprints + the generator's DEM, as bench_dask) this
builds the LOD1 buildings twice on the same Dask runner, as an explicit tile tree and as a 3D Tiles 1.1 implicit
quadtree (`BuildingOptions.implicit`), writes each layer's tileset.json as `cim build` does, and prints: tiles,
tileset.json bytes (the floor is the explicit tree's), the subtree files (count, bytes), the build's seconds, and
the structural check of the implicit output (`tiles.check.check_tileset` without reading the glbs).

    python bench/bench_implicit.py                  # 1,000,000 buildings, 2 workers
    python bench/bench_implicit.py --sizes 20000    # a quick run
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def build(footprints: Path, dem: Path, out: Path, runner, implicit: bool) -> dict:
    from cim.models.footprints import BuildingOptions
    from cim.models.lod1 import build_buildings
    from tiles.tileset import Tileset, rebase_uris, relative_transforms

    t0 = time.perf_counter()
    res = build_buildings(footprints, dem, out, options=BuildingOptions(implicit=implicit), runner=runner)
    seconds = time.perf_counter() - t0
    root = relative_transforms(rebase_uris(res.root, "buildings/"))
    path = out / "buildings" / "tileset.json"
    Tileset(geometric_error=max(root.geometric_error, 1.0), root=root, metadata_schema=res.schema).write(path)
    subtrees = sorted((out / "buildings").rglob("*.subtree"))
    return {"tiles": res.tiles, "tileset_bytes": path.stat().st_size, "subtrees": len(subtrees),
            "subtree_bytes": sum(p.stat().st_size for p in subtrees), "seconds": seconds, "path": path}


def main() -> None:
    from cim.sample import generate, load
    from cim.tiling import Runner
    from tiles.check import check_tileset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="folder for generated cities (default: a temp dir)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-implicit-") as tmp:
        work = args.work or Path(tmp)
        for size in args.sizes:
            city_dir = work / f"city-{size}"
            city = load(city_dir) if (city_dir / "sample.json").exists() else generate(
                city_dir, buildings=size, seed=1, footprint_format="parquet", ortho=False, layers=("buildings",))
            rows = {}
            with Runner(workers=args.workers) as runner:
                for name, implicit in (("explicit", False), ("implicit", True)):
                    rows[name] = build(city.buildings, city.dem, Path(tmp) / f"{name}-{size}", runner, implicit)
            check = check_tileset(rows["implicit"]["path"], check_content=False)
            e, i = rows["explicit"], rows["implicit"]
            print(f"{size:,} buildings, {args.workers} workers")
            for name, r in rows.items():
                print(f"  {name:9s} tiles {r['tiles']:6,d}  tileset.json {r['tileset_bytes']:>11,d} B  "
                      f"subtrees {r['subtrees']:4d} ({r['subtree_bytes']:,d} B)  build {r['seconds']:.1f} s")
            print(f"  tileset.json: implicit / explicit = {i['tileset_bytes'] / e['tileset_bytes']:.5f} "
                  f"({e['tileset_bytes'] / i['tileset_bytes']:,.0f}x smaller); implicit check: "
                  f"{'ok' if check.ok else check.problems[:3]} ({check.tiles} tiles followed)")
            print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
