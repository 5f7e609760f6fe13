"""Real desktop clients against `cim serve`: QGIS 3.22 (Debian's `python3-qgis`, headless, one process for every
check: tests/support/qgis_client.py) and GDAL's command-line OGC API - Features, WMTS and WMS drivers (Debian's
`gdal-bin`). What they draw is checked against the data itself: the orthophoto COG is a colour gradient (red grows
eastwards, green southwards, blue 128), vector symbols must sit on the store's features in the style document's
colour, and feature counts and attributes must equal the store's.

Both clients come from Debian packages that `bin/setup` installs; the tests skip, saying why, where they are missing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.tiles.server_support import build_store, running_server, write_dem_cog, write_ortho_cog

pytestmark = pytest.mark.slow
QGIS_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "qgis_client.py"


def _has_qgis() -> str | None:
    if not Path(QGIS_PYTHON).is_file():
        return f"{QGIS_PYTHON} is missing"
    r = subprocess.run([QGIS_PYTHON, "-c", "import qgis.core"], capture_output=True, text=True, check=False,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    return None if r.returncode == 0 else "Debian's python3-qgis is not installed (bin/setup installs it as root)"


@dataclass
class Desktop:
    """A server over generated data, its request log, and the key of a confidential scope."""

    base: str
    key: str
    store: Any
    log: list[str]
    work: Path
    extents: dict[str, list[float]]


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    from layers import LayerStore
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path

    root = tmp_path_factory.mktemp("desktop")
    store = build_store(root / "city.duckdb", root / "src")
    ortho = write_ortho_cog(root / "ortho.tif")
    with AccessStore(access_path(store)) as acc:
        key = acc.create("confidential", "desktop clients").key
    settings = ServerSettings(store=store, maps={"ortho": ortho, "secret_ortho": ortho,
                                                 "dem": write_dem_cog(root / "dem.tif")},
                              security={"secret_ortho": "internal"}, log_requests=True)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("cim.server")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    app = create_app(settings)
    try:
        with running_server(app) as base, LayerStore(store, read_only=True) as s:
            ext = {name: list(s.info(name).extent) for name in ("shelters", "hazards", "sensors")}
            from tiles.raster import RasterMap

            ext["ortho"] = list(RasterMap("o", ortho, "image").info.bounds)
            yield Desktop(base, key, s, lines, root, ext)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# --------------------------------------------------------------------------------------------------- references
def _rgba(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA")).astype(int)


def assert_gradient(img: np.ndarray, what: str, min_coverage: float = 0.2) -> None:
    """The sample orthophoto as drawn: red grows eastwards, green southwards, blue is 128."""
    alpha = img[..., 3] > 0
    assert alpha.mean() > min_coverage, f"{what}: only {alpha.mean():.0%} of the image is drawn"
    rows, cols = np.nonzero(alpha)
    r, g, b = (img[rows, cols, i] for i in range(3))
    assert np.corrcoef(cols, r)[0, 1] > 0.95, f"{what}: red does not grow eastwards"
    assert np.corrcoef(rows, g)[0, 1] > 0.95, f"{what}: green does not grow southwards"
    assert abs(np.median(b) - 128) <= 3, f"{what}: blue is {np.median(b)}, not 128"


def _pixels(extent: list[float], size: tuple[int, int], crs: str, lon: np.ndarray, lat: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    from cim.sources.crs import transformer

    x, y = (lon, lat) if crs != "EPSG:3857" else transformer("EPSG:4490", "EPSG:3857").transform(lon, lat)
    w, s, e, n = extent
    col = (np.asarray(x) - w) / (e - w) * size[0]
    row = (n - np.asarray(y)) / (n - s) * size[1]
    return col.astype(int), row.astype(int)


def assert_symbols_on_features(img: np.ndarray, info: dict[str, Any], lon: np.ndarray, lat: np.ndarray,
                               rgb: tuple[int, int, int], what: str, min_alpha: int = 100) -> None:
    """At (nearly) every feature's place the image shows the style's colour (polygon fills are translucent: pass
    a lower `min_alpha`)."""
    col, row = _pixels(info["extent"], (img.shape[1], img.shape[0]), info["crs"], lon, lat)
    inside = (col >= 1) & (row >= 1) & (col < img.shape[1] - 1) & (row < img.shape[0] - 1)
    assert inside.mean() > 0.9, what
    hits = 0
    for c, r in zip(col[inside], row[inside], strict=True):
        patch = img[r - 1:r + 2, c - 1:c + 2].reshape(-1, 4)
        hits += bool(((patch[:, 3] > min_alpha) & (np.abs(patch[:, :3] - rgb).max(axis=1) < 60)).any())
    assert hits / inside.sum() > 0.9, f"{what}: {hits} of {inside.sum()} features show the style colour {rgb}"
    assert (img[..., 3] > 0).mean() < 0.6, f"{what}: symbols cover the whole image"


def _points(d: Desktop, name: str) -> tuple[np.ndarray, np.ndarray]:
    gdf = d.store.query(name)
    c = gdf.geometry.representative_point()
    return c.x.to_numpy(), c.y.to_numpy()


def _style_rgb(d: Desktop, name: str, key: str | None = None) -> tuple[int, int, int]:
    import httpx

    doc = httpx.get(f"{d.base}/styles/layers/{name}", auth=("t", key) if key else None, timeout=30).json()
    paint = doc["layers"][0]["paint"]
    css = paint.get("circle-color") or paint.get("fill-color") or paint.get("line-color")
    return tuple(int(v) for v in css[4:-1].split(","))  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------------- QGIS
def run_qgis(desktop: Desktop) -> dict[str, Any]:
    """One headless QGIS run of every check (tests/support/qgis_client.py); its answer plus the requests it made."""
    reason = _has_qgis()
    if reason:
        pytest.skip(reason)
    out = desktop.work / "qgis"
    out.mkdir()
    job = {"base": desktop.base, "key": desktop.key, "out": str(out), "profile": str(desktop.work / "qgis-profile"),
           "size": 256, "collections": ["shelters", "sensors", "hazards"], "extents": desktop.extents}
    start = len(desktop.log)
    r = subprocess.run([QGIS_PYTHON, str(SCRIPT)], input=json.dumps(job), capture_output=True, text=True,
                       check=False, timeout=600, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-3000:]
    result = json.loads(r.stdout)
    result["requests"] = desktop.log[start:]
    return result


def check_qgis_wmts_on_both_tile_matrix_sets_and_the_kvp_url(qgis: dict[str, Any]) -> None:
    for name in ("wmts_WebMercatorQuad", "wmts_CGCS2000Quad", "wmts_kvp"):
        info = qgis[name]
        assert info["valid"] and not info["render_errors"], (name, info)
        assert_gradient(_rgba(info["png"]), f"QGIS {name}")
    # QGIS asks tiles by KVP GetTile (the capabilities offer KVP and RESTful), on the tile matrix set it was given
    tiles = [ln for ln in qgis["requests"] if "REQUEST=GetTile" in ln and "LAYER=ortho&" in ln]
    assert {"TILEMATRIXSET=WebMercatorQuad", "TILEMATRIXSET=CGCS2000Quad"} <= {
        p for ln in tiles for p in ln.split("&") if p.startswith("TILEMATRIXSET=")}
    assert all(" 200 " in ln for ln in tiles)
    # QGIS appended SERVICE=WMS&REQUEST=GetCapabilities to the KVP URL and got the WMTS document
    assert any("/wmts?" in ln and "SERVICE=WMS" in ln.upper() and " 200 " in ln for ln in qgis["requests"])


def check_qgis_hidden_map_needs_the_basic_key(qgis: dict[str, Any]) -> None:
    assert not qgis["wmts_hidden_anonymous"]["valid"]
    for name in ("wmts_hidden_keyed", "wmts_basic_prefix"):
        keyed = qgis[name]
        assert keyed["valid"], keyed
        assert_gradient(_rgba(keyed["png"]), f"QGIS {name}")
    assert any("/basic/" in ln and "secret_ortho" in ln and " 200 " in ln for ln in qgis["requests"])


def check_qgis_wms_and_xyz(qgis: dict[str, Any], desktop: Desktop) -> None:
    for name in ("wms_ortho_EPSG:3857", "wms_ortho_EPSG:4490", "wms_ortho_EPSG:4326", "xyz"):
        info = qgis[name]
        assert info["valid"] and not info["render_errors"], (name, info)
        assert_gradient(_rgba(info["png"]), f"QGIS {name}")
    lon, lat = _points(desktop, "shelters")
    assert_symbols_on_features(_rgba(qgis["wms_shelters"]["png"]), qgis["wms_shelters"], lon, lat,
                               _style_rgb(desktop, "shelters"), "QGIS WMS shelters")
    lon, lat = _points(desktop, "hazards")
    assert_symbols_on_features(_rgba(qgis["wms_hazards_keyed"]["png"]), qgis["wms_hazards_keyed"], lon, lat,
                               _style_rgb(desktop, "hazards", desktop.key), "QGIS WMS hazards (Basic key)", 20)


def check_qgis_ogc_api_features_anonymous_and_keyed(qgis: dict[str, Any], desktop: Desktop) -> None:
    f = qgis["oapif"]
    for name in ("shelters", "sensors", "hazards"):
        count = desktop.store.count(name)
        assert f[f"keyed/{name}"]["valid"] and f[f"keyed/{name}"]["count"] == count, name
        first = desktop.store.query(name, where="fid = 1").drop(columns=["fid", "geometry"]).iloc[0].to_dict()
        got = f[f"keyed/{name}"]["first"]
        assert {k: (v.item() if hasattr(v, "item") else v) for k, v in first.items()} == got, name
    assert f["anonymous/shelters"]["count"] == desktop.store.count("shelters")
    assert not f["anonymous/sensors"]["valid"] and not f["anonymous/hazards"]["valid"]
    # the browser follows the landing page's links itself: anonymous sees the public layer, the Basic key all three
    assert qgis["browser"] == {"anonymous": ["Shelters"], "keyed": ["Hazards", "Sensors", "Shelters"]}
    # pages as large as /api's limit maximum allows QGIS to ask: 200 shelters in one page, not 10 or 20
    pages = [ln for ln in qgis["requests"] if "/collections/shelters/items?" in ln and "limit=" in ln]
    limits = {int(ln.split("limit=")[1].split("&")[0].split(" ")[0]) for ln in pages}
    assert max(limits) >= 1000, pages


def check_qgis_vector_tiles_through_the_style_document(qgis: dict[str, Any], desktop: Desktop) -> None:
    for name, key in (("shelters", None), ("hazards", desktop.key)):
        vt = qgis[f"vector_tiles_{name}"]
        assert vt["valid"] and vt["style_loaded"], vt
        rgb = _style_rgb(desktop, name, key)
        colors = {s["color"] for s in vt["styles"]}
        assert "#{:02x}{:02x}{:02x}".format(*rgb) in colors, (vt["styles"], rgb)
        lon, lat = _points(desktop, name)
        assert_symbols_on_features(_rgba(vt["png"]), vt, lon, lat, rgb, f"QGIS vector tiles {name}",
                                   100 if name == "shelters" else 20)


def test_qgis_against_the_server(desktop: Desktop) -> None:
    """Everything QGIS did, checked in one test: QGIS starts slowly, and pytest-xdist would start it once per worker
    for a module's separate tests."""
    qgis = run_qgis(desktop)
    check_qgis_wmts_on_both_tile_matrix_sets_and_the_kvp_url(qgis)
    check_qgis_hidden_map_needs_the_basic_key(qgis)
    check_qgis_wms_and_xyz(qgis, desktop)
    check_qgis_ogc_api_features_anonymous_and_keyed(qgis, desktop)
    check_qgis_vector_tiles_through_the_style_document(qgis, desktop)


