"""Implicit tilesets (3D Tiles 1.1 implicit tiling) from a build: the same bytes on any scheduler, our checks and
the Khronos validator pass, contents lie in the volumes implicit tiling implies, every vertex is where the explicit
build puts it (within 1 cm), the buildings' features are the explicit build's, and CesiumJS loads, renders and
picks them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image

from cim.build import build_city
from cim.models.footprints import BuildingOptions
from cim.models.terrain import TerrainOptions
from cim.sources.crs import from_ecef, transformer
from cim.tiling import SYNCHRONOUS, start_local_cluster
from tiles.check import check_tileset
from tiles.compression import GlbOptions
from tiles.gltf import read_glb
from tiles.implicit import expand, implied_region, read_subtree

# one WebP quality for the terrain textures: nothing here checks their per-texture choice (tests/cim/test_tiling checks
# its bytes on every scheduler, tests/cim/models/test_terrain its quality), and at 128 px tiles it was most of the time
OPTS = dict(building_options=BuildingOptions(tile_capacity=12), terrain_options=TerrainOptions(tile_px=128),
            glb=GlbOptions(texture_quality=80))


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from cim.sample import generate

    return generate(tmp_path_factory.mktemp("sample") / "city", buildings=200, seed=5)


@pytest.fixture(scope="module")
def builds(city, tmp_path_factory):
    """The city built implicit in this process and on a 2-worker LocalCluster, and explicit in this process."""
    from distributed import Client

    root = tmp_path_factory.mktemp("implicit")
    kw = dict(dem=city.dem, ortho=city.ortho, buildings=city.buildings, **OPTS)
    out = {"sync": build_city(root / "sync", scheduler=SYNCHRONOUS, implicit=True, **kw),
           "explicit": build_city(root / "explicit", scheduler=SYNCHRONOUS, implicit=False, **kw)}
    cluster = start_local_cluster(2)
    try:
        with Client(cluster, set_as_default=False) as client:
            out["two"] = build_city(root / "two", client=client, implicit=True, **kw)
    finally:
        cluster.close()
    return root, out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _expanded(tileset: Path) -> list[dict]:
    doc = json.loads(tileset.read_text())
    out: list[dict] = []

    def walk(t: dict) -> None:
        out.append(t)
        for c in t.get("children") or []:
            walk(c)

    walk(expand(tileset.parent, doc["root"]))
    return out


def _explicit_contents(tileset: Path) -> dict[str, np.ndarray]:
    """Content URI -> absolute transform of every glb of an explicit layer."""
    out: dict[str, np.ndarray] = {}

    def walk(t: dict, m: np.ndarray) -> None:
        if "transform" in t:
            m = m @ np.asarray(t["transform"], np.float64).reshape(4, 4).T
        if "content" in t:
            out[t["content"]["uri"]] = m
        for c in t.get("children") or []:
            walk(c, m)

    walk(json.loads(tileset.read_text())["root"], np.eye(4))
    return out


def test_same_bytes_on_any_scheduler_and_reported(builds):
    root, reports = builds
    fa, fb = _files(root / "sync"), _files(root / "two")
    assert sorted(fa) == sorted(fb)
    assert [k for k in fa if k != "build.json" and fa[k] != fb[k]] == []
    assert len([k for k in fa if k.endswith(".subtree")]) >= 2
    assert reports["sync"].buildings["implicit"] and reports["sync"].terrain["implicit"]
    assert not reports["explicit"].buildings["implicit"] and not reports["explicit"].terrain["implicit"]
    assert reports["two"].dask["workers"] == 2


def test_layer_tilesets_hold_only_the_implicit_root(builds):
    root, reports = builds
    for layer in ("buildings", "terrain"):
        doc = json.loads((root / "sync" / layer / "tileset.json").read_text())
        r = doc["root"]
        assert r["implicitTiling"]["subdivisionScheme"] == "QUADTREE"
        assert "children" not in r and "transform" not in r and r["content"]["uri"] == "{level}/{x}/{y}.glb"
        assert doc["schema"]["classes"]["content"]["properties"]["boundingRegion"]["semantic"] == \
            "CONTENT_BOUNDING_REGION"
        assert doc["extras"]["cim"]["implicit"] is True
    b = json.loads((root / "sync" / "buildings" / "tileset.json").read_text())
    assert "tile" not in b["schema"]["classes"]  # buildings use the implied volumes
    assert reports["sync"].buildings["tiles"] >= 10
    explicit = (root / "explicit" / "buildings" / "tileset.json").stat().st_size
    implicit = (root / "sync" / "buildings" / "tileset.json").stat().st_size
    assert implicit < 1000 < explicit


def test_implicit_tilesets_pass_our_checks(builds):
    root, reports = builds
    report = check_tileset(root / "sync" / "tileset.json")
    assert report.ok, report.to_dict()["problems"][:10]
    # every glb followed (+ the two layer tilesets the root references)
    assert report.contents == reports["sync"].buildings["tiles"] + reports["sync"].terrain["tiles"] + 2
    assert report.vertices_checked > 10_000


def test_building_contents_lie_in_their_implied_cells(builds):
    root, _ = builds
    tileset = root / "sync" / "buildings" / "tileset.json"
    top = json.loads(tileset.read_text())["root"]
    tiles = _expanded(tileset)
    assert max(t["implicit"][0] for t in tiles) >= 2
    for t in tiles:
        lv, x, y = t["implicit"]
        cell = implied_region(top["boundingVolume"]["region"], lv, x, y)
        assert t["boundingVolume"]["region"] == cell
        assert t["geometricError"] == top["geometricError"] / 2**lv
        c = t["content"]["boundingVolume"]["region"]
        assert cell[0] <= c[0] and c[2] <= cell[2] and cell[1] <= c[1] and c[3] <= cell[3]
        assert cell[4] <= c[4] and c[5] <= cell[5]


def test_subtree_files_are_8_byte_aligned_with_bitstreams_and_constants(builds):
    root, _ = builds
    kinds = set()
    for path in sorted((root / "sync").rglob("*.subtree")):
        data = path.read_bytes()
        doc, blob = read_subtree(data)
        assert (24 + len(json.dumps(doc, separators=(",", ":")))) <= len(data) and len(data) % 8 == 0
        for view in doc.get("bufferViews", []):
            assert view["byteOffset"] % 8 == 0 and view["byteOffset"] + view["byteLength"] <= len(blob)
        for spec in [doc["tileAvailability"], doc["childSubtreeAvailability"], *doc["contentAvailability"]]:
            kinds.add("constant" if "constant" in spec else "bitstream")
    assert kinds == {"constant", "bitstream"}


def test_every_implicit_glb_passes_the_khronos_validator(builds):
    from tests.support.gltf_validator import validate

    root, _ = builds
    glbs = sorted((root / "sync").rglob("*.glb"))
    reports = validate(glbs)
    assert len(reports) == len(glbs) > 20
    bad = [r.describe() for r in reports if not r.ok]
    assert not bad, "\n".join(bad[:5])


def test_terrain_vertices_within_1cm_of_the_explicit_build(builds):
    """The tile frame moved from the tile's transform into the glb's node matrix (composed with the quantization's
    translation and scale): every vertex lands where the explicit tile puts it."""
    root, _ = builds
    placed = _explicit_contents(root / "explicit" / "terrain" / "tileset.json")
    checked = 0
    for uri, m in placed.items():
        level, tx, ty = (int(v) for v in Path(uri).with_suffix("").parts)
        mine = root / "sync" / "terrain" / f"{level}/{tx}/{(1 << level) - 1 - ty}.glb"  # rows run south
        a = read_glb((root / "explicit" / "terrain" / uri).read_bytes())["primitives"][0]["positions"]
        b = read_glb(mine.read_bytes())["primitives"][0]["positions"]
        ecef = a @ m[:3, :3].T + m[:3, 3]
        assert np.abs(b - ecef).max() < 0.01, uri
        checked += len(b)
    assert len(placed) > 5 and checked > 5000


def test_building_vertices_within_1cm_of_the_footprints(builds, city):
    root, _ = builds
    footprints = gpd.read_file(city.buildings)
    tree = shapely.STRtree(shapely.points(shapely.get_coordinates(footprints.geometry.to_numpy())))
    checked = 0
    for glb in sorted((root / "sync" / "buildings").rglob("*.glb")):
        pos = read_glb(glb.read_bytes())["primitives"][0]["positions"]  # ECEF: the node matrix places it
        src = from_ecef("EPSG:4547", pos)
        _, dist = tree.query_nearest(shapely.points(src[:, :2]), return_distance=True)
        assert dist.max() < 0.01, f"{glb.name}: {dist.max():.4f} m"
        checked += len(pos)
    assert checked > 1000


def test_features_are_the_explicit_builds(builds):
    root, _ = builds

    def rows(folder: Path) -> list[tuple]:
        out = []
        for glb in sorted(folder.rglob("*.glb")):
            p = read_glb(glb.read_bytes())["properties"]
            out += list(zip(p["code"], p["height"], p["base_height"], p["name"]))
        return sorted(out)

    a, b = rows(root / "explicit" / "buildings"), rows(root / "sync" / "buildings")
    assert a == b and len(a) == len({r[0] for r in a}) > 150  # each building once, attributes unchanged


def test_check_finds_broken_implicit_tilesets(builds, tmp_path):
    root, _ = builds
    work = tmp_path / "broken"
    shutil.copytree(root / "sync" / "buildings", work)
    tileset = work / "tileset.json"
    assert check_tileset(tileset).ok
    tiles = _expanded(tileset)
    deep = next(t for t in tiles if t["implicit"][0] >= 2)
    # a content file availability names, missing
    (work / deep["content"]["uri"]).rename(work / "aside.glb")
    problems = check_tileset(tileset).problems
    assert any(p.rule == "uri" and "does not resolve" in p.message for p in problems)
    (work / "aside.glb").rename(work / deep["content"]["uri"])
    # a content file availability does not reach
    shutil.copy(work / deep["content"]["uri"], work / "9" / "0" / "0.glb" if (work / "9").is_dir() else
                (work / "9" / "0").mkdir(parents=True) or work / "9" / "0" / "0.glb")
    problems = check_tileset(tileset).problems
    assert [p.rule for p in problems] == ["availability"] and "9/0/0.glb" in problems[0].message
    shutil.rmtree(work / "9")
    # a misaligned binary chunk, and a wrong availableCount
    sub = work / "subtrees" / "0" / "0" / "0.subtree"
    good = sub.read_bytes()
    doc, blob = read_subtree(good)
    sub.write_bytes(good[:-1])
    assert any(p.rule == "subtree" for p in check_tileset(tileset).problems)
    spec = doc["contentAvailability"][0] if "bitstream" in doc["contentAvailability"][0] else doc["tileAvailability"]
    if "availableCount" in spec:
        spec["availableCount"] += 1
        js = json.dumps(doc, separators=(",", ":")).encode()
        js += b" " * (-len(js) % 8)
        import struct

        sub.write_bytes(struct.pack("<IIQQ", 0x74627573, 1, len(js), len(blob)) + js + blob)
        assert any("availableCount" in p.message for p in check_tileset(tileset).problems)
    sub.write_bytes(good)
    # a root region too small for the content: the implied cells no longer hold it
    doc = json.loads(tileset.read_text())
    w, s, e, n, h0, h1 = doc["root"]["boundingVolume"]["region"]
    doc["root"]["boundingVolume"]["region"] = [w, s, e - (e - w) / 3, n, h0, h1]
    tileset.write_text(json.dumps(doc))
    assert any(p.rule == "bounds" for p in check_tileset(tileset).problems)


@pytest.mark.browser
def test_cesium_loads_renders_and_picks_implicit_tilesets(builds, city, tmp_path):
    from tests.support.browser import CesiumClient

    root, _ = builds
    out = root / "sync"
    footprints = gpd.read_file(city.buildings)
    tallest = footprints.loc[footprints["height"].idxmax()]
    c = tallest.geometry.representative_point()
    lon, lat = transformer("EPSG:4547", "EPSG:4326").transform(c.x, c.y)
    for glb in sorted((out / "buildings").rglob("*.glb")):
        props = read_glb(glb.read_bytes())["properties"]
        if tallest["code"] in props["code"]:
            k = props["code"].index(tallest["code"])
            roof = props["base_height"][k] + props["height"][k]
    with CesiumClient({"/city": out}) as client:
        info = client.load_tileset("/city/terrain/tileset.json")
        assert info.failures == [] and info.errors == [] and info.all_loaded
        terrain_shot = np.asarray(Image.open(client.screenshot(tmp_path / "terrain.png")).convert("RGB"), np.int16)
        client.pick_details(lon, lat, props["base_height"][k], range_m=40)  # close: deeper terrain tiles load
        info = client.load_tileset("/city/buildings/tileset.json")
        assert info.failures == [] and info.errors == []
        picked = client.pick_at(lon, lat, roof, range_m=250)
        requested = [u for u in client.log.requests if "/city/" in u]
        assert client.off_host_requests() == []
        assert not client.log.console_errors and not client.log.page_errors
    h, w, _ = terrain_shot.shape
    centre = terrain_shot[h // 3: 2 * h // 3, w // 3: 2 * w // 3].reshape(-1, 3)
    globe = np.array([47, 79, 79])  # the harness's empty-globe colour (DARKSLATEGRAY)
    assert np.mean(np.abs(centre - globe).sum(axis=1) > 12) > 0.95  # the implicit terrain covers the view
    for layer in ("terrain", "buildings"):
        assert any(f"/city/{layer}/subtrees/0/0/0.subtree" in u for u in requested), layer
        assert sum(f"/city/{layer}/" in u and u.endswith(".glb") for u in requested) >= 2, layer
    assert picked is not None, "no building feature under the tallest roof"
    assert picked["code"] == tallest["code"]
    assert picked["height"] == pytest.approx(tallest["height"], abs=0.01)


@pytest.mark.parametrize(("flag", "expected"), [(["--implicit"], True), (["--explicit"], False), ([], None)])
def test_cli_implicit_switch_reaches_the_build(flag, expected, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cim.build
    from cli import app

    seen = {}

    class Stop(Exception):
        pass

    def fake_build_city(out, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(cim.build, "build_city", fake_build_city)
    res = CliRunner().invoke(app, ["build", str(tmp_path / "out"), *flag, "--json"])
    assert isinstance(res.exception, Stop)
    assert seen["implicit"] is expected


def test_implicit_quadtree_keeps_each_building_inside_its_cell():
    from cim.tiling import implicit_quadtree

    rng = np.random.default_rng(7)
    k = 3000
    centre = rng.uniform(0, 1000, (k, 2))
    half = rng.uniform(1, 20, (k, 2))
    box = np.column_stack([centre - half, centre + half])
    size = half.max(axis=1)
    root = (box[:, 0].min(), box[:, 1].min(), box[:, 2].max(), box[:, 3].max())
    nodes = implicit_quadtree(box, size, root, capacity=40)
    keys = {(n.level, n.x, n.y) for n in nodes}
    assert len(keys) == len(nodes) and max(n.level for n in nodes) >= 3
    assert sorted(np.concatenate([n.content for n in nodes]).tolist()) == list(range(k))  # each building once
    across = 0
    for n in nodes:
        assert n.level == 0 or (n.level - 1, n.x >> 1, n.y >> 1) in keys
        w, s, e, nn, _, _ = implied_region([*root, 0, 0], n.level, n.x, n.y)
        b = box[n.content]
        assert (b[:, 0] >= w).all() and (b[:, 2] <= e).all() and (b[:, 1] >= s).all() and (b[:, 3] <= nn).all()
        across += max(len(n.content) - 40, 0)
        below = [m for m in nodes if m.level > n.level and (m.x >> (m.level - n.level), m.y >> (m.level - n.level))
                 == (n.x, n.y)]
        if below:  # the error is the largest building left to the descendants
            assert n.error == max(size[m.content].max() for m in below)
    assert across > 0  # some cells hold more than their capacity: buildings across their midlines


DECK_PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script src="/deck/index.js"></script></head><body style="margin:0"><div id="c" style="width:640px;height:480px">
</div><script>
const D = globalThis.deck;
window.result = {loaded: 0, errors: []};
const layer = new D.Tile3DLayer({id: "t", data: new URL(location.href).searchParams.get("tileset"),
  loadOptions: {tileset: {maximumScreenSpaceError: 1}},
  onTilesetLoad: (ts) => { window.ts = ts; const c = ts.cartographicCenter;
    deck.setProps({initialViewState: {longitude: c[0], latitude: c[1], zoom: 15, pitch: 45}}); },
  onTileLoad: () => { window.result.loaded += 1; },
  onTileError: (t, u, m) => window.result.errors.push(String(u) + " " + String(m))});
const deck = new D.Deck({parent: document.getElementById("c"), layers: [layer],
  initialViewState: {longitude: 0, latitude: 0, zoom: 1}});
function mul(a, b) { const o = new Float64Array(16);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++)
    o[4 * c + r] = a[r] * b[4 * c] + a[4 + r] * b[4 * c + 1] + a[8 + r] * b[4 * c + 2] + a[12 + r] * b[4 * c + 3];
  return o; }
function local(node) {
  if (node.matrix && node.matrix.length === 16) return Float64Array.from(node.matrix);
  const [tx, ty, tz] = node.translation || [0, 0, 0], [sx, sy, sz] = node.scale || [1, 1, 1];
  return Float64Array.from([sx, 0, 0, 0, 0, sy, 0, 0, 0, 0, sz, 0, tx, ty, tz, 1]); }
// every loaded tile's first vertices (up to 200 per primitive) as deck.gl draws them: metres east/north/up of
// the content's cartographicOrigin = content.modelMatrix x the node matrices x the (dequantized) position
window.vertices = () => { const out = [];
  for (const tile of window.ts.tiles) { const c = tile.content; if (!c || !c.gltf) continue;
    const g = c.gltf, at = (list, i) => (typeof i === "number" ? list[i] : i);
    const scene = at(g.scenes, g.scene ?? 0);
    const walk = (n, parent) => { const node = at(g.nodes, n), m = mul(parent, local(node));
      if (node.mesh !== undefined && node.mesh !== null) { const M = mul(Float64Array.from(c.modelMatrix), m);
        for (const p of at(g.meshes, node.mesh).primitives) { const acc = p.attributes.POSITION, v = acc.value;
          const k = !acc.normalized ? 1 : v instanceof Uint16Array ? 1 / 65535 : v instanceof Int16Array ? 1 / 32767
            : v instanceof Uint8Array ? 1 / 255 : 1 / 127;
          for (let i = 0; i < Math.min(v.length / 3, 200); i++) { const x = v[3 * i] * k, y = v[3 * i + 1] * k,
            z = v[3 * i + 2] * k; out.push([...Array.from(c.cartographicOrigin),
            M[0] * x + M[4] * y + M[8] * z + M[12], M[1] * x + M[5] * y + M[9] * z + M[13],
            M[2] * x + M[6] * y + M[10] * z + M[14]]); } } }
      for (const ch of node.children || []) walk(ch, m); };
    const I = Float64Array.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    (scene.nodes || []).forEach((n) => walk(n, I)); }
  return out; };
</script></body></html>"""


