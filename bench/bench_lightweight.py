"""Lightweight tiles: bytes and times of each compression, against gltf-transform on the same tiles in the same run.

Per tileset (the sample city's level 2 and level 3 LOD2 models, the real Zhongshan oblique production):
  - our build with `--compression none --textures original` (float32 + JPEG: the tiles before the lightweight
    work), `meshopt` (the default: WebP textures the engine makes, a production's JPEGs re-coded losslessly),
    `meshopt --textures original` (geometry alone) and `draco`, and
    for the oblique production `meshopt --textures webp` too: total glb bytes (file bytes), gzip bytes (transfer
    bytes: what `cim serve` sends a client that accepts gzip), build seconds;
  - the peer: gltf-transform 4.5.1 (npm `@gltf-transform/cli`, dev dependency) `meshopt` and `draco` on every glb of
    the uncompressed build, its bytes and seconds;
  - decode: meshoptimizer's and Draco's reference JS decoders on every glb of our meshopt / draco build, ms per MB
    of glb, in node and in headless Chromium (the meshoptimizer module and the Draco decoder `cim serve` sends);
  - CesiumJS (headless chromium, software WebGL): seconds until every tile of the tileset is loaded and drawn,
    uncompressed against meshopt and Draco (the first frame with the whole view);
  - quantized-mesh terrain of the sample DEM: tiles, bytes, seconds, and the finest level's TIN error against the
    terrain's max error;
  - with `--before DIR` (a `git archive` of the code before the lightweight work, e.g. 4f8a7f6, the parent of issue
    17's first commit): that code's build of the same sample city, its bytes and the ratio of ours against them
    (sample tilesets only);
  - the bytes of `none`, `meshopt` (and `before`) by part: per terrain / buildings, JSON, each vertex attribute,
    indices, images, each property-table column (values and offsets; a view two columns share is counted once, under
    the first), glb headers and padding;
  - with `--before`, on level 2: every terrain texture of `before` and `meshopt` against the source orthophoto at
    its own resolution (PSNR, SSIM), per tile and summarised (tiles at least as good as before by both measures);
  - with `--main DIR` (a `git archive` of the main branch): the default build's seconds by that code and by ours,
    each in a process of its own, alternating, `--repeats` times, and the ratio of the medians; on level 2 also
    the seconds the terrain textures' WebP choice costs per texture (`_choice_seconds`).
Ratios are against our uncompressed build, the code before (with `--before`) and gltf-transform, all measured in
this run.

    python bench/bench_lightweight.py                  # all three tilesets (a few minutes on 2 quiet cores)
    python bench/bench_lightweight.py --only l2 --no-browser
    python bench/bench_lightweight.py --only oblique --sizes-only   # bytes alone (they do not depend on load)
    git archive 4f8a7f6 | tar x -C /tmp/pre17
    python bench/bench_lightweight.py --only l2 --only lod2 --before /tmp/pre17
    git archive main | tar x -C /tmp/main      # default build seconds: main's against ours, 3 times each
    python bench/bench_lightweight.py --only l2 --before /tmp/pre17 --main /tmp/main
"""

from __future__ import annotations

import argparse
import gzip
import io
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


BEFORE_PY = """
import sys, time
from cim.build import build_city
from cim.sample import default_sample
if __name__ == "__main__":
    city = default_sample()
    t0 = time.perf_counter()
    build_city(sys.argv[2], level=int(sys.argv[1]), dem=city.dem, ortho=city.ortho, buildings=city.buildings,
               dsm=city.dsm)
    print(time.perf_counter() - t0)
"""


