"""Rasters: the terrain function, DEM and DSM (roofs from the same roof model), the orthophoto rendered in
strips.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely import STRtree

from cim.sample.buildings import _roof_fraction
from cim.sample.common import (
    _FLAT,
    _SUN_AZIMUTH,
    _SUN_ELEVATION,
    _Z,
    CRS,
    GENERATOR,
    _iter_chunks,
    _rng,
    _smoothstep,
)
from cim.sample.plan import _Plan

if TYPE_CHECKING:
    from cim.sample.generator import _Generator


class _Terrain:
    """Ground height (m) as a smooth function of EPSG:4547 coordinates: basin, hills towards the edges, valley.

    Built from two coarse random grids interpolated with cubic splines, so any point (pixel centre, building
    centroid, sensor) gets the same height whatever grid it is evaluated on.
    """

    def __init__(self, plan: _Plan, seed: int) -> None:
        from scipy import ndimage

        rng = _rng(seed, 4)
        self.plan = plan
        self.hill_step, self.wave_step = 400.0, 150.0
        self.hills = ndimage.spline_filter(rng.standard_normal((int(plan.side / self.hill_step) + 5,) * 2))
        self.waves = ndimage.spline_filter(rng.standard_normal((int(plan.side / self.wave_step) + 5,) * 2))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        p = self.plan
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        u, v = x - p.x0, y - p.y0

        def field_(grid: np.ndarray, step: float) -> np.ndarray:
            coords = np.stack([v.ravel() / step + 2, u.ravel() / step + 2])
            return ndimage.map_coordinates(grid, coords, order=3, prefilter=False, mode="nearest").reshape(x.shape)

        rho = np.hypot(x - (p.cx + 450), y - p.cy) / (p.side / 2)
        hills = 30.0 * _smoothstep((rho - 0.55) / 0.6) * np.clip(1.0 + field_(self.hills, self.hill_step), 0, None)
        dx = x - p.river_x(y)
        valley = -7.0 * np.exp(-((dx / 260.0) ** 2)) - 2.8 * np.clip(1 - (dx / (p.river_half + 1)) ** 2, 0, 1)
        return 1042.0 + 0.003 * v + hills + 1.2 * field_(self.waves, self.wave_step) + valley


def _raster_profile(n: int, transform: Any, res: float) -> dict[str, Any]:
    return {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "float32", "crs": CRS,
            "transform": transform, "nodata": -9999.0, "compress": "deflate", "predictor": 3, "zlevel": 9,
            "tiled": True, "blockxsize": 256, "blockysize": 256}


def _pixel_xy(p: _Plan, res: float, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p.x0 + (cols + 0.5) * res, p.y0 + p.side - (rows + 0.5) * res


def _tree_dome(tr: dict[str, np.ndarray], t: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Crown height above ground at points of tree `t` (a flattened dome)."""
    d = np.hypot(px - tr["x"][t], py - tr["y"][t]) / tr["r"][t]
    return tr["h"][t] * (0.6 + 0.4 * np.sqrt(np.clip(1 - d * d, 0, 1)))


