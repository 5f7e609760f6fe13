"""Flat layers draped on the terrain (贴地), in headless Chromium over real HTTP: the heights the page gives the
vertices of a line, a polygon and points of the store against the DEM read by rasterio.

The DEM is generated here in CGCS2000 / Gauss-Krueger (EPSG:4547), so the server warps it to Web Mercator before
encoding Terrain-RGB: a tilted plane (slopes 0.30 east, 0.20 north) plus a shallow bowl. A draped vertex is the
page's bilinear interpolation of the server's Terrain-RGB tile, itself a bilinear resampling of the DEM, so it may
differ from a bilinear interpolation of the DEM itself by the Terrain-RGB step (0.1 m, rounded: 0.05) plus the
interpolation errors of both stages, bounded by (hx^2 |f_xx| + hy^2 |f_yy|) / 8 for pixel sizes hx, hy (the
bilinear error of a C2 surface; the plane part is interpolated exactly). A half-pixel or one-row shift, a swapped
axis or heights of the wrong tile all miss by metres on these slopes.

The DEM has a nodata hole of 32 x 32 cells under the road (the server encodes nodata as 0 m; the DEM lies near
1,000 m): the road's vertices there get their heights along the road between the nearest vertices around the hole,
within 1 m of the generating surface, not 0 m and not the page's ground."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from scipy.ndimage import map_coordinates

from cim.sources.crs import transformer
from tests.support.browser import wait_viewer_drawn
from tests.tiles.server_support import running_server

LON0, LAT0 = 113.30, 40.09
RES = 2.0  # DEM cell (m)
SIZE = 400  # cells: an 800-m square around LON0, LAT0
SLOPE_E, SLOPE_N, BOWL, BASE = 0.30, 0.20, 2e-4, 1000.0  # h = BASE + 0.3 dx + 0.2 dy + BOWL (dx^2 + dy^2)
VIEWPORT = (900, 600)
HOLE = (LON0 - 0.0015, LAT0 - 0.0005, 16)  # lon, lat of a nodata hole's centre (on the road), half-size in cells
MARK = (LON0 + 0.002, LAT0 + 0.001, 12.0)  # lon, lat of a red square on the orthophoto, its half-size (m)
HILL = (-330.0, 320.0, 25.0, 40.0)  # a Gaussian hill: centre east, north of the centre (m), sigma (m), height (m)
RIDGE_N = 370.0  # a line 50 m north of the hill's top, from 400 to 200 m west of the centre
PLOT = (-360.0, -240.0, RIDGE_N - 6, RIDGE_N + 6)  # a polygon around the ridge line: west, east, south, north (m)
CAP = 40.0  # a square polygon of half-size 40 m centred on the hill's top
OPAQUE = [20, 40, 230, 255]  # the two polygons' stored fill colour (the default fill is nearly transparent)


@dataclass
class Site:
    base: str
    dem: Path


def _height(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The generating surface at dx, dy metres east, north of the centre: plane + bowl + the hill (its curvature is
    nowhere near the features the draping test compares: they are more than 10 sigma from it)."""
    hill = HILL[3] * np.exp(-((dx - HILL[0]) ** 2 + (dy - HILL[1]) ** 2) / (2 * HILL[2] ** 2))
    return BASE + SLOPE_E * dx + SLOPE_N * dy + BOWL * (dx**2 + dy**2) + hill


def _lonlat(dx: float, dy: float) -> tuple[float, float]:
    cx, cy = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    lon, lat = transformer("EPSG:4547", "EPSG:4490").transform(cx + dx, cy + dy)
    return float(lon), float(lat)


