"""Bytes of the real oblique production singulated (单体化) by footprints, beside the plain conversion.

The Zhongshan production (`../shared/data/oblique_osgb/zhongshan`) comes without building footprints, so this bench
derives them from the production itself: the finest level's vertices and triangle centroids gridded to a 0.5 m
surface model, the ground taken as the smoothed lowest surface within 40 m, and every region standing at least 5 m
above it (opened by 1.5 m, holes filled, at least 12 m²) outlined as one footprint (rasterio's polygonizer,
simplified by half a cell). These are block outlines of what stands up from the mesh (buildings, some tall trees),
not a cadastre: they exercise singulation on real geometry and textures, which is what the bytes depend on.

Each variant is converted with and without the footprints and its glb bytes, gzip bytes (what `cim serve` sends a
client that accepts gzip), image count and image bytes are printed, one JSON line each. `--before DIR` adds the same
conversion by an older checkout exported into DIR (`git archive REV | tar -x -C DIR`), run in its own process with
its own defaults (for the code before issue 17: uncompressed float32 glb, every texture as the production holds it).

    python bench/bench_oblique_singulated.py --work /tmp/sing
    python bench/bench_oblique_singulated.py --work /tmp/sing --before /tmp/pre17   # and the older code's output

Byte counts do not depend on the machine's load; no times are printed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ROOT.parent / "shared" / "data" / "oblique_osgb" / "zhongshan"
VARIANTS = (("none", "original"), ("meshopt", "auto"), ("draco", "auto"), ("meshopt", "webp"))


def production_footprints(production: Path, out: Path, *, cell: float = 0.5, min_height: float = 5.0,
                          window: float = 40.0, min_area: float = 12.0) -> int:
    """Footprints of what stands `min_height` metres above the ground in the production's finest level, written to
    `out` (GeoPackage, the production's CRS); returns how many."""
    import geopandas as gpd
    import rasterio.features
    import shapely
    from rasterio.transform import from_origin
    from scipy import ndimage

    sys.path.insert(0, str(ROOT))
    from cim.sources.contextcapture import find_tiles, level_of, read_metadata
    from cim.sources.osgb import read_osgb_native

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the production's WKT carries a wrong EPSG label (see its MANIFEST entry)
        geo = read_metadata(production / "metadata.xml")
    samples = []
    for tile in find_tiles(production):
        levels = {f: level_of(f.stem) or 0 for f in tile.files}
        finest = max(levels.values())
        for f in (f for f, lv in levels.items() if lv == finest):
            for node in read_osgb_native(f).nodes:
                for g in node.geometries:
                    samples += [g.positions, g.positions[g.indices].mean(axis=1)]
    p = np.vstack(samples)  # (n, 3) local to the production's SRS origin
    x0, y1 = p[:, 0].min(), p[:, 1].max()
    w = int(np.ceil((p[:, 0].max() - x0) / cell)) + 1
    h = int(np.ceil((y1 - p[:, 1].min()) / cell)) + 1
    dsm = np.full((h, w), -np.inf)
    np.maximum.at(dsm, (((y1 - p[:, 1]) / cell).astype(int), ((p[:, 0] - x0) / cell).astype(int)), p[:, 2])
    nearest = ndimage.distance_transform_edt(~np.isfinite(dsm), return_distances=False, return_indices=True)
    dsm = dsm[tuple(nearest)]  # empty cells take the height of the nearest sampled cell
    size = int(window / cell)
    ground = ndimage.uniform_filter(ndimage.minimum_filter(dsm, size=size), size=size)
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(dsm - ground > min_height, iterations=3))
    transform = from_origin(x0 + geo.origin[0], y1 + geo.origin[1], cell, cell)
    geoms = [shapely.geometry.shape(s).simplify(cell / 2) for s, v in
             rasterio.features.shapes(mask.astype(np.uint8), mask=mask, transform=transform) if v == 1]
    geoms = [g for g in geoms if g.area >= min_area]
    gdf = gpd.GeoDataFrame({"id": [f"ZS{i:04d}" for i in range(len(geoms))],
                            "area_m2": [round(g.area, 1) for g in geoms]}, geometry=geoms, crs=geo.crs)
    out.unlink(missing_ok=True)
    gdf.to_file(out, driver="GPKG")
    return len(gdf)


