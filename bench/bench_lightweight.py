"""Lightweight tiles: bytes and times of each compression, against gltf-transform on the same tiles in the same run.

Per tileset (the sample city's level 2 and level 3 LOD2 models, the real Zhongshan oblique production):
  - our build with `--compression none --textures original` (float32 + JPEG: the tiles before the lightweight
    work), `meshopt` (the default, WebP textures), `meshopt --textures original` (geometry alone) and `draco`: total
    glb bytes, gzip bytes (what `cim serve` sends), build seconds;
  - the peer: gltf-transform 4.5.1 (npm `@gltf-transform/cli`, dev dependency) `meshopt` and `draco` on every glb of
    the uncompressed build, its bytes and seconds;
  - decode: meshoptimizer's and Draco's reference JS decoders (node, the code browsers run) on every glb of our
    meshopt / draco build, ms per MB of glb;
  - CesiumJS (headless chromium, software WebGL): seconds until every tile of the tileset is loaded and drawn,
    uncompressed against meshopt (the first frame with the whole view);
  - quantized-mesh terrain of the sample DEM: tiles, bytes, seconds, and the finest level's TIN error against the
    terrain's max error.
Ratios are against our uncompressed build and against gltf-transform, all measured in this run.

    python bench/bench_lightweight.py                  # all three tilesets (a few minutes on 2 quiet cores)
    python bench/bench_lightweight.py --only l2 --no-browser
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRODUCTION = ROOT.parent / "shared" / "data" / "oblique_osgb" / "zhongshan"
GLTF_TRANSFORM = ROOT / "node_modules" / ".bin" / "gltf-transform"


def _bytes(folder: Path) -> tuple[int, int, int]:
    """(glb files, total bytes, total gzip bytes at level 6 for files that gzip saves a tenth of, as the server)."""
    n = size = gz = 0
    for f in folder.rglob("*.glb"):
        data = f.read_bytes()
        z = len(gzip.compress(data, 6, mtime=0))
        n, size, gz = n + 1, size + len(data), gz + (z if z <= 0.9 * len(data) else len(data))
    return n, size, gz


def _build(which: str, out: Path, compression: str, textures: str = "auto") -> float:
    from cim.build import build_city
    from cim.sample import default_sample
    from tiles.compression import GlbOptions

    glb = GlbOptions(compression=compression, textures=textures)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    if which == "oblique":
        from cim.models.oblique import ObliqueOptions, convert_production

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert_production(PRODUCTION, out, options=ObliqueOptions(workers=2, glb=glb))
    else:
        city = default_sample()
        build_city(out, level=2 if which == "l2" else 3, dem=city.dem, ortho=city.ortho, buildings=city.buildings,
                   dsm=city.dsm, glb=glb)
    return time.perf_counter() - t0


def _peer(src: Path, dst: Path, command: str) -> float:
    """gltf-transform `command` (meshopt or draco) on every glb of `src` into `dst`; seconds."""
    files = sorted(src.rglob("*.glb"))
    t0 = time.perf_counter()
    for f in files:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(GLTF_TRANSFORM), command, str(f), str(target)], check=True, capture_output=True)
    return time.perf_counter() - t0


DECODE_JS = r"""
import fs from "node:fs";
import { createRequire } from "node:module";
import { MeshoptDecoder } from "meshoptimizer";
const require = createRequire(import.meta.url);
const draco3d = require("draco3d");
await MeshoptDecoder.ready;
const draco = await draco3d.createDecoderModule({});
let bytes = 0, ms = 0;
for (const file of process.argv.slice(2)) {
  const data = fs.readFileSync(file);
  const jl = data.readUInt32LE(12);
  const json = JSON.parse(data.subarray(20, 20 + jl).toString());
  const bin = data.subarray(20 + jl + 8);
  bytes += data.length;
  const t0 = performance.now();
  for (const v of json.bufferViews) {
    const e = v.extensions && v.extensions.EXT_meshopt_compression;
    if (!e) continue;
    const out = new Uint8Array(e.count * e.byteStride);
    MeshoptDecoder.decodeGltfBuffer(out, e.count, e.byteStride, bin.subarray(e.byteOffset, e.byteOffset + e.byteLength), e.mode, e.filter || "NONE");
  }
  for (const m of json.meshes) for (const p of m.primitives) {
    const e = p.extensions && p.extensions.KHR_draco_mesh_compression;
    if (!e) continue;
    const v = json.bufferViews[e.bufferView];
    const raw = bin.subarray(v.byteOffset || 0, (v.byteOffset || 0) + v.byteLength);
    const dec = new draco.Decoder(), buf = new draco.DecoderBuffer(), mesh = new draco.Mesh();
    buf.Init(new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength), raw.byteLength);
    dec.DecodeBufferToMesh(buf, mesh);
    draco.destroy(mesh); draco.destroy(buf); draco.destroy(dec);
  }
  ms += performance.now() - t0;
}
console.log(JSON.stringify({ bytes, ms }));
"""


def _decode_ms_per_mb(folder: Path) -> float:
    script = ROOT / "bench" / ".decode_bench.mjs"
    script.write_text(DECODE_JS)
    try:
        files = [str(f) for f in sorted(folder.rglob("*.glb"))]
        out = subprocess.run(["node", str(script), *files], capture_output=True, text=True, check=True, cwd=ROOT)
    finally:
        script.unlink(missing_ok=True)
    r = json.loads(out.stdout)
    return r["ms"] / (r["bytes"] / 1e6)


def _first_frame(folder: Path) -> float:
    from tests.support.browser import CesiumClient

    with CesiumClient({"/tiles": folder}, timeout_s=600) as client:
        t0 = time.perf_counter()
        info = client.load_tileset("/tiles/tileset.json")
        seconds = time.perf_counter() - t0
        if not info.all_loaded or info.failures:
            raise RuntimeError(f"CesiumJS did not load {folder}: {info.failures}")
    return seconds


def bench(which: str, work: Path, browser: bool) -> dict:
    row: dict = {"tileset": which}
    outs = {}
    for c in ("none", "meshopt", "meshopt_original", "draco"):
        out = work / f"{which}-{c}"
        compression = c.removesuffix("_original")
        textures = "original" if c == "none" or c.endswith("_original") else "auto"
        row[f"{c}_build_s"] = round(_build(which, out, compression, textures), 2)
        n, size, gz = _bytes(out)
        row.update({f"{c}_files": n, f"{c}_bytes": size, f"{c}_gzip": gz})
        outs[c] = out
    for cmd in ("meshopt", "draco"):
        dst = work / f"{which}-gt-{cmd}"
        row[f"gt_{cmd}_s"] = round(_peer(outs["none"], dst, cmd), 2)
        _, size, gz = _bytes(dst)
        row.update({f"gt_{cmd}_bytes": size, f"gt_{cmd}_gzip": gz})
    row["meshopt_decode_ms_per_mb"] = round(_decode_ms_per_mb(outs["meshopt"]), 2)
    row["draco_decode_ms_per_mb"] = round(_decode_ms_per_mb(outs["draco"]), 2)
    if browser:
        row["cesium_none_s"] = round(_first_frame(outs["none"]), 2)
        row["cesium_meshopt_s"] = round(_first_frame(outs["meshopt"]), 2)
    row["ratio_none_over_meshopt"] = round(row["none_bytes"] / row["meshopt_bytes"], 2)
    row["ratio_none_over_draco"] = round(row["none_bytes"] / row["draco_bytes"], 2)
    row["ratio_meshopt_original_over_gt_meshopt"] = round(row["meshopt_original_bytes"] / row["gt_meshopt_bytes"], 3)
    row["ratio_meshopt_over_gt_meshopt"] = round(row["meshopt_bytes"] / row["gt_meshopt_bytes"], 3)
    row["ratio_draco_over_gt_draco"] = round(row["draco_bytes"] / row["gt_draco_bytes"], 3)
    return row


def bench_quantized_mesh(work: Path) -> dict:
    from cim.models.qmterrain import QuantizedMeshTerrain
    from cim.sample import default_sample

    terrain = QuantizedMeshTerrain(default_sample().dem)
    r = terrain.write(work / "qm")
    return {"tileset": "quantized-mesh", "tiles": r["tiles"], "bytes": r["bytes"], "seconds": r["seconds"],
            "max_zoom": r["maxZoom"], "leaf_error_m": round(r["leafError"], 4), "max_error_m": r["maxError"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["l2", "lod2", "oblique", "qm"], action="append")
    ap.add_argument("--no-browser", action="store_true", help="skip the CesiumJS load times")
    ap.add_argument("--keep", type=Path, help="keep the outputs in this folder")
    args = ap.parse_args()
    if not GLTF_TRANSFORM.exists():
        sys.exit("npm @gltf-transform/cli is missing: run `npm install` in the repository root")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-lightweight-"))
    try:
        for which in args.only or ["l2", "lod2", "oblique", "qm"]:
            if which == "oblique" and not PRODUCTION.is_dir():
                print(json.dumps({"tileset": "oblique", "skipped": f"{PRODUCTION} is missing"}))
                continue
            row = bench_quantized_mesh(work) if which == "qm" else bench(which, work, not args.no_browser)
            print(json.dumps(row), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