def _build_before(tree: Path, which: str, out: Path) -> float:
    """The sample tileset built by the code in `tree` (its own defaults), in a process of its own (which starts
    its own Dask cluster, as `cim build` does); seconds of `build_city`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = subprocess.run([sys.executable, "-c", BEFORE_PY, "2" if which == "l2" else "3", str(out)], cwd=tree,
                         env=env, capture_output=True, text=True, check=True)
    return float(run.stdout.strip().splitlines()[-1])


def _build_times(main: Path, which: str, work: Path, repeats: int) -> dict:
    """The default build of the sample tileset by the code in `main` and by this checkout, each in processes of
    their own (`_build_before`), alternating, `repeats` times each: seconds and the ratio of the medians."""
    import statistics

    times: dict[str, list[float]] = {"main": [], "ours": []}
    for i in range(repeats):
        for name, tree in (("main", main), ("ours", ROOT)):
            out = work / f"{which}-time-{name}-{i}"
            times[name].append(round(_build_before(tree, which, out), 2))
            shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"main_build_s": times["main"], "ours_build_s": times["ours"],
            "ratio_build_ours_over_main": round(med["ours"] / med["main"], 3)}


def _choice_seconds(work: Path) -> dict:
    """What the terrain textures' WebP choice costs: the sample's terrain built in this process, one task after
    another (no cluster), by default and with `texture_quality=80` (no choice; the same reads); seconds, and the
    difference per textured tile (pilots included)."""
    from cim.models.terrain import TerrainOptions, build_terrain
    from cim.sample import default_sample
    from cim.tiling import Runner
    from tiles.compression import GlbOptions

    city = default_sample()
    out: dict[str, float] = {}
    for name, glb in (("choice", GlbOptions()), ("fixed80", GlbOptions(texture_quality=80))):
        t0 = time.perf_counter()
        r = build_terrain(city.dem, city.ortho, work / f"terrain-{name}", TerrainOptions(glb=glb),
                          runner=Runner(scheduler="synchronous"))
        out[f"terrain_{name}_s"] = round(time.perf_counter() - t0, 2)
    out["tiles"] = r.tiles
    out["choice_s_per_texture"] = round((out["terrain_choice_s"] - out["terrain_fixed80_s"]) / r.tiles, 3)
    return out


def _parts(folder: Path) -> dict[str, dict[str, int]]:
    """Bytes of a tileset's glb files by part, for terrain (files under terrain/) and buildings (the rest): "json",
    each vertex attribute, "indices", "draco", "image <format>", "table <column>", "glb headers", "padding"."""
    out: dict[str, dict[str, int]] = {"terrain": {}, "buildings": {}}
    for f in sorted(folder.rglob("*.glb")):
        data = f.read_bytes()
        jl = int.from_bytes(data[12:16], "little")
        doc = json.loads(data[20:20 + jl])
        use: dict[int, str] = {}
        for m in doc.get("meshes", []):
            for p in m["primitives"]:
                for sem, a in list(p["attributes"].items()) + [("indices", p.get("indices"))]:
                    view = doc["accessors"][a].get("bufferView") if a is not None else None
                    if view is not None:
                        use.setdefault(view, sem)
                d = (p.get("extensions") or {}).get("KHR_draco_mesh_compression")
                if d:
                    use.setdefault(d["bufferView"], "draco")
        for im in doc.get("images", []):
            use.setdefault(im["bufferView"], "image " + im["mimeType"].split("/")[1])
        meta = (doc.get("extensions") or {}).get("EXT_structural_metadata") or {}
        for table in meta.get("propertyTables", []):
            for pid, entry in table["properties"].items():
                for key in ("values", "stringOffsets", "arrayOffsets"):
                    if key in entry:
                        use.setdefault(entry[key], f"table {pid}")
        parts = out["terrain" if "terrain" in f.relative_to(folder).parts else "buildings"]
        counted = jl + 20 + (8 if len(data) > 20 + jl else 0)
        parts["json"] = parts.get("json", 0) + jl
        parts["glb headers"] = parts.get("glb headers", 0) + counted - jl
        for i, v in enumerate(doc.get("bufferViews", [])):
            ext = (v.get("extensions") or {}).get("EXT_meshopt_compression")
            if ext or v.get("buffer", 0) == 0:  # meshopt's fallback buffer holds no bytes
                n = ext["byteLength"] if ext else v["byteLength"]
                parts[use.get(i, "other")] = parts.get(use.get(i, "other"), 0) + n
                counted += n
        parts["padding"] = parts.get("padding", 0) + len(data) - counted
    return out


def _terrain_quality(folder: Path, tile_px: int = 256) -> dict[str, list[float]]:
    """Every terrain texture of a sample-city tileset against the SOURCE orthophoto at its own resolution: the
    texture magnified bilinearly (pixel centres aligned, as a GPU does) onto the orthophoto's pixels over the tile,
    PSNR and SSIM (`tiles.textures.image_quality`) where the orthophoto has data. Tiles are named level/x/y as the
    explicit terrain tree names them; their extents follow the build's tiling of the DEM (`tile_px` samples)."""
    import math

    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.windows import Window

    from cim.sample import default_sample
    from tiles.gltf import parse_glb
    from tiles.textures import image_quality, magnify

    city = default_sample()
    with rasterio.open(city.dem) as dem:
        dt, (rows, cols) = dem.transform, dem.shape
    depth = (max(math.ceil((cols - 1) / tile_px), math.ceil((rows - 1) / tile_px), 1) - 1).bit_length()
    out: dict[str, list[float]] = {}
    with rasterio.open(city.ortho) as src:
        gsd = src.res[0]
        for f in sorted(folder.glob("terrain/*/*/*.glb")):
            level, tx, ty = int(f.parts[-3]), int(f.parts[-2]), int(f.stem)
            span = tile_px * 2 ** (depth - level)
            left, top = dt * (tx * span + 0.5, ty * span + 0.5)
            full = round(span * dt.a / gsd)
            c0, r0 = round((left - src.bounds.left) / gsd), round((src.bounds.top - top) / gsd)
            h, w = min(full, src.height - r0), min(full, src.width - c0)  # the part the orthophoto covers
            ref = np.moveaxis(src.read([1, 2, 3], window=Window(c0, r0, w, h)), 0, -1)
            doc, blob = parse_glb(f.read_bytes())
            view = doc["bufferViews"][doc["images"][0]["bufferView"]]
            start = view.get("byteOffset", 0)
            with Image.open(io.BytesIO(blob[start:start + view["byteLength"]])) as im:
                texture = np.asarray(im.convert("RGB"))
            up = magnify(texture, (full, full))[:h, :w]
            psnr, ssim = image_quality(ref, up)
            out[f"{level}/{tx}/{ty}"] = [view["byteLength"], texture.shape[0], round(psnr, 3), round(ssim, 4)]
    return out


