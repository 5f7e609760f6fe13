"""Terrain build time on the sample city, against a floor measured in the same run.

  - the floor: read the DEM, run pydelatin alone on each leaf tile's 257 x 257 samples at the same tolerance,
    and read the orthophoto once at full resolution (TIN and pixel work no terrain builder can skip);
  - the build: `cim.models.terrain.build_terrain` end to end (pyramid, TINs for every level, stitching, nodata, error
    measurement, textures, glb encoding, writing), with and without the orthophoto.
It prints tiles, triangles, seconds and build time / floor time.

    python bench/bench_terrain.py                # the default sample city (1000 x 1000 DEM at 2 m)
    python bench/bench_terrain.py --dem D.tif --ortho O.tif
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from pydelatin import Delatin

from cim.models.terrain import TerrainOptions, build_terrain


def floor(dem: Path, ortho: Path | None, options: TerrainOptions) -> float:
    """Seconds for pydelatin on every leaf tile plus one full read of the orthophoto."""
    t0 = time.perf_counter()
    with rasterio.open(dem) as src:
        z = src.read(1, masked=True).filled(np.nan).astype(np.float32)
    n = options.tile_px
    for r in range(0, max(z.shape[0] - 1, 1), n):
        for c in range(0, max(z.shape[1] - 1, 1), n):
            block = z[r : r + n + 1, c : c + n + 1]
            if np.isfinite(block).sum() >= 3:
                Delatin(np.nan_to_num(block, nan=float(np.nanmin(block))), max_error=options.max_error)
    if ortho is not None:
        with rasterio.open(ortho) as src:
            src.read()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dem", type=Path)
    parser.add_argument("--ortho", type=Path)
    args = parser.parse_args()
    dem, ortho = args.dem, args.ortho
    if dem is None:
        from cim.sample import default_sample

        city = default_sample()
        dem, ortho = city.dem, city.ortho
    options = TerrainOptions()
    with rasterio.open(dem) as src:
        size = f"{src.width} x {src.height} at {src.res[0]:g}"
    base = floor(dem, ortho, options)
    rows = []
    for label, o in (("textured", ortho), ("untextured", None)):
        if label == "textured" and ortho is None:
            continue
        with tempfile.TemporaryDirectory(prefix="bench-terrain-") as tmp:
            t0 = time.perf_counter()
            result = build_terrain(dem, o, tmp, options)
            seconds = time.perf_counter() - t0
        rows.append({"build": label, "dem": size, "tiles": result.tiles, "triangles": result.triangles,
                     "levels": result.levels, "seconds": round(seconds, 3), "floor_seconds": round(base, 3),
                     "ratio_to_floor": round(seconds / base, 2)})
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
