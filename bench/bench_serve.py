"""Benchmark of `cim serve` against peers, on loopback, with the same data in one run.

    .venv/bin/python bench/bench_serve.py [--features 1000000] [--duration 10] [--connections 4]

Four comparisons, each a bounded `wrk` run (Debian `wrk`: one thread, a few keep-alive connections, fixed duration)
cycling through a fixed list of URLs:

1. MVT tiles of a 1M-point layer (z12-z16 tiles over the data): p50/p95 latency and tiles/s against the floors of the
   issue (p50 <= 25 ms, p95 <= 100 ms, >= 100 tiles/s);
2. orthophoto PNG tiles of one COG against TiTiler (`/cog/tiles/...?url=`), both rio-tiler underneath;
3. static 3D Tiles content (tileset.json + glb files) against nginx serving the same folder (1 worker);
4. OGC API Features items (bbox + limit 100) of a 20k-point layer against pygeoapi on the same GeoPackage.

Every server runs as one process (ours: `--workers N` for N uvicorn workers). MVT is measured twice: with the
rendered-tile cache off (every request cuts its tile) and as served (the 600 URLs repeat within a run, so most
answers come from the cache). The peers are benchmark-only, never project dependencies:

    apt-get install -y nginx wrk
    apt-get install -y libsqlite3-mod-spatialite   # pygeoapi's SQLiteGPKG provider loads it
    /usr/bin/python3 -m venv /tmp/cim-bench-peers && /tmp/cim-bench-peers/bin/pip install titiler.application pygeoapi uvicorn

(Debian's python3: pygeoapi's GeoPackage provider needs `sqlite3` with extension loading, which pyenv builds lack.)

A comparison whose peer is missing is skipped with a note. `--markdown` prints the result table for
docs/benchmarks.md ("Tile services").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.http import free_port  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402

LON0, LAT0, SPAN = 113.20, 40.00, 0.20  # the 1M points cover 0.2 x 0.2 degrees (about 17 x 22 km) near Datong

WRK_LUA = r"""
local urls = {}
for line in io.lines(os.getenv("BENCH_URLS")) do urls[#urls + 1] = line end
local i = 0
request = function()
  i = i % #urls + 1
  return wrk.format("GET", urls[i], {["Accept-Encoding"] = "gzip"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"p50_ms": %.3f, "p95_ms": %.3f, "rps": %.2f, "requests": %d, "errors": %d, "bad_status": %d}\n',
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, summary.requests / (summary.duration / 1e6),
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def process(cmd: list[str], health: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                            cwd=cwd)
    try:
        wait_http(health, proc)
        yield
    finally:
        stop_process(proc, timeout=20)


def wrk(base: str, paths: list[str], work: Path, duration: int, connections: int, timeout: int = 2
        ) -> dict[str, float]:
    """Run wrk over `paths` (cycled) against `base`; p50/p95 in ms, requests/s, counts. A request slower than
    `timeout` seconds counts as an error (wrk's default: 2 s)."""
    lst = work / f"urls-{abs(hash((base, paths[0]))) % 10**8}.txt"
    lst.write_text("\n".join(paths) + "\n")
    script = work / "bench.lua"
    script.write_text(WRK_LUA)
    # warm-up: fill OS and server caches the same way for every server
    subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", f"--timeout={timeout}s", "-s", str(script), base],
                   env={**os.environ, "BENCH_URLS": str(lst)}, capture_output=True, check=True)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout}s", "-s",
                          str(script), base],
                         env={**os.environ, "BENCH_URLS": str(lst)}, capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[7:])