@pytest.mark.browser
def test_deck_gl_loads_and_places_the_implicit_buildings_like_the_explicit_ones(builds, city, tmp_path):
    """deck.gl's Tile3DLayer (the viewer's 3D Tiles client, from pydeck's bundle) reads the subtrees and draws every
    implicit tile where the explicit build's tiles are drawn: the vertices it would draw, taken to ECEF, lie on the
    footprints within 1 cm, no further than the explicit tiles' do (plus 1 cm)."""
    import time

    import pydeck

    from cim.geodesy import enu_frame
    from tests.support.browser import chromium_page
    from tests.support.http import serve_mounts

    root, _ = builds
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "index.html").write_text(DECK_PAGE)
    footprints = gpd.read_file(city.buildings)
    tree = shapely.STRtree(shapely.points(shapely.get_coordinates(footprints.geometry.to_numpy())))
    worst = {}
    for name in ("explicit", "sync"):
        mounts = {"/m": root / name, "/deck": Path(pydeck.__file__).parent / "nbextension" / "static",
                  "/p": tmp_path / "page"}
        with serve_mounts(mounts) as server, chromium_page(timeout_s=90) as browser:
            page = browser.page
            page.goto(server.url("/p/index.html?tileset=" + server.url("/m/buildings/tileset.json")))
            deadline = time.monotonic() + 90
            counts = [-1]
            while time.monotonic() < deadline:  # until the number of loaded tiles stops growing for 9 s
                time.sleep(3)
                counts.append(page.evaluate("() => window.result.loaded"))
                if counts[-1] > 0 and counts[-4:] == [counts[-1]] * 4:
                    break
            result = page.evaluate("() => window.result")
            rows = np.array(page.evaluate("() => window.vertices()"), np.float64)
            requested = list(browser.log.requests)
            assert result["errors"] == [] and not browser.log.page_errors, (result, browser.log.page_errors)
        assert result["loaded"] >= 3 and len(rows) > 300, (name, result["loaded"], len(rows))
        if name == "sync":
            assert any("/m/buildings/subtrees/0/0/0.subtree" in u for u in requested)
        ecef = np.empty((len(rows), 3))
        for origin in np.unique(rows[:, :3], axis=0):  # METER_OFFSETS: east/north/up of each content's origin
            sel = (rows[:, :3] == origin).all(axis=1)
            centre = np.array(transformer("EPSG:4979", "EPSG:4978").transform(*origin))
            ecef[sel] = enu_frame(centre).to_ecef(rows[sel, 3:])
        src = from_ecef("EPSG:4547", ecef)
        _, dist = tree.query_nearest(shapely.points(src[:, :2]), return_distance=True)
        worst[name] = float(dist.max())
    print("deck.gl placement, largest distance to a footprint vertex (m):", worst)
    assert worst["sync"] < 0.01 and worst["sync"] <= worst["explicit"] + 0.01, worst