def _write_dem_dsm(gen: _Generator, dem_path: Path, dsm_path: Path, res: float) -> None:
    """DEM from the terrain function; DSM = terrain + roofs (same roof model as the heights) + tree crowns."""
    import rasterio
    import rasterio.features
    from rasterio.transform import from_origin

    p, bl, tr = gen.plan, gen.bl, gen.trees
    n = int(round(p.side / res))
    transform = from_origin(p.x0, p.y0 + p.side, res, res)
    dem = np.empty((n, n), np.float32)
    cols = np.arange(n)
    for r0, r1 in _iter_chunks(n, 256):
        px, py = _pixel_xy(p, res, np.arange(r0, r1)[:, None], cols[None, :])
        dem[r0:r1] = np.round(gen.terrain(np.broadcast_to(px, (r1 - r0, n)), np.broadcast_to(py, (r1 - r0, n))), 2)
    dsm = dem.copy()
    ids = rasterio.features.rasterize(zip(bl.geom, range(1, len(bl.geom) + 1)), out_shape=(n, n),
                                      transform=transform, fill=0, dtype="int32")
    rows, cc = np.nonzero(ids)
    b = ids[rows, cc] - 1
    px, py = _pixel_xy(p, res, rows, cc)
    roof = bl.base[b] + bl.eave[b] + (bl.ridge[b] - bl.eave[b]) * _roof_fraction(bl, b, px, py)
    dsm[rows, cc] = roof
    crowns = shapely.buffer(shapely.points(tr["x"], tr["y"]), tr["r"], quad_segs=4)
    if len(crowns):
        tid = rasterio.features.rasterize(zip(crowns, range(1, len(crowns) + 1)), out_shape=(n, n),
                                          transform=transform, fill=0, dtype="int32")
        tid[ids > 0] = 0
        rows, cc = np.nonzero(tid)
        px, py = _pixel_xy(p, res, rows, cc)
        dsm[rows, cc] = dem[rows, cc] + _tree_dome(tr, tid[rows, cc] - 1, px, py)
    dsm = np.round(np.maximum(dsm, dem), 2)
    for path, data, desc in ((dem_path, dem, "terrain height"), (dsm_path, dsm, "surface height")):
        with rasterio.open(path, "w", **_raster_profile(n, transform, res)) as dst:
            dst.write(data, 1)
            dst.set_band_description(1, desc)
            dst.update_tags(1, units="m")
            dst.update_tags(GENERATOR=GENERATOR, SEED=str(gen.seed), N_BUILDINGS=str(gen.n))


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Per-pixel white noise in [0, 1) from global pixel indices (independent of how the image is cut)."""
    h = (ix.astype(np.uint32) * np.uint32(0x8DA6B343)) ^ (iy.astype(np.uint32) * np.uint32(0xD8163841))
    h = h ^ np.uint32((salt * 0x9E3779B1) & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(2**24)


def _value_noise(ix: np.ndarray, iy: np.ndarray, cell: float, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1) with features about `cell` pixels wide."""
    fx, fy = ix / cell, iy / cell
    x0, y0 = np.floor(fx), np.floor(fy)
    tx, ty = _smoothstep(fx - x0).astype(np.float32), _smoothstep(fy - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _hash01(x0, y0, salt), _hash01(x0 + 1, y0, salt)
    c, d = _hash01(x0, y0 + 1, salt), _hash01(x0 + 1, y0 + 1, salt)
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


class _Burner:
    """Geometries with a value each, rasterised window by window (STRtree lookup, draw order kept)."""

    def __init__(self, geoms: np.ndarray, values: np.ndarray) -> None:
        self.geoms, self.values = np.asarray(geoms, dtype=object), np.asarray(values)
        self.tree = STRtree(self.geoms)

    def burn(self, out: np.ndarray, window: Any, transform: Any, all_touched: bool = False) -> None:
        import rasterio.features

        idx = np.sort(self.tree.query(window))
        if len(idx):
            rasterio.features.rasterize(zip(self.geoms[idx], self.values[idx].tolist()), out=out,
                                        transform=transform, all_touched=all_touched)


# land-cover classes of the orthophoto and their colours (RGB) and texture strength
_GROUND, _PARK, _YARD_OLD, _YARD_NEW, _YARD_WORK, _ASPHALT, _STONE, _LANE, _BANK, _WATER, _WALL = range(11)


_COVER_RGB = np.array([[112, 124, 80], [80, 120, 60], [150, 145, 136], [126, 136, 108], [162, 160, 152],
                       [74, 76, 80], [120, 116, 110], [134, 128, 120], [128, 124, 102], [50, 78, 86],
                       [140, 122, 100]], np.float32)


_COVER_NOISE = np.array([22, 20, 14, 16, 12, 9, 12, 14, 18, 5, 16], np.float32)


def _write_ortho(gen: _Generator, path: Path, res: float, progress: Callable[[float], None]) -> None:
    """Render the orthophoto in strips of rows into a tiled GeoTIFF, then copy it to a JPEG COG."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    p, bl, tr = gen.plan, gen.bl, gen.trees
    n = int(round(p.side / res))
    transform = from_origin(p.x0, p.y0 + p.side, res, res)
    lot_zone = gen.lots["zone"]
    yard = np.full(len(lot_zone), _YARD_NEW)
    yard[np.isin(lot_zone, (_Z["courtyard"], _Z["oldshop"], _Z["temple"]))] = _YARD_OLD
    yard[np.isin(lot_zone, (_Z["commercial"], _Z["office"], _Z["industrial"], _Z["village"]))] = _YARD_WORK
    road_cls = np.where(np.asarray(p.roads.cls) == "街巷", _LANE, _ASPHALT)
    oldtown = (np.abs(np.asarray(p.roads.width) - 24) < 1e-6) | (np.asarray(p.roads.cls) == "支路")
    road_cls[oldtown] = _STONE
    river = p.river_polygon()
    cover = [
        _Burner(np.array([g for g, _ in p.parks], dtype=object), np.full(len(p.parks), _PARK)),
        _Burner(shapely.box(gen.lots["x0"], gen.lots["y0"], gen.lots["x1"], gen.lots["y1"]), yard),
        _Burner(np.array([shapely.buffer(river, p.bank)]), np.array([_BANK])),
        _Burner(np.array([river]), np.array([_WATER])),
        _Burner(p.roads.surfaces(), road_cls),
        _Burner(np.array(p.walls, dtype=object), np.full(len(p.walls), _WALL)),
    ]
    marks = _Burner(p.roads.lines()[road_cls == _ASPHALT], np.ones(int((road_cls == _ASPHALT).sum()), np.uint8))
    buildings = _Burner(bl.geom, np.arange(1, len(bl.geom) + 1))
    trees = _Burner(shapely.buffer(shapely.points(tr["x"], tr["y"]), tr["r"], quad_segs=4),
                    np.arange(1, len(tr["x"]) + 1))
    tan_el = math.tan(math.radians(_SUN_ELEVATION))
    tallest = float(np.max(bl.ridge, initial=20.0)) + 20.0
    halo = int(math.ceil(tallest / (res * tan_el * math.sqrt(2)))) + 2
    strip = 1024
    tmp = path.with_name(path.stem + ".render.tif")
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 3, "dtype": "uint8", "crs": CRS,
               "transform": transform, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "photometric": "RGB", "compress": "deflate", "zlevel": 1}
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0, r1 in _iter_chunks(n, strip):
            a, b = max(0, r0 - 2), min(n, r1 + halo)
            rgb = _render_rows(gen, res, n, a, b, cover, marks, buildings, trees, tan_el)
            dst.write(rgb[:, r0 - a: r1 - a], window=Window(0, r0, n, r1 - r0))
            progress(r1 / n * 0.85)
    rasterio.shutil.copy(tmp, path, driver="COG", compress="JPEG", quality=75, blocksize=512,
                         overview_resampling="average", overviews="AUTO")
    tmp.unlink()
    progress(1.0)


def _render_rows(gen: _Generator, res: float, n: int, a: int, b: int, cover: list[_Burner], marks: _Burner,
                 buildings: _Burner, trees: _Burner, tan_el: float) -> np.ndarray:
    """RGB (3, b - a, n) uint8 of orthophoto rows a..b: land cover, roofs, crowns, texture, hillshade, shadows."""
    from rasterio.transform import from_origin

    p, bl, tr = gen.plan, gen.bl, gen.trees
    h = b - a
    top = p.y0 + p.side - a * res
    wt = from_origin(p.x0, top, res, res)
    window = shapely.box(p.x0, top - h * res, p.x0 + p.side, top)
    cls = np.zeros((h, n), np.uint8)
    for burner in cover:
        burner.burn(cls, window, wt)
    bid = np.zeros((h, n), np.int32)
    buildings.burn(bid, window, wt)
    tid = np.zeros((h, n), np.int32)
    trees.burn(tid, window, wt)
    tid[bid > 0] = 0
    iy = np.arange(a, b)[:, None]
    ix = np.arange(n)[None, :]
    px, py = _pixel_xy(p, res, iy, ix)
    ground = gen.terrain(np.broadcast_to(px, (h, n)), np.broadcast_to(py, (h, n)))
    surface = ground.copy()
    surface[cls == _WALL] += 12.0
    rows, cols = np.nonzero(bid)
    bi = bid[rows, cols] - 1
    bx, by = _pixel_xy(p, res, rows + a, cols)
    surface[rows, cols] = bl.base[bi] + bl.eave[bi] + (bl.ridge[bi] - bl.eave[bi]) * _roof_fraction(bl, bi, bx, by)
    trow, tcol = np.nonzero(tid)
    ti = tid[trow, tcol] - 1
    tx, ty = _pixel_xy(p, res, trow + a, tcol)
    surface[trow, tcol] = ground[trow, tcol] + _tree_dome(tr, ti, tx, ty)
    # hillshade (sun from the south-east) and cast shadows by doubling the ray length each pass
    gy, gx = np.gradient(surface, res)
    gy = -gy
    az, el = math.radians(_SUN_AZIMUTH), math.radians(_SUN_ELEVATION)
    sun = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])
    shade = ((-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1) / sun[2]).astype(np.float32)
    steep = np.hypot(gx, gy) > 3.0
    shade = np.where(steep, 0.85, np.clip(shade, 0.3, 1.35)).astype(np.float32)
    reach = surface.astype(np.float32)
    s, drop = 1, res * math.sqrt(2) * tan_el
    while s < h:
        shifted = np.full_like(reach, -np.inf)
        shifted[: h - s, : n - s] = reach[s:, s:] - s * drop
        np.maximum(reach, shifted, out=reach)
        s *= 2
        if s * drop > 400:
            break
    shadow = reach > surface + 0.3
    # colours: land cover with texture, then roofs and crowns
    fine = _hash01(ix, iy, 1) - 0.5
    cell = max(1.0, 3.0 / res)
    patch = _value_noise(ix, iy, cell, 2)
    broad = _value_noise(ix, iy, max(1.0, 30.0 / res), 3)
    rgb = _COVER_RGB[cls]
    g = cls == _GROUND
    soil = np.array([156, 142, 112], np.float32)
    t = np.clip((broad - 0.35) * 2.2, 0, 1)[g][:, None]
    rgb[g] = rgb[g] * (1 - t) + soil * t
    rgb *= (0.9 + 0.2 * patch)[..., None]
    rgb += (fine * _COVER_NOISE[cls])[..., None]
    w = cls == _WATER
    if w.any():
        depth = np.clip(1 - np.abs(px - p.river_x(py)) / p.river_half, 0, 1)
        rgb[w] *= (1 - 0.25 * np.broadcast_to(depth, (h, n))[w])[:, None]
    mk = np.zeros((h, n), np.uint8)
    if res <= 1.0:
        marks.burn(mk, window, wt)
        dash = ((ix + iy) // max(1, int(3 / res))) % 2 == 0
        rgb[(mk > 0) & dash & (cls == _ASPHALT)] = (222, 222, 212)
    roof_rgb = bl.color[bi] * (1 + 0.10 * (fine[rows, cols] + patch[rows, cols] - 0.5))[:, None]
    tiled = np.isin(bl.zone[bi], (_Z["courtyard"], _Z["oldshop"], _Z["temple"])) & (bl.roof[bi] != _FLAT)
    along_x = np.abs(gx[rows, cols]) < np.abs(gy[rows, cols])
    stripe = np.where(along_x, cols % 2, (rows + a) % 2)
    roof_rgb[tiled] *= (1 - 0.12 * stripe[tiled])[:, None]
    rgb[rows, cols] = roof_rgb
    tree_tone = 0.75 + 0.5 * _hash01(ti, ti, 4)[:, None]
    rgb[trow, tcol] = np.array([52, 84, 46], np.float32) * tree_tone * (0.8 + 0.4 * patch[trow, tcol])[:, None]
    rgb *= shade[..., None]
    rgb[shadow] *= np.array([0.5, 0.53, 0.6], np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)