def _write_dem(path: Path) -> Path:
    cx, cy = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    x0, y0 = cx - SIZE * RES / 2, cy + SIZE * RES / 2
    cols, rows = np.meshgrid(np.arange(SIZE), np.arange(SIZE))
    dx = x0 + (cols + 0.5) * RES - cx
    dy = y0 - (rows + 0.5) * RES - cy
    data = _height(dx, dy)
    hx, hy = transformer("EPSG:4326", "EPSG:4547").transform(HOLE[0], HOLE[1])
    hc, hr = int((hx - x0) / RES), int((y0 - hy) / RES)
    data[hr - HOLE[2]: hr + HOLE[2], hc - HOLE[2]: hc + HOLE[2]] = -9999
    profile = {"driver": "COG", "width": SIZE, "height": SIZE, "count": 1, "dtype": "float32", "crs": "EPSG:4547",
               "transform": from_origin(x0, y0, RES, RES), "nodata": -9999, "compress": "deflate", "blocksize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32)[None])
    return path


def _write_ortho(path: Path) -> Path:
    """An orthophoto over the DEM (1 m pixels, EPSG:4547): grey, with a red square at MARK."""
    cx, cy = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    size = int(SIZE * RES)
    x0, y0 = cx - size / 2, cy + size / 2
    mx, my = transformer("EPSG:4326", "EPSG:4547").transform(MARK[0], MARK[1])
    rgb = np.full((3, size, size), 128, np.uint8)
    c0, c1 = int(mx - MARK[2] - x0), int(mx + MARK[2] - x0)
    r0, r1 = int(y0 - my - MARK[2]), int(y0 - my + MARK[2])
    rgb[:, r0:r1, c0:c1] = np.array([230, 20, 20], np.uint8)[:, None, None]
    profile = {"driver": "COG", "width": size, "height": size, "count": 3, "dtype": "uint8", "crs": "EPSG:4547",
               "transform": from_origin(x0, y0, 1.0, 1.0), "compress": "deflate", "blocksize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)
    return path


def _layers(folder: Path) -> dict[str, Path]:
    d = 0.003  # degrees: inside the DEM's 800 m (about 0.0047 deg of longitude, 0.0036 of latitude, each way)
    road = shapely.LineString([(LON0 - d, LAT0 - 0.002), (LON0, LAT0 + 0.001), (LON0 + d, LAT0 - 0.001),
                               (LON0 + 0.008, LAT0 - 0.001)])  # the last leg leaves the DEM
    parcel = shapely.Polygon([(LON0 - 0.002, LAT0 - 0.0025), (LON0 + 0.0025, LAT0 - 0.0025),
                              (LON0 + 0.0025, LAT0 + 0.0005), (LON0 - 0.002, LAT0 + 0.0005)])
    wells = shapely.points([LON0 - 0.0015, LON0 + 0.001, LON0 + 0.002], [LAT0 + 0.0015, LAT0 - 0.001, LAT0 + 0.002])
    ridge = shapely.LineString([_lonlat(-400.0, RIDGE_N), _lonlat(-200.0, RIDGE_N)])  # behind the hill from the south
    block = shapely.box(LON0 - 0.0015, LAT0 - 0.0025, LON0 + 0.0015, LAT0)  # extruded (a height field), not draped

    def square(west: float, east: float, south: float, north: float) -> shapely.Polygon:
        return shapely.Polygon([_lonlat(west, south), _lonlat(east, south), _lonlat(east, north),
                                _lonlat(west, north)])

    plot = square(*PLOT)  # behind the hill from the south, like the ridge line
    cap = square(HILL[0] - CAP, HILL[0] + CAP, HILL[1] - CAP, HILL[1] + CAP)  # over the hill: 40 m up in its middle
    out = {}
    for name, geoms in (("roads", [road]), ("parcels", [parcel]), ("wells", list(wells)), ("blocks", [block]),
                        ("ridge", [ridge]), ("plot", [plot]), ("cap", [cap])):
        path = folder / f"{name}.gpkg"
        frame = gpd.GeoDataFrame({"name": [f"{name}{i}" for i in range(len(geoms))]}, geometry=geoms, crs="EPSG:4490")
        if name == "blocks":
            frame["height"] = 20.0
        frame.to_file(path, driver="GPKG")
        out[name] = path
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from layers import LayerStore
    from tiles.server import ServerSettings, create_app

    root = tmp_path_factory.mktemp("terrain")
    dem = _write_dem(root / "dem.tif")
    with LayerStore(root / "city.duckdb") as store:
        for name, path in _layers(root).items():
            store.import_file(path, name, theme="public_topics", security="public", title=name)
    from layers.docstore import DocumentStore, docs_path
    from layers.styles import LayerStyle

    with DocumentStore(docs_path(root / "city.duckdb")) as docs:
        for name in ("plot", "cap"):
            docs.put_style(name, LayerStyle(layer=name, default_color=OPAQUE, stroke_color=OPAQUE).to_dict())
    ortho = _write_ortho(root / "ortho.tif")
    app = create_app(ServerSettings(store=root / "city.duckdb", maps={"dem": dem, "ortho": ortho}, title="terrain",
                                    log_requests=False))
    with running_server(app) as base:
        yield Site(base, dem)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=120) as bp:
        yield bp


def _dem_bilinear(dem: Path, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Heights of the DEM (bilinear between cell centres, read by rasterio) at lon/lat, the distance (cells) from
    each place to the nearest nodata cell, and the cell size."""
    from scipy.ndimage import distance_transform_edt

    with rasterio.open(dem) as src:
        data = src.read(1, masked=True)
        x, y = transformer("EPSG:4490", src.crs).transform(lon, lat)
        col, row = ~src.transform * (np.asarray(x), np.asarray(y))
        heights = map_coordinates(data.filled(np.nan).astype(np.float64), [row - 0.5, col - 0.5], order=1,
                                  mode="nearest")
        to_nodata = map_coordinates(distance_transform_edt(~np.ma.getmaskarray(data)), [row - 0.5, col - 0.5],
                                    order=1, mode="nearest")
        return heights, to_nodata, abs(src.transform.a)


def _surface(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The heights the DEM was generated from, at lon/lat (also inside its nodata hole)."""
    cx, cy = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    x, y = transformer("EPSG:4490", "EPSG:4547").transform(lon, lat)
    return _height(np.asarray(x) - cx, np.asarray(y) - cy)


def _shot(page: Any, shown: str, view: str) -> np.ndarray:
    """(h, w, 3) int RGB of the map once loaded, with the layers whose `id` the JS condition `shown` accepts
    visible (the others hidden), seen from `view` (the JS text of a deck.gl view state)."""
    from PIL import Image

    page.evaluate(f"() => {{ const v = cimViewer.cim.viewer; for (const id of v.order) v.setVisible(id, {shown}); }}")
    page.evaluate(f"cimViewer.cim.viewer.setViewState({view})")
    wait_viewer_drawn(page, timeout_s=120)
    return np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB")).astype(int)


def _hill_shot(page: Any, layer: str | None, pitch: float = 84, zoom: float = 18) -> np.ndarray:
    """`_shot` looking north over the hill's top (the camera turning around it), the orthophoto and `layer` on."""
    lon, lat = _lonlat(HILL[0], HILL[1])
    top = float(_height(np.array(HILL[0]), np.array(HILL[1])))
    shown = repr(layer) if layer else "null"
    return _shot(page, f"id === 'map:ortho' || id === {shown}",
                 f"{{longitude: {lon}, latitude: {lat}, zoom: {zoom}, pitch: {pitch}, bearing: 0, "
                 f"position: [0, 0, {top}]}}")


def _change_at(page: Any, on: np.ndarray, off: np.ndarray, dx: float, dy: float) -> int:
    """The largest change (summed over RGB) between two shots in the 5 x 5 px around where the page projects the
    terrain's point dx, dy metres east, north of the centre."""
    h, w = off.shape[:2]
    lon, lat = _lonlat(dx, dy)
    height = float(_height(np.array(dx), np.array(dy)))
    x, y = page.evaluate(f"cimViewer.project({lon}, {lat}, {height})")[:2]
    assert 3 <= x < w - 3 and 3 <= y < h - 3, (dx, dy, x, y)
    xi, yi = int(round(x)), int(round(y))
    return int(np.abs(on[yi - 2: yi + 3, xi - 2: xi + 3] - off[yi - 2: yi + 3, xi - 2: xi + 3]).sum(axis=-1).max())


@pytest.mark.browser
@pytest.mark.slow
def test_flat_layers_lie_on_the_dem_within_its_encoding_and_interpolation_error(site: Site, browser: Any) -> None:
    page = browser.page
    page.goto(f"{site.base}/")
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=120_000)
    cfg = page.evaluate("cimViewer.cim.terrain.config")
    assert page.evaluate("cimViewer.cim.terrain.available") and cfg["name"] == "dem"
    assert cfg["url"].endswith("/maps/dem/{z}/{x}/{y}.png") and cfg["offset"] == 0
    with rasterio.open(site.dem) as src:
        valid = src.read(1, masked=True)
    # the DEM's valid heights (from a reduced copy: within a few metres of the cells' extremes on these slopes)
    assert abs(cfg["range"][0] - float(valid.min())) < 5 and abs(cfg["range"][1] - float(valid.max())) < 5
    zoom = 16.4
    for name in ("roads", "parcels", "wells"):
        page.evaluate(f"cimViewer.setVisible('layer:{name}', true)")
    page.evaluate(f"cimViewer.cim.viewer.setViewState({{longitude: {LON0 + 0.002}, latitude: {LAT0}, zoom: {zoom}, "
                  "pitch: 50, bearing: -20})")
    page.wait_for_function("cimViewer.loaded() && ['roads', 'parcels', 'wells'].every("
                           "n => cimViewer.cim.terrain.drawn('layer:' + n).length)", timeout=120_000)
    page.wait_for_timeout(500)
    tile_z = page.evaluate("Math.min(Math.round(cimViewer.cim.viewer.viewport().zoom), 18)")
    dem_z = min(tile_z, cfg["maxzoom"])

    vertices: dict[str, np.ndarray] = {}
    for name in ("roads", "parcels", "wells"):
        feats = page.evaluate(f"cimViewer.cim.terrain.drawn('layer:{name}')")
        coords: list[list[float]] = []

        def walk(c: Any) -> None:
            if isinstance(c[0], (int, float)):
                coords.append(c)
            else:
                for part in c:
                    walk(part)

        for f in feats:
            walk(f["geometry"]["coordinates"])
        vertices[name] = np.array(coords, dtype=np.float64)
        assert vertices[name].shape[1] == 3, name

    # the page's ground (where no data is near) is the DEM's mid height when no model gives one
    ground = page.evaluate("cimViewer.config.ground")
    with rasterio.open(site.dem) as src:
        a = src.read(1, masked=True)
    assert abs(ground - (float(a.min()) + float(a.max())) / 2) < 1.0
    e = cfg["extent"]
    all_v = np.concatenate(list(vertices.values()))
    inside = (all_v[:, 0] > e[0]) & (all_v[:, 0] < e[2]) & (all_v[:, 1] > e[1]) & (all_v[:, 1] < e[3])
    # the road's last leg leaves the DEM: vertices beyond its east edge take the edge's height at their latitude
    # (the DEM 10 m inside the edge, within what 8 DEM pixels of the slopes allow), not the page's ground 68 m off
    outside = vertices["roads"][vertices["roads"][:, 0] > e[2]]
    assert len(outside)
    edge_lon = np.full(len(outside), e[2] - 10 / (111_320 * math.cos(math.radians(LAT0))))
    edge, _, _ = _dem_bilinear(site.dem, edge_lon, outside[:, 1])
    assert np.abs(outside[:, 2] - edge).max() < 8 and np.abs(outside[:, 2] - ground).min() > 30, (outside, edge)
    # lines and rings are densified (a vertex at least every 1/64 tile): far more vertices than the 4 + 5 + 3 drawn
    assert inside.sum() > 60
    v = all_v[inside]
    # keep off the DEM's outermost cells, where the server's warp reads half outside the data
    margin = 3 * RES / 111_320
    keep = ((v[:, 0] > e[0] + margin / math.cos(math.radians(LAT0))) & (v[:, 0] < e[2] - margin
            / math.cos(math.radians(LAT0))) & (v[:, 1] > e[1] + margin) & (v[:, 1] < e[3] - margin))
    v = v[keep]
    reference, to_nodata, cell = _dem_bilinear(site.dem, v[:, 0], v[:, 1])
    # the nodata hole: vertices in it lie on the generating surface (linearly along the road across the hole)
    hole = to_nodata < 1
    assert hole.sum() >= 4, "the road must cross the nodata hole"
    off = np.abs(v[hole, 2] - _surface(v[hole, 0], v[hole, 1]))
    assert off.max() < 1.0, (f"{int((off >= 1).sum())} of {int(hole.sum())} vertices in the DEM's nodata hole are "
                             f"off the surface by up to {off.max():.2f} m")
    # elsewhere the DEM itself, away from the hole's rim (where the server's warp and the page's renormalized
    # bilinear read fewer cells than the reference)
    clear = to_nodata > 3
    v, reference = v[clear], reference[clear]
    assert np.ptp(reference) > 30  # the features climb the slopes: a single height cannot pass
    # Terrain-RGB pixel of the tile read (256 px) at this latitude, in metres on the ground
    pixel = 2 * math.pi * 6378137 / 256 / 2**dem_z * math.cos(math.radians(LAT0))
    curvature = 2 * BOWL  # |f_xx| = |f_yy| of the surface
    bilinear = sum((h * h * curvature + h * h * curvature) / 8 for h in (cell, pixel, 2 * pixel))
    tolerance = 0.1 + bilinear
    error = np.abs(v[:, 2] - reference)
    assert error.max() <= tolerance, (
        f"{int((error > tolerance).sum())} of {len(v)} draped vertices are off the DEM by up to {error.max():.3f} m "
        f"(tolerance {tolerance:.3f} m: 0.1 + bilinear {bilinear:.4f}); worst at {v[error.argmax()].tolist()}")
    assert not browser.log.page_errors and not browser.log.console_errors, browser.log
    assert not browser.log.off_host()


@pytest.mark.browser
@pytest.mark.slow
def test_the_base_map_lies_on_the_dem(site: Site, browser: Any) -> None:
    """The orthophoto's red square, seen at pitch 60, is where its place at the DEM's height projects, not where
    the page's ground (the DEM's mid height, about 80 m lower there) would put it."""
    page = browser.page
    page.goto(f"{site.base}/")
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=120_000)
    shot = _shot(page, "id === 'map:ortho'", f"{{longitude: {MARK[0]}, latitude: {MARK[1]}, zoom: 17, pitch: 60, "
                 "bearing: 0}")
    red = (shot[..., 0] > 180) & (shot[..., 1] < 80) & (shot[..., 2] < 80)
    assert red.sum() > 50, "the red square is not on screen"
    rows, cols = np.nonzero(red)
    seen = np.array([cols.mean(), rows.mean()])
    height = float(_surface(np.array([MARK[0]]), np.array([MARK[1]]))[0])
    ground = page.evaluate("cimViewer.config.ground")
    draped = np.array(page.evaluate(f"cimViewer.project({MARK[0]}, {MARK[1]}, {height})")[:2])
    flat = np.array(page.evaluate(f"cimViewer.project({MARK[0]}, {MARK[1]}, {ground})")[:2])
    assert np.hypot(*(draped - flat)) > 25  # the test can tell the two apart (35 px seen)
    # the square's centroid against its centre's projection (3.1 px seen): the 24-m square lies on a 0.36 slope,
    # drawn on a 32 x 32 grid of the z16 DEM's bilinear heights; the flat map's place is 35 px away
    assert np.hypot(*(seen - draped)) < 6 and np.hypot(*(seen - flat)) > 25, (seen, draped, flat)
    assert not browser.log.page_errors and not browser.log.console_errors, browser.log
    assert not browser.log.off_host()