# --------------------------------------------------------------------------------------------------------- GDAL
def _gdal(args: list[str], work: Path, key: str | None = None, auth: str = "BASIC"
          ) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is missing: Debian's gdal-bin (bin/setup installs it as root)")
    # GDAL's WMS/WMTS drivers cache tiles in ./gdalwmscache unless told otherwise: each run gets its own cache (no
    # tile of an earlier, differently keyed run) in the test's folder `work`, which pytest removes
    env = {**os.environ, "GDAL_HTTP_TIMEOUT": "60", "GDAL_DISABLE_READDIR_ON_OPEN": "YES",
           "GDAL_DEFAULT_WMS_CACHE_PATH": tempfile.mkdtemp(prefix="gdal-wms-cache-", dir=work)}
    for k in ("GDAL_DATA", "PROJ_DATA", "PROJ_LIB"):  # the venv's rasterio data is not Debian GDAL's
        env.pop(k, None)
    if key:
        env.update(GDAL_HTTP_AUTH=auth, GDAL_HTTP_USERPWD=f"gdal:{key}")
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, check=False)


def test_gdal_ogc_api_features_anonymous_and_keyed(desktop: Desktop) -> None:
    anon = _gdal(["ogrinfo", "-ro", "-q", f"OAPIF:{desktop.base}"], desktop.work)
    assert anon.returncode == 0, anon.stderr
    assert "shelters" in anon.stdout and "hazards" not in anon.stdout
    keyed = _gdal(["ogrinfo", "-ro", "-q", f"OAPIF:{desktop.base}"], desktop.work, desktop.key)
    assert all(n in keyed.stdout for n in ("shelters", "sensors", "hazards")), keyed.stdout
    out = desktop.work / "hazards.geojson"
    r = _gdal(["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{desktop.base}", "hazards"], desktop.work,
              desktop.key)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert len(doc["features"]) == desktop.store.count("hazards")
    store = desktop.store.query("hazards").set_index("name")
    assert sorted(f["properties"]["name"] for f in doc["features"]) == sorted(store.index)
    for feat in doc["features"]:
        assert feat["properties"]["level"] == store.loc[feat["properties"]["name"], "level"]


