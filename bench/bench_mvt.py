"""Per-tile cost of MVT polygon tiles: the shapely/numpy path of `tiles.mvt` against DuckDB's `ST_AsMVT`, in-process.

    .venv/bin/python bench/bench_mvt.py [--features 200000] [--tiles 30] [--work /tmp/cim-bench-mvt]

A generated layer of building-like polygons (rotated rectangles of 6-40 m, a tenth with a courtyard, a twentieth as
two-part MultiPolygons, clustered like a city of about 15 km across) is imported into a store once (kept in
`--work`). For z13-z16, `--tiles` tiles centred on random buildings are cut twice by `VectorTileLayer.tile`: through
the numpy path (`ShapeIndex`) and through the DuckDB path (`MercatorWorkspace`: ST_AsMVTGeom + ST_AsMVT, the path
mixed-geometry layers still take, reached here by presenting the layer as `Geometry`). Each tile is cut once per
path before timing (both caches warm), then every tile is timed once per path, alternating; the table gives the
median and mean milliseconds per tile, features per tile, and the old/new ratio of the means. Prints the load
average before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import shapely

from layers import LayerStore, open_read_only
from tiles.mvt import MvtOptions, VectorTileLayer

LON0, LAT0 = 113.30, 40.09


def buildings(n: int, seed: int = 4) -> gpd.GeoDataFrame:
    """n building-like footprints (EPSG:4490) with a name, a height and a floor count."""
    rng = np.random.default_rng(seed)
    cx = LON0 + rng.normal(0, 0.04, n)
    cy = LAT0 + rng.normal(0, 0.03, n)
    deg = 1 / 111_000
    w, h = rng.uniform(6, 40, n) * deg, rng.uniform(6, 25, n) * deg
    a = rng.uniform(0, np.pi, n)
    unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])

    def rings(scale: float) -> np.ndarray:
        dx, dy = unit[None, :, 0] * w[:, None] * scale, unit[None, :, 1] * h[:, None] * scale
        c, s = np.cos(a)[:, None], np.sin(a)[:, None]
        return np.stack([cx[:, None] + dx * c - dy * s, cy[:, None] + (dx * s + dy * c) / 1.3], axis=-1)

    geoms = shapely.polygons(rings(1.0))
    court = np.arange(n) % 10 == 0
    geoms[court] = shapely.polygons(shapely.linearrings(rings(1.0)[court]),
                                    holes=shapely.linearrings(rings(0.4)[court][:, ::-1])[:, None])
    multi = np.flatnonzero(np.arange(n) % 20 == 7)
    twin = shapely.transform(geoms[multi], lambda c: c + [45 * deg, 0])
    geoms[multi] = shapely.multipolygons(np.stack([geoms[multi], twin], axis=1))
    return gpd.GeoDataFrame({"name": [f"b{i}" for i in range(n)], "height": rng.uniform(3, 90, n).round(1),
                             "floors": rng.integers(1, 30, n)}, geometry=geoms, crs="EPSG:4490")


def _tile(x: float, y: float, z: int) -> morecantile.Tile:
    """The WebMercatorQuad tile holding a Web Mercator point."""
    half = 20037508.342789244
    n = 1 << z
    return morecantile.Tile(int((x + half) / (2 * half) * n), int((half - y) / (2 * half) * n), z)


def store(work: Path, n: int) -> Path:
    path = work / f"buildings_{n}.duckdb"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        buildings(n).to_parquet(work / "buildings.parquet")
        with LayerStore(path) as s:
            s.import_file(work / "buildings.parquet", "buildings", theme="public_topics", security="public")
        print(f"store of {n} polygons built in {time.perf_counter() - t0:.1f} s")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", type=int, default=200_000)
    p.add_argument("--tiles", type=int, default=30)
    p.add_argument("--work", type=Path, default=Path("/tmp/cim-bench-mvt"))
    args = p.parse_args()
    path = store(args.work, args.features)
    print(f"load average before: {os.getloadavg()}")
    rng = np.random.default_rng(9)
    with open_read_only(path) as s:
        new = VectorTileLayer.from_store(s, "buildings", MvtOptions())
        old = VectorTileLayer(s, new.info.model_copy(update={"geometry_type": "Geometry"}), new.table, MvtOptions())
        for label, layer in (("numpy path: index", new), ("DuckDB path: projection", old)):
            t0 = time.perf_counter()
            layer.prepare()
            print(f"{label} built in {time.perf_counter() - t0:.2f} s")
        bounds = new.workspace.shapes(new).bounds
        centres = shapely.points((bounds[:, :2] + bounds[:, 2:]) / 2)
        print("| zoom | tiles | features/tile (mean) | new ms/tile p50 | new mean | old (ST_AsMVT) p50 | old mean "
              "| old/new |")
        print("|---|---|---|---|---|---|---|---|")
        for z in (13, 14, 15, 16):
            picks = rng.choice(len(centres), args.tiles, replace=False)
            xy = shapely.get_coordinates(centres[picks])
            tiles = [_tile(x, y, z) for x, y in xy]
            for t in tiles:  # warm both paths, and check they agree on the feature count to within collapses
                a, b = new.tile(t.z, t.x, t.y), old.tile(t.z, t.x, t.y)
                assert abs(a.features - b.features) <= max(5, b.features // 50), (t, a.features, b.features)
            tn, to, feats = [], [], []
            for t in tiles:
                t0 = time.perf_counter()
                r = new.tile(t.z, t.x, t.y)
                tn.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                old.tile(t.z, t.x, t.y)
                to.append(time.perf_counter() - t0)
                feats.append(r.features)
            mn, mo = statistics.mean(tn) * 1e3, statistics.mean(to) * 1e3
            print(f"| {z} | {len(tiles)} | {statistics.mean(feats):.0f} | {statistics.median(tn) * 1e3:.1f} | "
                  f"{mn:.1f} | {statistics.median(to) * 1e3:.1f} | {mo:.1f} | {mo / mn:.1f}x |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