@pytest.mark.browser
@pytest.mark.slow
def test_the_base_map_goes_on_at_the_dems_edge_height_beyond_it(site: Site, browser: Any) -> None:
    """The orthophoto's mesh over the z17 image tile across the DEM's west edge: no step between neighbouring grid
    vertices larger than the steepest slope near the edge allows (0.8) over their spacing; the vertices beyond the
    edge are drawn (they dropped to the page's ground, about 150 m above the edge there: a wall in 3D)."""
    page = browser.page
    page.goto(f"{site.base}/")
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=120_000)
    e = page.evaluate("cimViewer.cim.terrain.config.extent")
    z, n = 17, 32
    x = int((e[0] + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(LAT0))) / math.pi) / 2 * 2**z)
    mesh = page.evaluate(f"""cimViewer.cim.terrain.tileMesh({z}, {x}, {y}, {n}).then(m => m && {{
        origin: m.origin, position: Array.from(m.mesh.attributes.POSITION.value),
        indices: Array.from(m.mesh.indices.value)}})""")
    assert mesh is not None
    pos = np.array(mesh["position"], dtype=np.float64).reshape(n + 1, n + 1, 3)
    lon = pos[..., 0] + mesh["origin"][0]
    beyond = lon < e[0]
    assert 0.1 < beyond.mean() < 0.9, beyond.mean()  # the tile spans the edge
    drawn = np.zeros((n + 1) * (n + 1), bool)
    drawn[np.array(mesh["indices"], int)] = True
    drawn = drawn.reshape(n + 1, n + 1)
    assert drawn[beyond].all()
    heights = np.where(drawn, pos[..., 2], np.nan)  # steps between drawn vertices only (a DEM hole is left out)
    spacing = 2 * math.pi * 6378137 / 2**z / n * math.cos(math.radians(LAT0))  # metres between grid vertices
    steps = np.concatenate([np.abs(np.diff(heights, axis=0)).ravel(), np.abs(np.diff(heights, axis=1)).ravel()])
    steps = steps[np.isfinite(steps)]
    assert len(steps) > 1000
    assert steps.max() < 0.8 * spacing + 0.5, (steps.max(), spacing)
    assert not browser.log.page_errors and not browser.log.console_errors, browser.log


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["layer:parcels", "map:ortho", "layer:blocks"])
def test_flat_draped_and_extruded_layers_are_drawn_in_a_pitched_view(site: Site, browser: Any, layer: str) -> None:
    """At pitch 60 over a city 1,000 m up, a draped, a base map and an extruded layer still draw: their tiles are
    culled by boxes at the DEM's heights or the ground (deck.gl's default, 0 m, culled every tile of the first two
    here, and all but the nearest of the demo's extruded buildings)."""
    page = browser.page
    page.goto(f"{site.base}/")
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=120_000)
    view = f"{{longitude: {LON0}, latitude: {LAT0 - 0.001}, zoom: 17, pitch: 60, bearing: 0}}"
    empty, drawn = _shot(page, "false", view), _shot(page, f"id === {layer!r}", view)  # "false": every layer off
    changed = int((np.abs(drawn - empty).sum(axis=-1) > 30).sum())
    assert changed > 0.2 * empty.shape[0] * empty.shape[1], (layer, changed)
    assert not browser.log.page_errors and not browser.log.console_errors, browser.log