def _quality_summary(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, float]:
    """Per tile, after against before: how many are at least as good by both measures, the smallest gains."""
    import statistics

    keys = sorted(before)
    dp = [after[k][2] - before[k][2] for k in keys]
    ds = [after[k][3] - before[k][3] for k in keys]
    return {"tiles": len(keys), "no_worse_both": sum(p >= 0 and s >= 0 for p, s in zip(dp, ds)),
            "psnr_before_median": statistics.median(before[k][2] for k in keys),
            "psnr_after_median": statistics.median(after[k][2] for k in keys),
            "ssim_before_median": statistics.median(before[k][3] for k in keys),
            "ssim_after_median": statistics.median(after[k][3] for k in keys),
            "psnr_gain_min": round(min(dp), 3), "psnr_gain_max": round(max(dp), 3),
            "ssim_gain_min": round(min(ds), 4), "ssim_gain_max": round(max(ds), 4),
            "texture_bytes_before": sum(before[k][0] for k in keys),
            "texture_bytes_after": sum(after[k][0] for k in keys)}


def _peer(src: Path, dst: Path, command: str) -> float:
    """gltf-transform `command` (meshopt or draco) on every glb of `src` into `dst`; seconds."""
    files = sorted(src.rglob("*.glb"))
    t0 = time.perf_counter()
    for f in files:
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(GLTF_TRANSFORM), command, str(f), str(target)], check=True, capture_output=True)
    return time.perf_counter() - t0