# ------------------------------------------------------------------------------------------------------ data
def make_data(work: Path, n_features: int) -> dict[str, Path]:
    import geopandas as gpd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import rasterio
    import shapely
    from rasterio.transform import from_origin

    from cim.sources.crs import transformer
    from layers import LayerStore

    out = {"store": work / "city.duckdb", "gpkg": work / "pois.gpkg", "cog": work / "ortho.tif",
           "model": work / "model"}
    if out["store"].is_file() and out["cog"].is_file() and (out["model"] / "tileset.json").is_file():
        return out
    rng = np.random.default_rng(42)
    t0 = time.perf_counter()
    # 1M points, clustered like buildings in a city: a few dense centres and a uniform background
    centres = rng.uniform([LON0, LAT0], [LON0 + SPAN, LAT0 + SPAN], (40, 2))
    k = rng.integers(0, len(centres), n_features)
    xy = centres[k] + rng.normal(0, SPAN / 25, (n_features, 2))
    xy = np.clip(xy, [LON0, LAT0], [LON0 + SPAN, LAT0 + SPAN])
    table = pa.table({"name": pa.array([f"b{i}" for i in range(n_features)]),
                      "floors": pa.array(rng.integers(1, 30, n_features)),
                      "height": pa.array(np.round(rng.uniform(3, 90, n_features), 1)),
                      "use": pa.array(np.array(["住宅", "商业", "办公", "教育"])[rng.integers(0, 4, n_features)]),
                      "geometry": pa.array(shapely.to_wkb(shapely.points(xy)))})
    meta = {"version": "1.0.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                     "crs": json.loads(__import__("pyproj").CRS.from_epsg(4490).to_json())}}}
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(meta)}), work / "points.parquet")
    pois = gpd.GeoDataFrame({"name": [f"p{i}" for i in range(20_000)], "capacity": rng.integers(10, 900, 20_000),
                             "kind": np.array(["school", "park", "hospital"])[rng.integers(0, 3, 20_000)]},
                            geometry=shapely.points(rng.uniform([LON0, LAT0], [LON0 + SPAN, LAT0 + SPAN],
                                                                (20_000, 2))), crs="EPSG:4326")
    pois.to_file(out["gpkg"], driver="GPKG", layer="pois")
    with LayerStore(out["store"]) as s:
        s.import_file(work / "points.parquet", "buildings_1m", theme="public_topics", security="public")
        s.import_file(out["gpkg"], "pois", theme="public_topics", security="public")
    print(f"store: {n_features} + 20000 features imported in {time.perf_counter() - t0:.1f} s", flush=True)
    # a 4096 x 4096 RGB orthophoto COG, 0.5 m, EPSG:4547, centred in the points' area
    size, res = 4096, 0.5
    cx, cy = transformer("EPSG:4326", "EPSG:4547").transform(LON0 + SPAN / 2, LAT0 + SPAN / 2)
    yy, xx = np.mgrid[0:size, 0:size]
    noise = rng.integers(0, 40, (size, size))
    data = np.stack([(xx % 256 + noise) % 256, (yy % 256 + noise) % 256, (xx // 16 + yy // 16) % 256]).astype(np.uint8)
    with rasterio.open(out["cog"], "w", driver="COG", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:4547", transform=from_origin(cx - size * res / 2, cy + size * res / 2, res, res),
                       compress="jpeg", quality=90, blocksize=512) as dst:
        dst.write(data)
    # 3D Tiles: a tileset.json and 300 glb-sized files (20-300 KB); static serving does not look inside
    model = out["model"]
    (model / "tiles").mkdir(parents=True, exist_ok=True)
    children = []
    for i in range(300):
        (model / "tiles" / f"{i}.glb").write_bytes(rng.integers(0, 256, int(rng.integers(20_000, 300_000)),
                                                                dtype=np.uint8).tobytes())
        children.append({"boundingVolume": {"region": [1.97, 0.70, 1.98, 0.71, 0, 100]}, "geometricError": 0,
                         "content": {"uri": f"tiles/{i}.glb"}})
    (model / "tileset.json").write_text(json.dumps({
        "asset": {"version": "1.1"}, "geometricError": 500,
        "root": {"boundingVolume": {"region": [1.97, 0.70, 1.98, 0.71, 0, 100]}, "geometricError": 100,
                 "refine": "ADD", "children": children}}, indent=1))
    return out


def first_tile(base: str) -> None:
    """Ask one tile of the 1M-point layer, which projects the layer into the server's workspace (once per process),
    and print how long that took; the timed runs then measure tiles only."""
    import httpx

    t0 = time.perf_counter()
    httpx.get(f"{base}/tiles/buildings_1m/{mvt_paths(1)[0]}.mvt", timeout=300).raise_for_status()
    print(f"first MVT tile (projects the 1M-point layer): {time.perf_counter() - t0:.1f} s", flush=True)


def mvt_paths(n: int = 600) -> list[str]:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    rng = np.random.default_rng(7)
    paths = []
    for _ in range(n):
        z = int(rng.integers(12, 17))
        t = tms.tile(LON0 + rng.uniform(0.02, SPAN - 0.02), LAT0 + rng.uniform(0.02, SPAN - 0.02), z)
        paths.append(f"{t.z}/{t.x}/{t.y}")
    return paths


def ortho_tiles(cog: Path, n: int = 400) -> list[str]:
    import morecantile
    from rio_tiler.io import Reader

    tms = morecantile.tms.get("WebMercatorQuad")
    with Reader(str(cog)) as r:
        b = r.get_geographic_bounds(__import__("pyproj").CRS.from_epsg(4326))
        zooms = [r.maxzoom - 1, r.maxzoom]
    tiles = [t for z in zooms for t in tms.tiles(b[0], b[1], b[2], b[3], [z])]
    rng = np.random.default_rng(3)
    return [f"{tiles[i].z}/{tiles[i].x}/{tiles[i].y}" for i in rng.permutation(len(tiles))[:n]]


def item_queries(n: int = 300) -> list[str]:
    rng = np.random.default_rng(5)
    out = []
    for _ in range(n):
        x, y = LON0 + rng.uniform(0, SPAN - 0.04), LAT0 + rng.uniform(0, SPAN - 0.04)
        out.append(f"bbox={x:.5f},{y:.5f},{x + 0.04:.5f},{y + 0.04:.5f}&limit=100")
    return out


# ------------------------------------------------------------------------------------------------------ peers
def pygeoapi_config(work: Path, gpkg: Path, port: int) -> Path:
    cfg = work / "pygeoapi.yml"
    cfg.write_text(f"""
server:
  bind: {{host: 127.0.0.1, port: {port}}}
  url: http://127.0.0.1:{port}
  mimetype: application/json; charset=UTF-8
  encoding: utf-8
  language: en-US
  limits: {{default_items: 20, max_items: 10000}}
  map: {{url: "https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png", attribution: osm}}
logging: {{level: ERROR}}
metadata:
  identification: {{title: bench, description: bench, keywords: [bench], keywords_type: theme, terms_of_service: none, url: http://example.org}}
  license: {{name: CC-BY 4.0, url: https://creativecommons.org/licenses/by/4.0/}}
  provider: {{name: bench, url: http://example.org}}
  contact: {{name: bench}}
resources:
  pois:
    type: collection
    title: pois
    description: pois
    keywords: [pois]
    extents:
      spatial: {{bbox: [{LON0}, {LAT0}, {LON0 + SPAN}, {LAT0 + SPAN}], crs: http://www.opengis.net/def/crs/OGC/1.3/CRS84}}
    providers:
      - type: feature
        name: SQLiteGPKG
        data: {gpkg}
        id_field: fid
        table: pois
""")
    return cfg


def guarded(name: str, run: Callable[[], dict[str, float]]) -> dict[str, float] | None:
    """Run a peer; a peer that fails to start or answer is reported and left out."""
    try:
        return run()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(f"peer {name} left out: {exc} {detail[-500:].decode(errors='replace') if detail else ''}", flush=True)
        return None


def titiler_run(peer_py: Path, tiles: list[str], cog: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    with process([str(peer_py), "-m", "uvicorn", "titiler.application.main:app", "--port", str(port),
                  "--no-access-log", "--log-level", "error"], f"http://127.0.0.1:{port}/healthz"):
        return wrk(f"http://127.0.0.1:{port}", [f"/cog/tiles/WebMercatorQuad/{t}.png?url={cog}" for t in tiles], work,
                   args.duration, args.connections)


def pygeoapi_run(peers: Path, queries: list[str], gpkg: Path, work: Path, args: argparse.Namespace
                 ) -> dict[str, float]:
    port = free_port()
    cfg = pygeoapi_config(work, gpkg, port)
    oapi = work / "pygeoapi-openapi.yml"
    env = {"PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oapi)}
    subprocess.run([str(peers / "bin" / "pygeoapi"), "openapi", "generate", str(cfg), "--output-file", str(oapi)],
                   env={**os.environ, **env}, check=True, capture_output=True)
    with process([str(peers / "bin" / "python"), "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--port", str(port),
                  "--no-access-log", "--log-level", "error"], f"http://127.0.0.1:{port}/conformance", env=env):
        return wrk(f"http://127.0.0.1:{port}", [f"/collections/pois/items?{q}&f=json" for q in queries], work,
                   args.duration, args.connections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", type=int, default=1_000_000)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-serve")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/cim-bench-peers"), help="venv with titiler, pygeoapi")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of our server")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = make_data(work, args.features)
    print(f"load average at start {os.getloadavg()}", flush=True)
    py = sys.executable
    rows: list[tuple[str, dict[str, float], str, dict[str, float] | None]] = []
    ours_port = free_port()
    ours = f"http://127.0.0.1:{ours_port}"
    serve_code = ("from tiles.server import ServerSettings, serve; import sys; "
                  f"serve(ServerSettings(store=sys.argv[1], models={{'city': sys.argv[2]}}, maps={{'ortho': sys.argv[3]}},"
                  f" port=int(sys.argv[4]), workers={args.workers}))")
    serve_args = [str(data["store"]), str(data["model"]), str(data["cog"])]
    peer_py = args.peers / "bin" / "python"
    floors = "floors: p50 <= 25 ms, p95 <= 100 ms, >= 100/s"
    # 1a. MVT with the rendered-tile cache off: every request cuts its tile (the URL list repeats within a run)
    cold_port = free_port()
    with process([py, "-c", serve_code, *serve_args, str(cold_port)], f"http://127.0.0.1:{cold_port}/health",
                 env={"PYTHONPATH": str(REPO), "CIM_TILE_CACHE_MB": "0"}, cwd=REPO):
        first_tile(f"http://127.0.0.1:{cold_port}")
        mvt = wrk(f"http://127.0.0.1:{cold_port}", [f"/tiles/buildings_1m/{p}.mvt" for p in mvt_paths()], work,
                  args.duration, args.connections)
        rows.append(("MVT, 1M-point layer, z12-16, tile cache off", mvt, floors, None))
    with process([py, "-c", serve_code, *serve_args, str(ours_port)], f"{ours}/health",
                 env={"PYTHONPATH": str(REPO)}, cwd=REPO):
        # 1b. MVT as served (600 tile URLs cycled: after the first pass, tiles come from the cache)
        first_tile(ours)
        mvt = wrk(ours, [f"/tiles/buildings_1m/{p}.mvt" for p in mvt_paths()], work, args.duration, args.connections)
        rows.append(("MVT, 1M-point layer, z12-16, as served", mvt, floors, None))
        # 2. ortho vs TiTiler
        tiles = ortho_tiles(data["cog"])
        o = wrk(ours, [f"/maps/ortho/{t}.png" for t in tiles], work, args.duration, args.connections)
        peer = guarded("TiTiler", lambda: titiler_run(peer_py, tiles, data["cog"], work, args)) \
            if peer_py.is_file() else None
        rows.append(("ortho PNG tiles (COG 4096 px)", o, "TiTiler", peer))
        # 3. 3D Tiles vs nginx
        files = ["tileset.json"] + [f"tiles/{i}.glb" for i in range(300)]
        t3 = wrk(ours, [f"/3dtiles/city/{f}" for f in files], work, args.duration, args.connections)
        peer = None
        if shutil.which("nginx"):
            port = free_port()
            conf = work / "nginx.conf"
            conf.write_text(f"""worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types {{ application/json json; model/gltf-binary glb; }} gzip on; gzip_types application/json;
  client_body_temp_path {work}/nb; proxy_temp_path {work}/np; fastcgi_temp_path {work}/nf; uwsgi_temp_path {work}/nu;
  scgi_temp_path {work}/ns;
  server {{ listen 127.0.0.1:{port}; location /3dtiles/city/ {{ alias {data['model']}/; }} }} }}
""")
            with process(["nginx", "-c", str(conf), "-g", "daemon off;"], f"http://127.0.0.1:{port}/3dtiles/city/tileset.json"):
                peer = wrk(f"http://127.0.0.1:{port}", [f"/3dtiles/city/{f}" for f in files], work, args.duration,
                           args.connections)
        rows.append(("3D Tiles static (301 files, 20-300 KB)", t3, "nginx, 1 worker", peer))
        # 4. items vs pygeoapi
        queries = item_queries()
        it = wrk(ours, [f"/collections/pois/items?{q}" for q in queries], work, args.duration, args.connections)
        peer = guarded("pygeoapi", lambda: pygeoapi_run(args.peers, queries, data["gpkg"], work, args)) \
            if peer_py.is_file() else None
        rows.append(("OGC API items (bbox, limit 100, 20k points)", it, "pygeoapi (SQLiteGPKG)", peer))

    print(f"\nour server: {args.workers} worker(s); load average {os.getloadavg()}")
    print(f"\n{'test':<46} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>9}   peer: {'p50':>7} {'p95':>7} {'req/s':>9}  ratio")
    md = ["| test | p50 ms | p95 ms | req/s | peer | peer p50 ms | peer p95 ms | peer req/s | req/s ratio |",
          "|---|---|---|---|---|---|---|---|---|"]
    for name, r, peer_name, p in rows:
        bad = f" ({r['bad_status']} bad status, {r['errors']} errors)" if r["bad_status"] or r["errors"] else ""
        ratio = f"{r['rps'] / p['rps']:.2f}" if p else "-"
        ptxt = f"{p['p50_ms']:>7.1f} {p['p95_ms']:>7.1f} {p['rps']:>9.0f}" if p else f"{'(not installed)':>25}"
        print(f"{name:<46} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['rps']:>9.0f}   {ptxt}  {ratio}{bad}")
        md.append(f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['rps']:.0f} | {peer_name} | "
                  + (f"{p['p50_ms']:.1f} | {p['p95_ms']:.1f} | {p['rps']:.0f} | {ratio} |" if p else "- | - | - | - |"))
    if args.markdown:
        print("\n" + "\n".join(md))


if __name__ == "__main__":
    main()