@pytest.mark.browser
@pytest.mark.slow
def test_a_draped_line_behind_a_hill_is_hidden_by_it(site: Site, browser: Any) -> None:
    """Looking north over the hill at pitch 84 (the camera turning around its top), the stretch of the line behind
    the hill is hidden: the map's pixels there are the same with the line on and off; its stretch east of the hill,
    in sight, is drawn (drawn without depth test it showed through the hill everywhere)."""
    page = browser.page
    page.goto(f"{site.base}/")
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=120_000)
    off, on = _hill_shot(page, None), _hill_shot(page, "layer:ridge")
    hidden = [_change_at(page, on, off, dx, RIDGE_N) for dx in (-345.0, -330.0, -315.0)]
    assert max(hidden) < 30, hidden
    assert _change_at(page, on, off, -265.0, RIDGE_N) > 100  # in sight east of the hill: drawn
    assert not browser.log.page_errors and not browser.log.console_errors, browser.log


@pytest.mark.browser
@pytest.mark.slow
def test_a_draped_polygon_fill_is_hidden_behind_a_hill_and_lies_on_a_hill_inside_it(site: Site, browser: Any) -> None:
    """A draped fill is depth-tested and follows the terrain inside its rings. Looking north over the hill at
    pitch 84, the stretch of a polygon behind the hill is hidden (drawn without depth test it showed through the
    hill), its stretch east of the hill is drawn; seen from above, a square over the hill is drawn over all of it
    (one triangulation between its rings lies up to 40 m under the hill's top: depth-tested, it was hidden there)."""
    page = browser.page
    page.goto(f"{site.base}/")
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=120_000)
    off, on = _hill_shot(page, None), _hill_shot(page, "layer:plot")
    hidden = [_change_at(page, on, off, dx, RIDGE_N) for dx in (-345.0, -330.0, -315.0)]
    assert max(hidden) < 30, hidden
    assert _change_at(page, on, off, -265.0, RIDGE_N) > 100  # in sight east of the hill: drawn
    off, on = _hill_shot(page, None, pitch=0, zoom=18.5), _hill_shot(page, "layer:cap", pitch=0, zoom=18.5)
    inner = [(HILL[0] + ex, HILL[1] + ny) for ex in (-30.0, -15.0, 0.0, 15.0, 30.0) for ny in (-30.0, 0.0, 30.0)]
    drawn = [_change_at(page, on, off, dx, dy) for dx, dy in inner]
    assert min(drawn) > 100, list(zip(inner, drawn, strict=True))
    assert not browser.log.page_errors and not browser.log.console_errors, browser.log


