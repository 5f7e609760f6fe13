"""Terrain: TIN tiles on a quadtree, crack-free edges, skirts, nodata, measured errors, texture, placement."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as gl
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.transform import from_origin

from cim.errors import CRSError, InputError
from cim.models.terrain import (
    DemSampler,
    TerrainOptions,
    TerrainResult,
    _pilots,
    build_terrain,
    hillshade_factor,
    texture_size,
)
from cim.sources.crs import from_ecef, parse_crs, transformer
from cim.sources.raster import NEUTRAL_RGB, OrthoReader
from tests.support.gltf_validator import assert_valid
from tests.support.paths import SHARED_DATA as SHARED
from tiles.check import check_tileset
from tiles.compression import GlbOptions
from tiles.gltf import read_glb
from tiles.tileset import Tile, Tileset, relative_transforms

CRS = "EPSG:32650"
X0, Y0, RES = 500000.0, 4400000.0, 2.0  # top-left corner of the fixtures' DEM, metres
ROWS, COLS = 300, 260
TILE_PX = 64  # 5 x 5 leaves of 64 samples -> a 4-level quadtree (8 x 8 padded)
HOLE = (slice(120, 140), slice(100, 130))
TINY_HOLES = [(200, 50), (201, 51), (50, 200)]


def _hills() -> np.ndarray:
    r, c = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    z = (
        60
        + 0.05 * c
        + 25 * np.exp(-((c - 80) ** 2 + (r - 90) ** 2) / (2 * 30**2))
        + 15 * np.exp(-((c - 190) ** 2 + (r - 210) ** 2) / (2 * 20**2))
        + 2 * np.sin(c / 7) * np.cos(r / 9)
    )
    return z.astype(np.float32)


def _write_dem(path: Path, z: np.ndarray, *, crs: str | None = CRS, nodata: float | None = None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=z.shape[1],
        height=z.shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=from_origin(X0, Y0, RES, RES),
        nodata=nodata,
    ) as dst:
        dst.write(z, 1)
    return path


def _nodata_mask() -> np.ndarray:
    """A 20 x 30 hole, a corner (square + diagonal) covering leaf tile (0, 0) entirely, three 1-cell holes."""
    r, c = np.mgrid[0:ROWS, 0:COLS]
    mask = np.zeros((ROWS, COLS), bool)
    mask[HOLE] = True
    mask[(r < 70) & (c < 70)] = True
    mask[r + c < 110] = True
    for rc in TINY_HOLES:
        mask[rc] = True
    return mask


def _gradient_rgb(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The colour the fixture ortho shows at DEM-CRS coordinates: red grows eastward, green northward."""
    red = 30 + 200 * (x - X0) / (COLS * RES)
    green = 30 + 200 * (y - (Y0 - ROWS * RES)) / (ROWS * RES)
    return np.stack([red, green, np.full_like(red, 60.0)], axis=-1)


ALPHA_EAST = X0 + COLS * RES - 80  # east of this the ortho is transparent


def _write_ortho(path: Path) -> Path:
    """RGBA in EPSG:4326 (not the DEM's CRS): a colour gradient and a transparent eastern strip."""
    to_geo = transformer(CRS, "EPSG:4326")
    lon, lat = to_geo.transform(
        np.array([X0 - 40, X0 + COLS * RES + 40]), np.array([Y0 + 40, Y0 - ROWS * RES - 40])
    )
    step = 1e-5
    width, height = int((lon[1] - lon[0]) / step), int((lat[0] - lat[1]) / step)
    tf = from_origin(lon[0], lat[0], step, step)
    cc, rr = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    glon, glat = tf @ (cc, rr)
    x, y = transformer("EPSG:4326", CRS).transform(glon, glat)
    rgb = np.clip(_gradient_rgb(x, y), 0, 255).astype(np.uint8)
    alpha = np.where(x > ALPHA_EAST, 0, 255).astype(np.uint8)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=4,
        dtype="uint8",
        crs="EPSG:4326",
        transform=tf,
        photometric="RGB",
        alpha="YES",
    ) as dst:
        dst.write(np.moveaxis(rgb, -1, 0), [1, 2, 3])
        dst.write(alpha, 4)
    return path


