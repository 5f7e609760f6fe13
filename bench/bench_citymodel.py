"""CityJSON to 3D Tiles throughput against cjio reading the same file.

For each size, a LoD2 city is generated (`tests.support.cityjson.lod2_city`: gabled houses on a grid, LoD 1 and 2.2
Solids with semantic surfaces and attributes, EPSG:4547) and written as one `.city.json`. Then, each in a fresh
process so that neither warms the other's caches:
  - the peer: cjio (PyPI, the CityJSON reference tooling) loads the file (`cjio.cityjson.reader`);
  - ours: `cim.models.citymodel.build_citymodel` converts it end to end (read, triangulate, place in ECEF, tile,
    encode glb with meshopt, write), every object with its ID, attributes and per-triangle semantic surfaces.
It prints objects/s of the conversion and conversion time / cjio load time (target: at most 3).

    python bench/bench_citymodel.py                  # 100k objects
    python bench/bench_citymodel.py --sizes 5000     # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CJIO = """
import sys, time
from cjio import cityjson
t = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as f:
    cm = cityjson.reader(f)
n = len(cm.j["CityObjects"])
print(time.perf_counter() - t, n)
"""

OURS = """
import sys, time
from cim.models.citymodel import build_citymodel
t = time.perf_counter()
r = build_citymodel(sys.argv[1], sys.argv[2])
print(time.perf_counter() - t, r.objects, r.tiles, r.triangles)
"""


def _run(code: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout.split()
    return [float(v) for v in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support.cityjson import lod2_city

    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-citymodel-") as tmp:
            path = Path(tmp) / f"city_{n}.city.json"
            path.write_text(json.dumps(lod2_city(n)), encoding="utf-8")
            mb = path.stat().st_size / 1e6
            cjio_s, cjio_n = _run(CJIO, str(path))
            ours_s, objects, tiles, triangles = _run(OURS, str(path), str(Path(tmp) / "out"))
        assert int(cjio_n) == int(objects) == n
        row = {"objects": n, "file_mb": round(mb, 1), "cjio_load_s": round(cjio_s, 2),
               "convert_s": round(ours_s, 2), "objects_per_s": round(n / ours_s), "tiles": int(tiles),
               "triangles": int(triangles), "ratio": round(ours_s / cjio_s, 2)}
        rows.append(row)
        print(f"{n:>8} objects  {mb:7.1f} MB  cjio load {cjio_s:6.2f} s  convert {ours_s:6.2f} s "
              f"({n / ours_s:8.0f} objects/s, {int(tiles)} tiles, {int(triangles)} triangles)  "
              f"convert / cjio load = {ours_s / cjio_s:.2f} (target <= 3)")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