def measure(folder: Path) -> dict:
    """glb files, bytes, gzip bytes (a file's gzip form when it saves a tenth, as the server), images and their
    bytes, and the bytes of images a tile holds more than once."""
    n = size = gz = images = image_bytes = repeated = 0
    for f in sorted(folder.rglob("*.glb")):
        data = f.read_bytes()
        z = len(gzip.compress(data, 6, mtime=0))
        n, size, gz = n + 1, size + len(data), gz + (z if z <= 0.9 * len(data) else len(data))
        length = struct.unpack_from("<I", data, 12)[0]
        doc = json.loads(data[20:20 + length])
        blob = data[20 + length + 8:]
        seen = set()
        for image in doc.get("images", []):
            view = doc["bufferViews"][image["bufferView"]]
            start = view.get("byteOffset", 0)
            key = hashlib.blake2b(blob[start:start + view["byteLength"]], digest_size=16).digest()
            images, image_bytes = images + 1, image_bytes + view["byteLength"]
            repeated += view["byteLength"] if key in seen else 0
            seen.add(key)
    return {"files": n, "bytes": size, "gzip": gz, "images": images, "image_bytes": image_bytes,
            "repeated_image_bytes": repeated}


def convert(out: Path, footprints: str | None, compression: str | None, textures: str | None) -> dict:
    """One conversion with the `cim` package first on sys.path (this checkout or `--before`'s); compression None:
    that code's defaults (code before GlbOptions existed takes none)."""
    from cim.models.oblique import ObliqueOptions, convert_production

    kw = {}
    if compression is not None:
        from tiles.compression import GlbOptions

        kw["glb"] = GlbOptions(compression=compression, textures=textures)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = convert_production(PRODUCTION, out, buildings=footprints, options=ObliqueOptions(workers=2, **kw),
                                 overwrite=True)
    import cim

    return {"code": str(Path(cim.__file__).parents[1]), "singulated_triangles": res.singulated_triangles,
            "buildings": res.buildings}


def _run(code: Path, out: Path, footprints: Path | None, variant: tuple[str, str] | None) -> dict:
    """`convert` in a child process whose `cim` and `tiles` come from `code`."""
    args = [sys.executable, __file__, "--convert", str(out), "--code", str(code)]
    if footprints is not None:
        args += ["--footprints", str(footprints)]
    if variant is not None:
        args += ["--variant", *variant]
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=code)
    if done.returncode != 0:
        raise RuntimeError(f"conversion by {code} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), **measure(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="folder for the footprints and the outputs (required)")
    ap.add_argument("--before", type=Path, help="an older checkout (exported) converted with its own defaults too")
    ap.add_argument("--convert", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--footprints", help=argparse.SUPPRESS)
    ap.add_argument("--variant", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.convert is not None:  # the child process of `_run`
        variant = args.variant or (None, None)
        print(json.dumps(convert(args.convert, args.footprints, *variant)))
        return
    if args.work is None:
        ap.error("--work is required")
    if not PRODUCTION.is_dir():
        sys.exit(f"{PRODUCTION} is missing")
    args.work.mkdir(parents=True, exist_ok=True)
    footprints = args.work / "zhongshan_footprints.gpkg"
    n = production_footprints(PRODUCTION, footprints)
    print(json.dumps({"footprints": str(footprints), "count": n}), flush=True)
    runs: list[tuple[str, Path, tuple[str, str] | None]] = []
    if args.before is not None:
        runs.append(("before", args.before.resolve(), None))
    runs += [(f"{c}_{t}", ROOT, (c, t)) for c, t in VARIANTS]
    for name, code, variant in runs:
        for singulated in (False, True):
            out = args.work / f"{name}-{'singulated' if singulated else 'plain'}"
            row = _run(code, out, footprints if singulated else None, variant)
            print(json.dumps({"variant": name, "singulated": singulated, **row}), flush=True)


if __name__ == "__main__":
    main()