def test_gdal_sends_its_login_after_the_challenge_under_basic(desktop: Desktop) -> None:
    """The ArcGIS flow: a client that sends credentials only when challenged (curl's ANY: ask, get 401 Basic,
    answer) sees the keyed collections under /basic; anonymous at the root it would see the public one only."""
    r = _gdal(["ogrinfo", "-ro", "-q", f"OAPIF:{desktop.base}/basic"], desktop.work, desktop.key, auth="ANY")
    assert r.returncode == 0, r.stderr
    assert all(n in r.stdout for n in ("shelters", "sensors", "hazards")), r.stdout
    root = _gdal(["ogrinfo", "-ro", "-q", f"OAPIF:{desktop.base}"], desktop.work, desktop.key, auth="ANY")
    assert "shelters" in root.stdout and "hazards" not in root.stdout
    challenged = [ln for ln in desktop.log if " /basic" in ln and " 401 " in ln]
    assert challenged, "GDAL was not challenged"


@pytest.mark.parametrize(("tms", "crs"), [("WebMercatorQuad", "EPSG:3857"), ("CGCS2000Quad", "EPSG:4490")])
def test_gdal_wmts_on_both_tile_matrix_sets(desktop: Desktop, tms: str, crs: str) -> None:
    from cim.sources.crs import transformer

    w, s, e, n = desktop.extents["ortho"]
    cx, cy = (w + e) / 2, (s + n) / 2
    d = (e - w) / 4
    if crs == "EPSG:3857":
        (x0, x1), (y0, y1) = transformer("EPSG:4490", crs).transform([cx - d, cx + d], [cy - d, cy + d])
    else:
        x0, x1, y0, y1 = cx - d, cx + d, cy - d, cy + d
    out = desktop.work / f"gdal_wmts_{tms}.png"
    for name, key in (("ortho", None), ("secret_ortho", desktop.key)):
        source = f"WMTS:{desktop.base}/wmts/1.0.0/WMTSCapabilities.xml,layer={name},tilematrixset={tms}"
        r = _gdal(["gdal_translate", "-q", "-of", "PNG", "-outsize", "200", "200", "-projwin", str(x0), str(y1),
                   str(x1), str(y0), source, str(out)], desktop.work, key)
        assert r.returncode == 0, r.stderr
        assert_gradient(_rgba(out), f"GDAL WMTS {tms} {name}", min_coverage=0.9)


def test_gdal_wms(desktop: Desktop) -> None:
    w, s, e, n = desktop.extents["ortho"]
    out = desktop.work / "gdal_wms.png"
    url = (f"WMS:{desktop.base}/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=ortho&CRS=EPSG:4326"
           f"&BBOX={s},{w},{n},{e}&FORMAT=image/png")
    r = _gdal(["gdal_translate", "-q", "-of", "PNG", "-outsize", "256", "256", url, str(out)], desktop.work)
    assert r.returncode == 0, r.stderr
    assert_gradient(_rgba(out), "GDAL WMS", min_coverage=0.5)