# one glb's decoding, shared by the node and the browser runs: every EXT_meshopt_compression view with meshoptimizer's
# decoder, every KHR_draco_mesh_compression primitive with Draco's (`json`: the glTF JSON, `bin`: its binary chunk)
DECODE_ONE_JS = r"""
function decodeOne(json, bin, MeshoptDecoder, draco) {
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
    const status = dec.DecodeBufferToMesh(buf, mesh);
    if (!status.ok()) throw new Error("Draco: " + status.error_msg());
    draco.destroy(mesh); draco.destroy(buf); draco.destroy(dec);
  }
}
"""

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
  decodeOne(json, bin, MeshoptDecoder, draco);
  ms += performance.now() - t0;
}
console.log(JSON.stringify({ bytes, ms }));
""" + DECODE_ONE_JS


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


BROWSER_DECODE_HTML = r"""<!doctype html><meta charset="utf-8"><script src="/draco/draco_wasm_wrapper.js"></script>
<script type="module">
import { MeshoptDecoder } from "/meshopt/meshopt_decoder.mjs";
window.decodeAll = async (urls) => {
  await MeshoptDecoder.ready;
  const wasm = await (await fetch("/draco/draco_decoder.wasm")).arrayBuffer();
  const draco = await DracoDecoderModule({wasmBinary: wasm});
  const files = await Promise.all(urls.map(async u => new Uint8Array(await (await fetch(u)).arrayBuffer())));
  let bytes = 0, ms = 0;
  for (const data of files) {
    const dv = new DataView(data.buffer), jl = dv.getUint32(12, true);
    const json = JSON.parse(new TextDecoder().decode(data.subarray(20, 20 + jl)));
    const bin = data.subarray(20 + jl + 8);
    bytes += data.length;
    const t0 = performance.now();
    decodeOne(json, bin, MeshoptDecoder, draco);
    ms += performance.now() - t0;
  }
  return {bytes, ms};
};
window.ready = true;
""" + DECODE_ONE_JS + "</script>"


def _browser_decode_ms_per_mb(folder: Path) -> float:
    """The same decoding in headless Chromium: meshoptimizer's module and the Draco decoder the viewer is served
    (npm @loaders.gl/draco), every glb fetched first, only the decoding timed; ms per MB of glb."""
    from tests.support.browser import chromium_page
    from tests.support.http import serve_mounts

    page_dir = Path(tempfile.mkdtemp(prefix="decode-page-"))
    (page_dir / "index.html").write_text(BROWSER_DECODE_HTML)
    mounts = {"/": page_dir, "/tiles": folder, "/meshopt": ROOT / "node_modules" / "meshoptimizer",
              "/draco": ROOT / "node_modules" / "@loaders.gl" / "draco" / "dist" / "libs"}
    try:
        with serve_mounts(mounts) as server, chromium_page(timeout_s=600) as bp:
            bp.page.goto(f"{server}/index.html")
            bp.page.wait_for_function("window.ready === true")
            urls = [f"/tiles/{f.relative_to(folder).as_posix()}" for f in sorted(folder.rglob("*.glb"))]
            r = bp.page.evaluate("(urls) => decodeAll(urls)", urls)
    finally:
        shutil.rmtree(page_dir, ignore_errors=True)
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


def bench(which: str, work: Path, browser: bool, sizes_only: bool = False, before: Path | None = None,
          main: Path | None = None, repeats: int = 3) -> dict:
    """One tileset's row; `sizes_only`: bytes alone (no decode or browser run, and no seconds: byte counts do not
    depend on the machine's load, times do); `before`: a tree of the code before the lightweight work, built too;
    `main`: a tree of the main branch, whose default build time is compared with ours (`repeats` times each)."""
    row: dict = {"tileset": which}
    if main is not None and which != "oblique" and not sizes_only:
        row.update(_build_times(main, which, work, repeats))
        if which == "l2":
            row["terrain_texture_choice"] = _choice_seconds(work)
    outs = {}
    if before is not None and which != "oblique":
        out = work / f"{which}-before"
        row["before_build_s"] = round(_build_before(before, which, out), 2)
        n, size, gz = _bytes(out)
        row.update({"before_files": n, "before_bytes": size, "before_gzip": gz})
        outs["before"] = out
    # oblique: also every production image re-encoded as WebP (`--textures webp`; by default their pixels are kept,
    # re-coded losslessly; `meshopt_original` keeps them byte for byte)
    variants = ("none", "meshopt", "meshopt_original", "draco") + (("meshopt_webp",) if which == "oblique" else ())
    for c in variants:
        out = work / f"{which}-{c}"
        compression, _, textures = c.partition("_")
        textures = "original" if c == "none" else (textures or "auto")
        row[f"{c}_build_s"] = round(_build(which, out, compression, textures), 2)
        n, size, gz = _bytes(out)
        row.update({f"{c}_files": n, f"{c}_bytes": size, f"{c}_gzip": gz})
        outs[c] = out
    for cmd in ("meshopt", "draco"):
        dst = work / f"{which}-gt-{cmd}"
        row[f"gt_{cmd}_s"] = round(_peer(outs["none"], dst, cmd), 2)
        _, size, gz = _bytes(dst)
        row.update({f"gt_{cmd}_bytes": size, f"gt_{cmd}_gzip": gz})
    if sizes_only:
        row = {k: v for k, v in row.items() if not k.endswith("_s")}
    else:
        row["meshopt_decode_ms_per_mb"] = round(_decode_ms_per_mb(outs["meshopt"]), 2)
        row["draco_decode_ms_per_mb"] = round(_decode_ms_per_mb(outs["draco"]), 2)
    if browser and not sizes_only:
        row["browser_meshopt_decode_ms_per_mb"] = round(_browser_decode_ms_per_mb(outs["meshopt"]), 2)
        row["browser_draco_decode_ms_per_mb"] = round(_browser_decode_ms_per_mb(outs["draco"]), 2)
        row["cesium_none_s"] = round(_first_frame(outs["none"]), 2)
        row["cesium_meshopt_s"] = round(_first_frame(outs["meshopt"]), 2)
        row["cesium_draco_s"] = round(_first_frame(outs["draco"]), 2)
    if "before_bytes" in row:
        for c in ("meshopt", "draco"):
            row[f"ratio_before_over_{c}"] = round(row["before_bytes"] / row[f"{c}_bytes"], 3)
        row["ratio_transfer_before_over_meshopt_gzip"] = round(row["before_bytes"] / row["meshopt_gzip"], 3)
    row["parts"] = {c: _parts(outs[c]) for c in ("before", "none", "meshopt") if c in outs}
    if which == "l2" and "before" in outs:  # the terrain of LOD2 is the same
        quality = {c: _terrain_quality(outs[c]) for c in ("before", "meshopt")}
        row["terrain_quality"] = quality
        row["terrain_quality_summary"] = _quality_summary(quality["before"], quality["meshopt"])
    row["ratio_none_over_meshopt"] = round(row["none_bytes"] / row["meshopt_bytes"], 2)
    row["ratio_none_over_draco"] = round(row["none_bytes"] / row["draco_bytes"], 2)
    # transfer: before this issue the server sent glb as it is; now gzip when the client accepts it
    row["ratio_transfer_none_over_meshopt_gzip"] = round(row["none_bytes"] / row["meshopt_gzip"], 2)
    if "meshopt_webp_bytes" in row:
        row["ratio_none_over_meshopt_webp"] = round(row["none_bytes"] / row["meshopt_webp_bytes"], 2)
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
    ap.add_argument("--before", type=Path,
                    help="a tree of the code before the lightweight work (git archive 4f8a7f6): build it too")
    ap.add_argument("--main", type=Path,
                    help="a tree of the main branch (git archive main): its default build time against ours")
    ap.add_argument("--repeats", type=int, default=3, help="default builds of --main and ours, each")
    ap.add_argument("--sizes-only", action="store_true",
                    help="bytes only: no decode or browser runs and no seconds (for a machine that is not quiet)")
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
            row = (bench_quantized_mesh(work) if which == "qm"
                   else bench(which, work, not args.no_browser, args.sizes_only, args.before, args.main,
                              args.repeats))
            print(json.dumps(row), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