def test_terrain_config_picks_the_models_dem_and_makes_egm96_heights_ellipsoidal() -> None:
    import pyproj

    from cim.sources.vertical import EGM96_GRID
    from tiles.viewer import terrain_config

    extent = [113.29, 40.08, 113.31, 40.10]
    maps = [{"name": "ortho", "kind": "image", "formats": ["png"], "extent": extent},
            {"name": "other_dem", "kind": "dem", "formats": ["png", "webp"], "extent": extent, "minzoom": 12,
             "maxzoom": 17, "vertical_datum": "ellipsoidal"},
            {"name": "city_dem", "kind": "dem", "formats": ["png", "webp"], "extent": extent, "minzoom": 11,
             "maxzoom": 16, "vertical_datum": "egm96"}]
    assert terrain_config(maps[:1], "http://h") is None
    first = terrain_config(maps, "http://h")
    assert first is not None and (first["name"], first["offset"], first["maxzoom"]) == ("other_dem", 0.0, 17)
    own = terrain_config(maps, "http://h", model="city")
    assert own is not None and own["url"] == "http://h/maps/city_dem/{z}/{x}/{y}.png"
    if not EGM96_GRID.is_file():
        pytest.skip(f"{EGM96_GRID} is missing: Debian's proj-data (bin/setup installs it)")
    # the reference: PROJ's own vertical grid shift at the DEM's centre (h = H + N)
    pyproj.datadir.append_data_dir(str(EGM96_GRID.parent))
    shift = pyproj.Transformer.from_pipeline(f"+proj=vgridshift +grids={EGM96_GRID} +multiplier=1")
    _, _, n = shift.transform(113.30, 40.09, 0.0)
    assert own["vertical_datum"] == "egm96" and abs(own["offset"] - n) < 0.01 and abs(n) > 1