@pytest.fixture(scope="module")
def dem_hills(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dem(tmp_path_factory.mktemp("dem") / "dem_hills.tif", _hills())


@pytest.fixture(scope="module")
def dem_with_nodata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    z = _hills()
    z[_nodata_mask()] = -9999
    return _write_dem(tmp_path_factory.mktemp("dem") / "dem_with_nodata.tif", z, nodata=-9999)


@pytest.fixture(scope="module")
def ortho_gradient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_ortho(tmp_path_factory.mktemp("ortho") / "ortho_gradient_rgba_4326.tif")


# The terrain's own invariants (vertices on the level grid, identical shared borders, skirt depths) are checked on
# uncompressed tiles: quantization moves a vertex by up to 5 mm per axis on each tile's own grid.
# `test_compressed_tiles_keep_every_vertex_within_the_tolerance` checks that bound on the default (meshopt) output.
PLAIN = GlbOptions(compression="none")


@pytest.fixture(scope="module")
def hills(tmp_path_factory: pytest.TempPathFactory, dem_hills: Path, ortho_gradient: Path) -> Built:
    out = tmp_path_factory.mktemp("hills")
    return Built(
        out, build_terrain(dem_hills, ortho_gradient, out, TerrainOptions(tile_px=TILE_PX, texture_px=256, glb=PLAIN))
    )


@pytest.fixture(scope="module")
def holes(tmp_path_factory: pytest.TempPathFactory, dem_with_nodata: Path) -> Built:
    out = tmp_path_factory.mktemp("holes")
    return Built(out, build_terrain(dem_with_nodata, None, out,
                                    TerrainOptions(tile_px=TILE_PX, glb=PLAIN, hillshade=False)))


@pytest.fixture(scope="module")
def bare_hills(tmp_path_factory: pytest.TempPathFactory, dem_hills: Path) -> Built:
    """The hills without an orthophoto: hillshaded."""
    out = tmp_path_factory.mktemp("bare")
    return Built(out, build_terrain(dem_hills, None, out, TerrainOptions(tile_px=TILE_PX, texture_px=256, glb=PLAIN)))


def _hills_shade(col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """(n, 3) RGB the hillshade should give at DEM sample (col, row) of `_hills`: its analytic normal in
    (east, north, up) lit by `hillshade_factor`, times the neutral colour (independent of the builder's normals)."""
    c, r = col, row
    g1 = 25 * np.exp(-((c - 80) ** 2 + (r - 90) ** 2) / (2 * 30**2))
    g2 = 15 * np.exp(-((c - 190) ** 2 + (r - 210) ** 2) / (2 * 20**2))
    dz_dc = 0.05 - g1 * (c - 80) / 30**2 - g2 * (c - 190) / 20**2 + 2 * np.cos(c / 7) / 7 * np.cos(r / 9)
    dz_dr = -g1 * (r - 90) / 30**2 - g2 * (r - 210) / 20**2 - 2 * np.sin(c / 7) * np.sin(r / 9) / 9
    normal = np.column_stack([-dz_dc / RES, dz_dr / RES, np.ones_like(c)])  # rows run south: d/dnorth = -d/drow
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return np.asarray(NEUTRAL_RGB, float) * hillshade_factor(normal)[:, None]


def test_compressed_tiles_keep_every_vertex_within_the_tolerance(hills: Built, dem_hills: Path,
                                                                 ortho_gradient: Path, tmp_path: Path) -> None:
    from scipy.spatial import cKDTree

    result = build_terrain(dem_hills, ortho_gradient, tmp_path, TerrainOptions(tile_px=TILE_PX, texture_px=256))
    plain = {t.content.uri: t for t, _ in hills.result.root.walk() if t.content}
    checked = 0
    for tile, _ in result.root.walk():
        if tile.content is None:
            continue
        assert tile.transform == plain[tile.content.uri].transform
        packed = read_glb((tmp_path / tile.content.uri).read_bytes())
        exact = read_glb((hills.out / tile.content.uri).read_bytes())
        assert "EXT_meshopt_compression" in packed["json"]["extensionsRequired"]
        (a,), (b,) = packed["primitives"], exact["primitives"]
        assert len(a["positions"]) == len(b["positions"]) and len(a["indices"]) == len(b["indices"])
        # 5 mm per axis, same local frame; texture coordinates to 1/65535, normals to 1/127
        assert cKDTree(a["positions"]).query(b["positions"])[0].max() <= 0.005 * 3**0.5 + 1e-4
        assert cKDTree(b["positions"]).query(a["positions"])[0].max() <= 0.005 * 3**0.5 + 1e-4
        checked += len(a["positions"])
    assert checked > 1000


@dataclass
class Built:
    out: Path
    result: TerrainResult


@dataclass
class TileMesh:
    """A tile read back: its address, vertices in the DEM's CRS, triangles, and its tileset entry."""

    level: int
    x: int
    y: int
    depth: int  # the leaf level of the tree
    tile: Tile
    xyz: np.ndarray  # (n, 3) float64 DEM-CRS coordinates
    tris: np.ndarray  # (m, 3)
    glb: bytes

    @property
    def col(self) -> np.ndarray:
        return (self.xyz[:, 0] - X0) / RES - 0.5

    @property
    def row(self) -> np.ndarray:
        return (Y0 - self.xyz[:, 1]) / RES - 0.5

    @property
    def step(self) -> int:
        return 2 ** (self.depth - self.level)

    def surface(self) -> np.ndarray:
        """(n,) bool: vertices that are not skirt feet (a foot sits under a vertex at the same x, y)."""
        key = np.round(self.xyz[:, :2], 3)
        _, inverse = np.unique(key, axis=0, return_inverse=True)
        top = np.full(inverse.max() + 1, -np.inf)
        np.maximum.at(top, inverse.ravel(), self.xyz[:, 2])
        return self.xyz[:, 2] > top[inverse.ravel()] - 1e-3


def _meshes(built: Built) -> Iterator[TileMesh]:
    depth = built.result.levels - 1
    for tile, _ in built.result.root.walk():
        if tile.content is None:
            continue
        level, x, y = map(int, re.fullmatch(r"terrain/(\d+)/(\d+)/(\d+)\.glb", tile.content.uri).groups())
        data = (built.out / tile.content.uri).read_bytes()
        glb = read_glb(data)
        world = np.asarray(tile.transform, np.float64).reshape(4, 4).T
        pos = glb["primitives"][0]["positions"]
        ecef = pos @ world[:3, :3].T + world[:3, 3]
        yield TileMesh(level, x, y, depth, tile, from_ecef(CRS, ecef), glb["primitives"][0]["indices"], data)


def _dem_array(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, masked=True).filled(np.nan).astype(np.float64)


def _write_tileset(built: Built) -> Path:
    root = relative_transforms(built.result.root.model_copy(deep=True))
    return Tileset(geometric_error=root.geometric_error * 2 + 1, root=root).write(built.out / "tileset.json")


# --- validity and tileset structure ------------------------------------------------------------------------


def test_every_glb_passes_the_gltf_validator(hills: Built, holes: Built) -> None:
    assert_valid(hills.out / "terrain", allow_warnings=False)
    assert_valid(holes.out / "terrain", allow_warnings=False)


def test_tileset_passes_structural_checks(hills: Built, holes: Built) -> None:
    for built in (hills, holes):
        report = check_tileset(_write_tileset(built))
        assert report.ok, report.to_dict()["problems"][:5]
        assert report.contents == built.result.tiles


def test_quadtree_levels_and_uris(hills: Built) -> None:
    r = hills.result
    assert r.levels == 4
    files = sorted(p.relative_to(hills.out).as_posix() for p in (hills.out / "terrain").rglob("*.glb"))
    uris = sorted(t.content.uri for t, _ in r.root.walk() if t.content is not None)
    assert files == uris and len(uris) == r.tiles
    per_level = [sum(1 for u in uris if u.startswith(f"terrain/{level}/")) for level in range(4)]
    # 5 x 5 leaves; at level 1 (a sample every 4) the eastern tiles would hold one column (256): no triangle
    assert per_level == [1, 2, 9, 25]
    assert all(t.refine == "REPLACE" for t, _ in r.root.walk())
    assert r.bounds == (X0, Y0 - ROWS * RES, X0 + COLS * RES, Y0)
    assert r.to_dict()["tiles"] == r.tiles and json.dumps(r.to_dict())


# --- placement accuracy ------------------------------------------------------------------------------------


def test_leaf_vertices_sit_on_dem_samples_within_1cm(hills: Built, dem_hills: Path) -> None:
    dem = _dem_array(dem_hills)
    leaves = [m for m in _meshes(hills) if m.level == hills.result.levels - 1]
    assert leaves
    for m in leaves:
        col, row = np.rint(m.col).astype(int), np.rint(m.row).astype(int)
        assert np.abs(m.col - col).max() * RES < 0.01 and np.abs(m.row - row).max() * RES < 0.01
        z = dem[row, col]
        depth = m.tile.extras["skirtDepth"]
        on_surface = np.abs(m.xyz[:, 2] - z) < 0.01
        on_foot = np.abs(m.xyz[:, 2] - (z - depth)) < 0.01
        assert np.all(on_surface | on_foot), (
            f"{m.tile.content.uri}: a vertex is neither on the DEM nor a skirt foot"
        )
        assert on_surface.sum() >= 3


def test_coarse_vertices_sit_on_their_level_grid(hills: Built, dem_hills: Path) -> None:
    dem = _dem_array(dem_hills)
    for m in _meshes(hills):
        col, row = np.rint(m.col).astype(int), np.rint(m.row).astype(int)
        assert np.abs(m.col - col).max() * RES < 0.01
        assert np.all(col % m.step == 0) and np.all(row % m.step == 0)
        surface = m.surface()
        dev = m.tile.extras["terrainDeviation"]
        assert np.abs(m.xyz[surface, 2] - dem[row[surface], col[surface]]).max() <= dev + 0.01


def test_bounding_region_is_tight_around_dem_and_skirts(hills: Built, dem_hills: Path) -> None:
    dem = _dem_array(dem_hills)
    west, south, east, north, lo, hi = hills.result.root.bounding_volume.region
    xs, ys = (
        np.array([X0 + RES / 2, X0 + (COLS - 0.5) * RES]),
        np.array([Y0 - (ROWS - 0.5) * RES, Y0 - RES / 2]),
    )
    lon, lat = transformer(CRS, "EPSG:4326").transform(*np.meshgrid(xs, ys))  # the outermost samples' corners
    pad = np.degrees(0.02 / 6378137.0)
    assert np.degrees([west, south, east, north]) == pytest.approx(
        [lon.min(), lat.min(), lon.max(), lat.max()], abs=pad
    )
    z = np.concatenate([m.xyz[:, 2] for m in _meshes(hills)])
    assert (lo, hi) == pytest.approx((z.min() - 0.01, z.max() + 0.01), abs=1e-3)
    assert dem.max() - 2 * hills.result.max_error < hi < dem.max() + 0.02
    assert lo < dem.min() - hills.result.root.geometric_error  # the skirts reach below the lowest terrain


# --- cracks and skirts -------------------------------------------------------------------------------------


def _on_line(m: TileMesh, axis: str, index: int, surface: np.ndarray) -> np.ndarray:
    coord = m.col if axis == "col" else m.row
    return surface & (np.abs(coord - index) < 1e-3)


def test_same_level_neighbours_share_identical_border_polylines(hills: Built) -> None:
    by_key = {(m.level, m.x, m.y): m for m in _meshes(hills)}
    shared = 0
    for (level, x, y), a in by_key.items():
        span = TILE_PX * a.step
        for (dx, dy), axis, index, along in (
            ((1, 0), "col", (x + 1) * span, "row"),
            ((0, 1), "row", (y + 1) * span, "col"),
        ):
            b = by_key.get((level, x + dx, y + dy))
            if b is None:
                continue
            pa = a.xyz[_on_line(a, axis, index, a.surface())]
            pb = b.xyz[_on_line(b, axis, index, b.surface())]
            k = 1 if along == "row" else 0
            pa, pb = pa[np.argsort(pa[:, k])], pb[np.argsort(pb[:, k])]
            assert len(pa) == len(pb) >= 2, f"{a.tile.content.uri} / {b.tile.content.uri}"
            np.testing.assert_allclose(pa, pb, rtol=0, atol=2e-4)  # float32 local storage
            shared += 1
    assert shared >= 40


def test_every_tile_side_hangs_a_skirt_of_the_stated_depth(hills: Built, holes: Built) -> None:
    root_error = hills.result.root.geometric_error
    for built in (hills, holes):
        for m in _meshes(built):
            depth = m.tile.extras["skirtDepth"]
            assert depth >= built.result.root.geometric_error + m.tile.extras["terrainDeviation"]
            span = TILE_PX * m.step
            c0, r0 = m.x * span, m.y * span
            surface = m.surface()
            side = surface & (
                (np.abs(m.col - c0) < 1e-3)
                | (np.abs(m.col - c0 - span) < 1e-3)
                | (np.abs(m.row - r0) < 1e-3)
                | (np.abs(m.row - r0 - span) < 1e-3)
            )
            assert side.sum() >= 2
            feet = ~surface
            for p in m.xyz[side]:
                below = feet & (np.abs(m.xyz[:, 0] - p[0]) < 1e-3) & (np.abs(m.xyz[:, 1] - p[1]) < 1e-3)
                assert below.sum() == 1
                assert abs(m.xyz[below, 2][0] - (p[2] - depth)) < 0.01
            assert np.isin(np.nonzero(feet)[0], m.tris).all()
            # surface triangles face up; skirt triangles face outward, away from the tile's centre
            p = m.xyz[m.tris]
            normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
            is_skirt = feet[m.tris].any(axis=1)
            assert (normal[~is_skirt, 2] > 0).all()
            centre = np.array([X0 + (c0 + span / 2 + 0.5) * RES, Y0 - (r0 + span / 2 + 0.5) * RES])
            outward = p[is_skirt, :, :2].mean(axis=1) - centre
            assert (np.einsum("ij,ij->i", normal[is_skirt, :2], outward) > 0).all()
    assert hills.result.root.geometric_error == root_error


def _normals(data: bytes) -> np.ndarray:
    """(n, 3) NORMAL attribute of a glb's first primitive, back in the tile's z-up frame."""
    doc = gl.GLTF2.load_from_bytes(data)
    acc = doc.accessors[doc.meshes[0].primitives[0].attributes.NORMAL]
    view = doc.bufferViews[acc.bufferView]
    n = np.frombuffer(doc.binary_blob(), "<f4", count=acc.count * 3, offset=view.byteOffset or 0).reshape(
        -1, 3
    )
    return np.column_stack([n[:, 0], -n[:, 2], n[:, 1]])


def test_smooth_normals_follow_the_surface(holes: Built) -> None:
    """The neutral colour (no orthophoto, no hillshade) is lit by the client: its normals are the surface's."""
    for m in _meshes(holes):
        glb = read_glb(m.glb)["primitives"][0]
        pos, tris = glb["positions"], glb["indices"]
        normals = _normals(m.glb)
        assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5) and (normals[:, 2] > 0).all()
        surface = m.surface()
        faces = tris[surface[tris].all(axis=1)]
        fn = np.cross(pos[faces[:, 1]] - pos[faces[:, 0]], pos[faces[:, 2]] - pos[faces[:, 0]])
        acc = np.zeros_like(pos)
        for k in range(3):
            np.add.at(acc, faces[:, k], fn)
        used = np.linalg.norm(acc, axis=1) > 0
        face_avg = acc[used] / np.linalg.norm(acc[used], axis=1, keepdims=True)
        assert np.median(np.einsum("ij,ij->i", normals[used], face_avg)) > 0.99, m.tile.content.uri


# --- geometric error ---------------------------------------------------------------------------------------


def _mesh_heights_at(m: TileMesh, surface: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Linear interpolation of the surface triangles at DEM sample points, by brute force (NaN where none)."""
    tris = m.tris[surface[m.tris].all(axis=1)]
    p = np.column_stack([m.col, m.row])[tris]
    z = m.xyz[:, 2][tris]
    out = np.full(col.shape, np.nan)
    for lo in range(0, len(col), 4096):
        q = np.column_stack([col[lo : lo + 4096], row[lo : lo + 4096]])[:, None, :]
        v0, v1, v2 = p[None, :, 0], p[None, :, 1], p[None, :, 2]
        d = (v1[..., 0] - v0[..., 0]) * (v2[..., 1] - v0[..., 1]) - (v2[..., 0] - v0[..., 0]) * (
            v1[..., 1] - v0[..., 1]
        )
        l1 = (
            (q[..., 0] - v0[..., 0]) * (v2[..., 1] - v0[..., 1])
            - (v2[..., 0] - v0[..., 0]) * (q[..., 1] - v0[..., 1])
        ) / d
        l2 = (
            (v1[..., 0] - v0[..., 0]) * (q[..., 1] - v0[..., 1])
            - (q[..., 0] - v0[..., 0]) * (v1[..., 1] - v0[..., 1])
        ) / d
        l0 = 1 - l1 - l2
        inside = (l0 > -1e-6) & (l1 > -1e-6) & (l2 > -1e-6)
        hit = inside.any(axis=1)
        t = inside.argmax(axis=1)
        rows = np.arange(len(t))
        zi = l0[rows, t] * z[t, 0] + l1[rows, t] * z[t, 1] + l2[rows, t] * z[t, 2]
        out[lo : lo + 4096] = np.where(hit, zi, np.nan)
    return out


def test_geometric_error_is_the_measured_deviation_from_the_dem(hills: Built, dem_hills: Path) -> None:
    dem = _dem_array(dem_hills)
    checked = 0
    for m in _meshes(hills):
        if m.level > 1:
            continue
        span = TILE_PX * m.step
        rr, cc = np.mgrid[
            m.y * span : min((m.y + 1) * span, ROWS - 1) + 1, m.x * span : min((m.x + 1) * span, COLS - 1) + 1
        ]
        col, row = cc.ravel(), rr.ravel()
        zi = _mesh_heights_at(m, m.surface(), col.astype(float), row.astype(float))
        ok = np.isfinite(zi)
        measured = np.abs(zi[ok] - dem[row[ok], col[ok]]).max()
        assert measured == pytest.approx(m.tile.extras["terrainDeviation"], abs=2e-3)
        assert m.tile.geometric_error >= measured - 2e-3
        checked += 1
    assert checked == 1 + 2  # the root and both level-1 tiles


def test_coarser_levels_are_cheaper_and_declare_larger_errors(hills: Built) -> None:
    r = hills.result
    assert r.level_triangles == sorted(r.level_triangles) and r.level_triangles[0] < r.level_triangles[-1] / 4
    by_level: dict[int, list[float]] = {}
    for tile, depth in r.root.walk():
        by_level.setdefault(depth, []).append(tile.geometric_error)
        for child in tile.children or []:
            assert child.geometric_error <= tile.geometric_error
    assert by_level[r.levels - 1] == [0.0] * len(by_level[r.levels - 1])
    assert max(by_level[0]) > max(by_level[1]) > max(by_level[2]) > 0
    assert r.max_error == 0.5 and 0 < r.leaf_deviation <= 2 * r.max_error
    assert r.root.extras["terrainMaxError"] == 0.5


# --- nodata ------------------------------------------------------------------------------------------------


def test_no_triangle_touches_nodata_and_empty_tiles_are_absent(holes: Built) -> None:
    mask = _nodata_mask()
    for rc in TINY_HOLES:
        mask[rc] = False  # filled before triangulation
    nr, nc = np.nonzero(mask)
    leaves = [m for m in _meshes(holes) if m.level == holes.result.levels - 1]
    uris = {m.tile.content.uri for m in leaves}
    assert "terrain/3/0/0.glb" not in uris and "terrain/3/1/1.glb" in uris
    covered_tiny = np.zeros(len(TINY_HOLES), bool)
    for m in leaves:
        surface = m.surface()
        span = TILE_PX
        near = (nc >= m.x * span) & (nc <= (m.x + 1) * span) & (nr >= m.y * span) & (nr <= (m.y + 1) * span)
        if near.any():
            zi = _mesh_heights_at(m, surface, nc[near].astype(float), nr[near].astype(float))
            assert np.isnan(zi).all(), f"{m.tile.content.uri} covers a nodata sample"
        tiny = np.array(TINY_HOLES, float)
        covered_tiny |= np.isfinite(_mesh_heights_at(m, surface, tiny[:, 1], tiny[:, 0]))
    assert covered_tiny.all(), "tiny holes should be filled and triangulated"
    # next to the big hole the terrain is still there
    edge = next(m for m in leaves if (m.x, m.y) == (1, 1))
    assert np.isfinite(_mesh_heights_at(edge, edge.surface(), np.array([110.0]), np.array([117.0]))).all()


def test_hole_in_a_plane_is_left_open(tmp_path: Path) -> None:
    """A plane needs two triangles per tile; the hole must still cut them (a filled plane would hide it)."""
    r, c = np.mgrid[0:33, 0:33].astype(np.float64)
    z = (50 + 0.3 * c + 0.2 * r).astype(np.float32)
    z[10:20, 12:22] = -9999
    path = _write_dem(tmp_path / "dem_plane_with_hole.tif", z, nodata=-9999)
    built = Built(tmp_path, build_terrain(path, None, tmp_path, TerrainOptions(tile_px=32, glb=PLAIN)))
    (m,) = list(_meshes(built))
    hr, hc = np.mgrid[10:20, 12:22]
    assert np.isnan(
        _mesh_heights_at(m, m.surface(), hc.ravel().astype(float), hr.ravel().astype(float))
    ).all()
    around = np.array([[9, 12], [20, 21], [15, 11], [15, 22], [0, 0], [32, 32]], float)
    assert np.isfinite(_mesh_heights_at(m, m.surface(), around[:, 1], around[:, 0])).all()


def test_dem_without_valid_heights_is_an_input_error(tmp_path: Path) -> None:
    path = _write_dem(tmp_path / "dem_all_nodata.tif", np.full((20, 20), -9999, np.float32), nodata=-9999)
    with pytest.raises(InputError, match="no valid height"):
        build_terrain(path, None, tmp_path / "out", TerrainOptions(tile_px=8))


def test_dem_without_crs_needs_the_option(tmp_path: Path) -> None:
    path = _write_dem(tmp_path / "dem_without_crs.tif", _hills()[:40, :40], crs=None)
    with pytest.raises(CRSError, match="declares no CRS"):
        build_terrain(path, None, tmp_path / "a", TerrainOptions(tile_px=32))
    calls: list[tuple[str, int, int]] = []
    r = build_terrain(
        path,
        None,
        tmp_path / "b",
        TerrainOptions(tile_px=32, crs=CRS),
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert r.crs.to_epsg() == 32650 and r.tiles == 1 + 4  # 39 intervals per side: a root over 2 x 2 leaves
    # two waves of tasks: the TINs (per level: 4 leaves, then the root) and the 5 glbs, each from 0 to its total
    assert [c for c in calls if c[0] == "terrain"] == [("terrain", i, 5) for i in range(0, 6)]
    assert [c for c in calls if c[0] == "terrain-tins"] == [("terrain-tins", i, 4) for i in range(5)] + [
        ("terrain-tins", 0, 1), ("terrain-tins", 1, 1)]


@pytest.mark.parametrize(
    "bad", [TerrainOptions(max_error=0), TerrainOptions(tile_px=1), TerrainOptions(jpeg_quality=0)]
)
def test_bad_options_are_input_errors(tmp_path: Path, dem_hills: Path, bad: TerrainOptions) -> None:
    with pytest.raises(InputError):
        build_terrain(dem_hills, None, tmp_path, bad)


# --- texture -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, textured", [("--no-hillshade", False), ("--hillshade", True)])
def test_cli_hillshade_switch(dem_hills: Path, tmp_path: Path, flag: str, textured: bool,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """`cim build --no-hillshade`: the terrain without an orthophoto is one neutral colour (no texture)."""
    from cim.cli import main

    out = tmp_path / "city"
    with pytest.raises(SystemExit) as exc:
        main(["build", str(out), "--dem", str(dem_hills), "--level", "2", "--compression", "none",
              "--scheduler", "synchronous", flag, "--json"])
    assert exc.value.code in (0, None), capsys.readouterr().out
    root = read_glb((out / "terrain/0/0/0.glb").read_bytes())["json"]
    pbr = root["materials"][0]["pbrMetallicRoughness"]
    assert ("baseColorTexture" in pbr) is textured
    if not textured:
        assert pbr["baseColorFactor"][:3] == pytest.approx([c / 255 for c in NEUTRAL_RGB])


def _texture_and_uv(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    doc = gl.GLTF2.load_from_bytes(data)
    blob = doc.binary_blob()
    prim = doc.meshes[0].primitives[0]
    acc = doc.accessors[prim.attributes.TEXCOORD_0]
    view = doc.bufferViews[acc.bufferView]
    uv = np.frombuffer(blob, "<f4", count=acc.count * 2, offset=view.byteOffset or 0).reshape(-1, 2)
    img_view = doc.bufferViews[doc.images[0].bufferView]
    jpeg = blob[img_view.byteOffset or 0 : (img_view.byteOffset or 0) + img_view.byteLength]
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(float), uv


def test_texture_is_the_ortho_at_each_vertex_upright_and_reprojected(hills: Built) -> None:
    checked = shaded = 0
    for m in _meshes(hills):
        if m.level not in (0, 3):
            continue
        img, uv = _texture_and_uv(m.glb)
        h, w, _ = img.shape
        px = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
        py = np.clip((uv[:, 1] * h).astype(int), 0, h - 1)
        seen = img[py, px]
        expected = _gradient_rgb(m.xyz[:, 0], m.xyz[:, 1])
        inside = (
            m.surface()
            & (m.xyz[:, 0] < ALPHA_EAST - 4 * RES * m.step)
            & (m.xyz[:, 0] > X0 + 2 * RES * m.step)
        )
        if inside.any():
            assert np.abs(seen[inside] - expected[inside]).max() < 14, m.tile.content.uri
        transparent = m.surface() & (m.xyz[:, 0] > ALPHA_EAST + 4 * RES * m.step) & _inner(m)
        if transparent.any() and m.level == m.depth:  # where the ortho has no data: the DEM's hillshade
            assert np.abs(seen[transparent] - _hills_shade(m.col[transparent], m.row[transparent])).max() < 14
            shaded += int(transparent.sum())
        checked += int(inside.sum())
    assert checked > 500 and shaded > 20


def _inner(m: TileMesh) -> np.ndarray:
    """Vertices two samples or more inside the DEM (one-sided differences at its edge)."""
    return (m.col >= 2) & (m.col <= COLS - 3) & (m.row >= 2) & (m.row <= ROWS - 3)


def test_terrain_without_an_ortho_is_hillshaded(bare_hills: Built) -> None:
    checked = 0
    red = []
    for m in _meshes(bare_hills):
        img, uv = _texture_and_uv(m.glb)
        h, w, _ = img.shape
        px = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
        py = np.clip((uv[:, 1] * h).astype(int), 0, h - 1)
        seen = img[py, px]
        if m.level == m.depth:
            keep = m.surface() & _inner(m)
            expected = _hills_shade(m.col[keep], m.row[keep])
            assert np.abs(seen[keep] - expected).max() < 14, m.tile.content.uri
            checked += int(keep.sum())
        red.append(img[..., 0].ravel())
    assert checked > 500
    # the relief shows: slopes toward the sun (north-west) lighter than flat ground, slopes away darker
    lo, hi = np.percentile(np.concatenate(red), [1, 99])
    assert lo < NEUTRAL_RGB[0] - 15 and hi > NEUTRAL_RGB[0] + 15
    glb = read_glb((bare_hills.out / "terrain/0/0/0.glb").read_bytes())["json"]
    assert "baseColorTexture" in glb["materials"][0]["pbrMetallicRoughness"]
    assert_valid(bare_hills.out / "terrain", allow_warnings=False)


def test_textured_terrain_is_unlit_without_normals(hills: Built, bare_hills: Built, holes: Built) -> None:
    """An orthophoto or a hillshade carries its shading: drawn unlit (KHR_materials_unlit), no NORMAL to store.
    The neutral colour has none of its own: lit by the client, with normals."""
    for built, textured in ((hills, True), (bare_hills, True), (holes, False)):
        for m in _meshes(built):
            glb = read_glb(m.glb)["json"]
            (prim,) = glb["meshes"][0]["primitives"]
            material = glb["materials"][prim["material"]]
            unlit = "KHR_materials_unlit" in material.get("extensions", {})
            assert unlit is textured and ("NORMAL" in prim["attributes"]) is not textured, m.tile.content.uri
            assert ("KHR_materials_unlit" in glb.get("extensionsUsed", [])) is textured


def test_hillshade_factor_is_lambert_with_sky_light() -> None:
    from cim.models.terrain import SKY_LIGHT

    up = np.array([0.0, 0.0, 1.0])
    to_sun = np.array([-0.5, 0.5, np.sqrt(0.5)])
    away = np.array([0.5, -0.5, np.sqrt(0.5)])
    assert hillshade_factor(up) == pytest.approx(1.0)  # flat ground keeps the neutral colour
    assert hillshade_factor(to_sun) == pytest.approx(SKY_LIGHT + (1 - SKY_LIGHT) / np.sqrt(0.5))
    assert hillshade_factor(away) == pytest.approx(SKY_LIGHT)  # n . sun = 0: sky light only


def test_terrain_without_hillshade_is_a_neutral_colour(holes: Built) -> None:
    glb = read_glb((holes.out / "terrain/0/0/0.glb").read_bytes())["json"]
    material = glb["materials"][0]
    assert "baseColorTexture" not in material["pbrMetallicRoughness"]
    assert material["pbrMetallicRoughness"]["baseColorFactor"][:3] == pytest.approx(
        [c / 255 for c in NEUTRAL_RGB]
    )
    assert "TEXCOORD_0" not in glb["meshes"][0]["primitives"][0]["attributes"]
    assert "NORMAL" in glb["meshes"][0]["primitives"][0]["attributes"]


def test_ortho_reader_makes_alpha_and_uncovered_areas_neutral(ortho_gradient: Path) -> None:
    from affine import Affine

    from cim.sources.crs import parse_crs

    with OrthoReader(ortho_gradient) as reader:
        # a 40 x 10 strip of 10 m pixels from inside the ortho, over the transparent strip, to outside it
        tf = Affine.translation(X0 + COLS * RES - 200, Y0 - 100) @ Affine.scale(10, -10)
        rgb = reader.texture(tf, parse_crs(CRS), 40, 10)
    assert rgb.shape == (10, 40, 3) and rgb.dtype == np.uint8
    assert (
        np.abs(
            rgb[5, 2].astype(float) - _gradient_rgb(np.array(X0 + COLS * RES - 175), np.array(Y0 - 155))
        ).max()
        < 8
    )
    assert (rgb[5, 20] == NEUTRAL_RGB).all()  # transparent in the ortho
    assert (rgb[5, 39] == NEUTRAL_RGB).all()  # beyond the ortho
    fill = np.zeros((10, 40, 3), np.uint8)
    fill[..., 2] = 200
    with OrthoReader(ortho_gradient) as reader:
        filled = reader.texture(tf, parse_crs(CRS), 40, 10, fill=fill)
    assert (filled[5, 20] == (0, 0, 200)).all() and (filled[5, 39] == (0, 0, 200)).all()
    assert (filled[5, 2] == rgb[5, 2]).all()  # where the ortho has data, the ortho
    # a fill given as a function is made only when some pixel has no data, and draws the same
    calls: list[int] = []

    def made() -> np.ndarray:
        calls.append(1)
        return fill

    with OrthoReader(ortho_gradient) as reader:
        assert np.array_equal(reader.texture(tf, parse_crs(CRS), 40, 10, fill=made), filled) and len(calls) == 1
        inside = Affine.translation(X0 + 100, Y0 - 100) @ Affine.scale(10, -10)
        assert np.array_equal(reader.texture(inside, parse_crs(CRS), 4, 4, fill=made),
                              reader.texture(inside, parse_crs(CRS), 4, 4)) and len(calls) == 1


def test_pilots_are_spread_over_each_level_of_more_than_one_tile():
    keys = sorted([(0, 0, 0)] + [(1, x, y) for x in range(2) for y in range(2)]
                  + [(2, x, y) for x in range(4) for y in range(4)] + [(3, x, y) for x in range(8) for y in range(5)])
    picked = [keys[i] for i in _pilots(keys)]
    by_level = {lv: [k for k in picked if k[0] == lv] for lv in range(4)}
    assert by_level[0] == []  # one tile: it chooses from the whole ladder beside the others
    assert by_level[1] == [(1, 1, 0)] and by_level[2] == [(2, 2, 0)]  # one per 16 tiles, the middle one
    assert by_level[3] == [(3, 1, 1), (3, 4, 0), (3, 6, 3)]  # 40 tiles: 3 (the most), spread evenly


def test_texture_size_stops_at_the_orthophotos_pixels():
    assert texture_size(512, 1024.0) == 512  # the sample city's leaves: 1 m texels from a 0.5 m orthophoto
    assert texture_size(512, 300.0) == 300 and texture_size(512, 301.0) == 304  # multiples of 4 (KTX2)
    assert texture_size(512, float("inf")) == 512 and texture_size(512, 2.0) == 8


def test_leaf_textures_hold_no_more_texels_than_the_orthophoto_has_there(hills: Built, ortho_gradient: Path) -> None:
    with OrthoReader(ortho_gradient) as reader:
        gsd = reader.pixel_size(parse_crs(CRS))
    assert 0.8 < gsd < 0.9  # 1e-5 degrees of longitude, in metres
    sizes = {}
    for m in _meshes(hills):
        img, _ = _texture_and_uv(m.glb)
        sizes[m.level] = img.shape[:2]
        assert img.shape[0] <= max(8, 4 * np.ceil(TILE_PX * m.step * RES / gsd / 4))
    # leaves span 128 m: about 150 orthophoto pixels, not the 256 asked for; the root keeps 256
    assert sizes[0] == (256, 256) and 148 <= sizes[hills.result.levels - 1][0] <= 156


def _write_jpeg_cog(path: Path, size: int = 1024, res: float = 0.5) -> Path:
    """An orthophoto as a JPEG COG with JPEG overviews (averaged), the way orthophotos usually come: colour fields
    and fine texture, in the DEM's CRS."""
    import rasterio.shutil
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(11)
    fields = gaussian_filter(rng.random((size, size, 3)) * 255, (12, 12, 0)) * 4 - 380
    rgb = np.clip(fields + gaussian_filter(rng.normal(0, 30, (size, size, 3)), (0.8, 0.8, 0)), 0, 255)
    tmp = path.with_suffix(".plain.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(X0, Y0, res, res), photometric="RGB") as dst:
        dst.write(np.moveaxis(rgb.astype(np.uint8), -1, 0))
    rasterio.shutil.copy(tmp, path, driver="COG", compress="JPEG", quality=75, blocksize=128,
                         overview_resampling="average", overviews="AUTO")
    return path


def test_ortho_texture_is_read_finer_than_the_overview_and_no_worse_than_jpeg_85_of_it(tmp_path: Path) -> None:
    """Against the orthophoto's own pixels: texels averaged from twice the resolution beat the overview of the
    texture's size (a second JPEG generation), and the WebP chosen is at least as good as JPEG 85 of that
    overview's texture (what builds wrote before) by PSNR and SSIM, in fewer bytes."""
    from affine import Affine

    from cim.models.terrain import ortho_texture
    from tiles.textures import image_quality

    ortho = _write_jpeg_cog(tmp_path / "ortho.tif")
    with rasterio.open(ortho) as src:
        assert src.overviews(1) == [2, 4, 8]
        source = np.moveaxis(src.read(), 0, -1)
    extent = Affine.translation(X0, Y0) @ Affine.scale(512.0, -512.0)  # the whole orthophoto: 1024 pixels
    crs = parse_crs(CRS)
    with OrthoReader(ortho) as reader:
        old = reader.texture(extent @ Affine.scale(1 / 512), crs, 512, 512)  # from the 2x overview
        before = io.BytesIO()
        Image.fromarray(old).save(before, "JPEG", quality=85)
        jpeg_finer, mime, _ = ortho_texture(reader, crs, extent, 512, 1024.0, None, GlbOptions(textures="original"),
                                            85)
        webp, webp_mime, chosen = ortho_texture(reader, crs, extent, 512, 1024.0, None, GlbOptions(), 85)
        # from a start below the quality it needs (a level's pilots chose less): searched above, as good
        from_start, _, above = ortho_texture(reader, crs, extent, 512, 1024.0, None, GlbOptions(), 85, start=20)
        # a set texture_quality skips the choice
        fixed, _, none = ortho_texture(reader, crs, extent, 512, 1024.0, None, GlbOptions(texture_quality=50), 85)
    assert mime == "image/jpeg" and webp_mime == "image/webp"

    def quality(data: bytes) -> tuple[float, float]:
        return image_quality(source, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))

    q_before, q_finer, q_webp = quality(before.getvalue()), quality(jpeg_finer), quality(webp)
    assert q_finer[0] > q_before[0] + 0.3 and q_finer[1] > q_before[1]  # the same JPEG 85, from finer pixels
    # chosen against the pixels read at twice the resolution: here the source itself
    assert q_webp[0] >= q_before[0] and q_webp[1] >= q_before[1]
    assert len(webp) < len(before.getvalue())
    assert chosen is not None and above is not None and above > 20
    q_start = quality(from_start)
    assert q_start[0] >= q_before[0] and q_start[1] >= q_before[1]
    assert none is None and Image.open(io.BytesIO(fixed)).format == "WEBP"


# --- DemSampler --------------------------------------------------------------------------------------------


def test_dem_sampler_is_bilinear_and_nan_outside_or_at_nodata(tmp_path: Path) -> None:
    r, c = np.mgrid[0:30, 0:40].astype(np.float64)
    z = (100 + 0.5 * c - 0.25 * r + 0.01 * c * r).astype(np.float32)  # bilinear: reproduced exactly
    z[20:25, 30:35] = -9999
    path = _write_dem(tmp_path / "dem_bilinear_with_nodata.tif", z, nodata=-9999)
    with DemSampler(path) as dem:
        cs = np.array([3.25, 10.5, 0.0, 38.9])
        rs = np.array([7.75, 0.0, 28.5, 1.1])
        x, y = X0 + (cs + 0.5) * RES, Y0 - (rs + 0.5) * RES
        expected = 100 + 0.5 * cs - 0.25 * rs + 0.01 * cs * rs
        np.testing.assert_allclose(dem.heights(x, y), expected, atol=1e-4)
        far = dem.heights(np.array([X0 - 5, X0 + 10]), np.array([Y0 - 10, Y0 + 1]))
        assert np.isnan(far).all()
        assert np.isnan(dem.heights(np.array([X0 + 32.0 * RES]), np.array([Y0 - 22.0 * RES])))[0]
        # the outer half cell takes the edge value
        assert dem.heights(np.array([X0 + 0.1]), np.array([Y0 - 0.1]))[0] == pytest.approx(100.0)
        inside = dem.samples_in(shapely.box(X0 + 2 * RES, Y0 - 4 * RES, X0 + 4 * RES, Y0 - 2 * RES))
        cells = [(2, 2), (2, 3), (3, 2), (3, 3)]  # (row, col) of the four centres inside
        assert sorted(inside) == pytest.approx(
            sorted(100 + 0.5 * c - 0.25 * r + 0.01 * c * r for r, c in cells), abs=1e-4
        )
        assert dem.crs.to_epsg() == 32650


# --- real data ---------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_delft_dtm_builds_validates_and_lands_in_delft(tmp_path: Path) -> None:
    path = SHARED / "dem" / "delft_ahn3_dtm_0.5m.tif"
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    result = build_terrain(path, None, tmp_path)
    built = Built(tmp_path, result)
    assert_valid(tmp_path / "terrain", allow_warnings=False)
    report = check_tileset(_write_tileset(built))
    assert report.ok, report.to_dict()["problems"][:5]
    west, south, east, north, lo, hi = result.root.bounding_volume.region
    lon, lat = np.degrees((west + east) / 2), np.degrees((south + north) / 2)
    assert abs(lon - 4.37) < 0.05 and abs(lat - 52.0) < 0.05
    dem = _dem_array(path)
    with rasterio.open(path) as src:
        tf = src.transform
    leaf = next(t for t, d in result.root.walk() if t.content is not None and not t.children)
    world = np.asarray(leaf.transform, np.float64).reshape(4, 4).T
    pos = read_glb((tmp_path / leaf.content.uri).read_bytes())["primitives"][0]["positions"]
    xyz = from_ecef(result.crs, pos @ world[:3, :3].T + world[:3, 3])
    col, row = ~tf @ (xyz[:, 0], xyz[:, 1])
    ci, ri = np.rint(col - 0.5).astype(int), np.rint(row - 0.5).astype(int)
    assert np.abs(col - 0.5 - ci).max() * tf.a < 0.01
    z = dem[ri, ci]
    near = np.abs(xyz[:, 2] - z) < 0.01
    assert near.sum() > 0.5 * len(z)
    feet = ~near
    assert np.allclose(xyz[feet, 2], z[feet] - leaf.extras["skirtDepth"], atol=0.01)
