"""Orthophoto tile latency per tile matrix set and zoom, ours against TiTiler on the same COG, in one run.

    .venv/bin/python bench/bench_ortho_tms.py [--duration 5] [--connections 4] [--markdown]

The COG is the sample city's orthophoto (4000 x 4000 px, 0.5 m, JPEG, overviews 2-8, EPSG:4547: CGCS2000
Gauss-Krueger), made once by `cim.sample.default_sample()`. For each tile matrix set and zoom, `wrk` (1 thread, 4
keep-alive connections) cycles through every tile of that zoom over the COG (at most 256), first 2 s of warm-up,
then `--duration` seconds measured (each server first gets 10 s of zoom 15 per tile matrix set, unmeasured;
wrk's request timeout is raised to 60 s, so a slow server is measured, not dropped), against

- ours: `cim serve` with that COG as a map, one worker, rendered-tile cache off (`CIM_TILE_CACHE_MB=0`: every
  request renders its tile; the URL list repeats within a run): `/maps/ortho/{tms}/{z}/{x}/{y}.png`;
- TiTiler (`titiler.application`, same rio-tiler underneath), one worker: `/cog/tiles/{tms}/{z}/{x}/{y}.png?url=`,
  with CGCS2000Quad registered in morecantile by a small launcher written into the work folder (the same
  definition as ours, `tiles.raster.get_tms`).

Zooms: WebMercatorQuad 13-18 and CGCS2000Quad 12-17 (CGCS2000Quad zoom z has about the ground resolution of
WebMercatorQuad z+1 at this latitude, its tiles 1.3 times the area). Both servers run side by side, and the rows
are measured in pairs at the same ground resolution, ours then TiTiler, so that a shared machine's drifting load
falls on both halves of every ratio alike. QGIS 3.22 drawing the whole city (1000 x 700 and 1920 x 1080 px) asked
WebMercatorQuad 15 and 16 and CGCS2000Quad 15 (tools/desktop_screenshots.py).

First, in one process, the render cost per tile before and after the kept views (`in_process`). Then: p50/p95 ms
and tiles/s of both servers, ours/TiTiler throughput, and each of our rows' p50 against the faster tile matrix set
at the same ground resolution. The peer lives in a venv of its own, never a project dependency:

    apt-get install -y wrk
    /usr/bin/python3 -m venv /tmp/cim-bench-peers && /tmp/cim-bench-peers/bin/pip install titiler.application uvicorn
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_serve import guarded, process, wrk
from tests.support.http import free_port

LAUNCHER = '''
import morecantile, pyproj
cgcs = morecantile.TileMatrixSet.custom(
    [-180.0, -90.0, 180.0, 90.0], pyproj.CRS.from_epsg(4490), matrix_scale=[2, 1], id="CGCS2000Quad",
    ordered_axes=["Lat", "Lon"], minzoom=0, maxzoom=20)
morecantile.tms = morecantile.tms.register({"CGCS2000Quad": cgcs})
from titiler.application.main import app  # noqa: E402  (after the registry has CGCS2000Quad)
'''
ZOOMS = {"WebMercatorQuad": range(13, 19), "CGCS2000Quad": range(12, 18)}


def tiles_of(cog: Path, tms_id: str, z: int, limit: int = 256) -> list[str]:
    import numpy as np

    from tiles.raster import RasterMap, get_tms

    m = RasterMap("ortho", cog, "image")
    tms = get_tms(tms_id)
    tiles = [t for t in tms.tiles(*m.info.bounds, [z]) if m.tile_exists(tms, t.z, t.x, t.y)]
    order = np.random.default_rng(11).permutation(len(tiles))[:limit]
    return [f"{tiles[i].z}/{tiles[i].x}/{tiles[i].y}" for i in order]


def in_process(cog: Path, rounds: int = 12) -> list[str]:
    """Render cost per tile in one process, before and after the kept views, rows in pairs at the same ground
    resolution and every kind of tile interleaved (so a drifting load falls on all four alike). "Before" is the code
    this replaced: one rio-tiler reader of the COG per tile matrix set (with our cached tile-in-data test)."""
    import statistics
    import time

    from tiles.raster import RasterMap, _Reader, get_tms

    m = RasterMap("ortho", cog, "image")
    wm, cg = get_tms("WebMercatorQuad"), get_tms("CGCS2000Quad")
    old = {wm.id: _Reader(str(cog), tms=wm), cg.id: _Reader(str(cog), tms=cg)}

    def before(tms: Any, t: Any) -> bytes:
        img = old[tms.id].tile(t.x, t.y, t.z, tilesize=256, indexes=(1, 2, 3))
        return img.render(add_mask=True, img_format="PNG", zlevel=1)

    def after(tms: Any, t: Any) -> bytes:
        return m.tile(tms.id, t.z, t.x, t.y, "png").content

    def tiles(tms: Any, z: int) -> list[Any]:
        ts = [t for t in tms.tiles(*m.info.bounds, [z]) if m.tile_exists(tms, t.z, t.x, t.y)]
        return ts[len(ts) // 2 - rounds // 2: len(ts) // 2 + rounds // 2] if len(ts) > rounds else ts

    for tms, z in ((wm, 15), (cg, 14)):  # open the readers and views first
        for t in tiles(tms, z)[:2]:
            before(tms, t)
            after(tms, t)
    rows = [("| CGCS2000Quad zoom | WebMercatorQuad zoom | before: WMQ p50 ms | before: CGCS p50 ms | before WMQ/CGCS | "
             "after: WMQ p50 ms | after: CGCS p50 ms | after WMQ/CGCS |"), "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for zc in ZOOMS["CGCS2000Quad"]:
        a, b = tiles(wm, zc + 1), tiles(cg, zc)
        ms: dict[str, list[float]] = {"bw": [], "bc": [], "aw": [], "ac": []}
        for i in range(max(len(a), len(b))):
            ta, tb = a[i % len(a)], b[i % len(b)]
            for k, fn, tms, t in (("bw", before, wm, ta), ("bc", before, cg, tb), ("aw", after, wm, ta),
                                  ("ac", after, cg, tb)):
                t0 = time.perf_counter()
                fn(tms, t)
                ms[k].append((time.perf_counter() - t0) * 1000)
        p = {k: statistics.median(v) for k, v in ms.items()}
        rows.append(f"| {zc} | {zc + 1} | {p['bw']:.0f} | {p['bc']:.0f} | {p['bw'] / p['bc']:.2f} | {p['aw']:.0f} | "
                    f"{p['ac']:.0f} | {p['aw'] / p['ac']:.2f} |")
    m.close()
    return rows


def warm(base: str, paths_by_tms: dict[str, list[str]], work: Path, connections: int) -> None:
    """Make the servers' per-connection state before measuring (our kept views, GDAL's caches): 10 s of each tile
    matrix set's QGIS zoom, unmeasured."""
    for paths in paths_by_tms.values():
        wrk(base, paths, work, 10, connections, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=5, help="seconds measured per server, tile matrix set and zoom")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-ortho-tms")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/cim-bench-peers"), help="venv with titiler")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--in-process-only", action="store_true", help="only the in-process before/after table")
    args = ap.parse_args()
    from cim.sample import default_sample

    cog = default_sample().ortho
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "cim_bench_titiler.py").write_text(LAUNCHER)
    print(f"COG {cog}; load average at start {os.getloadavg()}", flush=True)
    print("\n".join(in_process(cog)), flush=True)
    print(f"load average after the in-process table {os.getloadavg()}", flush=True)
    if args.in_process_only:
        return
    plan = {(t, z): tiles_of(cog, t, z) for t, zs in ZOOMS.items() for z in zs}
    # rows at the same ground resolution one after the other, each server right after the other: the load of a
    # shared machine drifts, and these are the ratios that count
    order = [key for zc in ZOOMS["CGCS2000Quad"] for key in (("WebMercatorQuad", zc + 1), ("CGCS2000Quad", zc))]
    ours: dict[tuple[str, int], dict[str, float]] = {}
    peer: dict[tuple[str, int], dict[str, float]] = {}
    port, pport = free_port(), free_port()
    code = ("from tiles.server import ServerSettings, serve; import sys; "
            "serve(ServerSettings(maps={'ortho': sys.argv[1]}, port=int(sys.argv[2]), log_requests=False))")
    ours_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{pport}"
    peer_py = args.peers / "bin" / "python"
    with contextlib.ExitStack() as stack:
        stack.enter_context(process([sys.executable, "-c", code, str(cog), str(port)], f"{ours_url}/health",
                                    env={"PYTHONPATH": str(HERE.parent), "CIM_TILE_CACHE_MB": "0"}, cwd=HERE.parent))
        has_peer = peer_py.is_file() and guarded("TiTiler", lambda: stack.enter_context(process(
            [str(peer_py), "-m", "uvicorn", "cim_bench_titiler:app", "--port", str(pport), "--no-access-log",
             "--log-level", "error"], f"{peer_url}/healthz", env={"PYTHONPATH": str(args.work)}, cwd=args.work))
            or {}) is not None
        warm(ours_url, {t: [f"/maps/ortho/{t}/{p}.png" for p in plan[t, 15]] for t in ZOOMS}, args.work,
             args.connections)
        if has_peer:
            warm(peer_url, {t: [f"/cog/tiles/{t}/{p}.png?url={cog}" for p in plan[t, 15]] for t in ZOOMS},
                 args.work, args.connections)
        for t, z in order:
            tiles = plan[t, z]
            ours[t, z] = wrk(ours_url, [f"/maps/ortho/{t}/{p}.png" for p in tiles], args.work, args.duration,
                             args.connections, timeout=60)
            print(f"ours {t} z{z}: {ours[t, z]}", flush=True)
            if has_peer:
                peer[t, z] = wrk(peer_url, [f"/cog/tiles/{t}/{p}.png?url={cog}" for p in tiles], args.work,
                                 args.duration, args.connections, timeout=60)
                print(f"TiTiler {t} z{z}: {peer[t, z]}", flush=True)
    print(f"\nload average at end {os.getloadavg()}")
    rows = [("| tile matrix set | zoom | tiles | p50 ms | p95 ms | tiles/s | TiTiler p50 ms | TiTiler p95 ms | "
             "TiTiler tiles/s | ours/TiTiler (tiles/s) | p50 / best set at same resolution |"),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, z in sorted(ours, key=lambda k: (k[0] != "WebMercatorQuad", k[1])):
        r = ours[t, z]
        twin = ("CGCS2000Quad", z - 1) if t == "WebMercatorQuad" else ("WebMercatorQuad", z + 1)
        best = min(r["p50_ms"], ours[twin]["p50_ms"]) if twin in ours else r["p50_ms"]
        p = peer.get((t, z))
        ratio = f"{r['rps'] / p['rps']:.2f}" if p and p['rps'] else "-"
        ptxt = f"{p['p50_ms']:.1f} | {p['p95_ms']:.1f} | {p['rps']:.0f}" if p else "- | - | -"
        bad = f" ({r['bad_status']} bad)" if r["bad_status"] or r["errors"] else ""
        rows.append(f"| {t} | {z} | {len(plan[t, z])} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['rps']:.0f}{bad} | "
                    f"{ptxt} | {ratio} | {(r['p50_ms'] / best) if best else float('nan'):.2f} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
