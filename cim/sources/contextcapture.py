"""ContextCapture (Smart3D) productions: `metadata.xml` and the tile folders beside it.

A production is a folder with `metadata.xml` and `Data/Tile_<x>_<y>/` folders. `metadata.xml` says where the mesh
vertices are: `<SRS>` is `EPSG:n`, a WKT or `ENU:lat,lon` (a local east-north-up frame on the ellipsoid), and
`<SRSOrigin>x,y,z</SRSOrigin>` is added to every vertex first. A WKT is built from its parameters through
`cim.sources.crs.parse_crs`, which drops an authority code its parameters contradict (real productions carry such labels).
"""

from __future__ import annotations

import io
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import CRS

from cim.errors import CRSError, InputError, InputNotFoundError
from cim.geodesy import LocalFrame, enu_frame
from cim.sources import crs as crsmod

MESH_SUFFIXES = (".osgb", ".obj", ".ply", ".glb", ".gltf")
_ENU = re.compile(r"^\s*ENU\s*:\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*$", re.I)
_A = 6378137.0
_E2 = 6.69437999014e-3


@dataclass
class Georeference:
    """Where a production's vertices are on Earth.

    Attributes:
        crs: the SRS of the vertices, or None for an `ENU:lat,lon` frame.
        origin: (3,) float64 `SRSOrigin`, added to every vertex (in the SRS, or in the ENU frame).
        enu: (lat, lon) degrees of the ENU frame's origin (on the ellipsoid), or None.
        source: the file or text it came from (for messages).
    """

    crs: CRS | None
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    enu: tuple[float, float] | None = None
    source: str = "metadata.xml"

    @property
    def is_rigid(self) -> bool:
        """True when local vertices map to ECEF by one 4x4 matrix (ENU frames, geocentric SRSs)."""
        return self.enu is not None or bool(self.crs is not None and self.crs.is_geocentric)

    def rigid_matrix(self) -> np.ndarray:
        """(4, 4) float64 matrix taking local vertices (x, y, z, 1) to ECEF, for rigid georeferences."""
        if self.enu is not None:
            lat, lon = self.enu
            frame = enu_frame(geodetic_to_ecef(np.array([[lon, lat, 0.0]]))[0])
            m = frame.matrix.copy()
            m[:3, 3] = frame.to_ecef(self.origin[None, :])[0]
            return m
        if self.crs is not None and self.crs.is_geocentric:
            m = np.eye(4)
            m[:3, 3] = self.origin
            return m
        raise CRSError(f"{self.source}: SRS {self.crs.name if self.crs else None!r} is not a rigid frame")

    def to_ecef(self, local: np.ndarray) -> np.ndarray:
        """(n, 3) vertices as stored in the production to (n, 3) float64 ECEF metres."""
        local = np.asarray(local, np.float64)
        if self.is_rigid:
            m = self.rigid_matrix()
            return local @ m[:3, :3].T + m[:3, 3]
        p = local + self.origin
        return crsmod.to_ecef(self.crs, p[:, 0], p[:, 1], p[:, 2])

    def from_ecef(self, ecef: np.ndarray) -> np.ndarray:
        """Inverse of `to_ecef`: (n, 3) ECEF to (n, 3) float64 production vertices."""
        ecef = np.asarray(ecef, np.float64)
        if self.is_rigid:
            m = self.rigid_matrix()
            return (ecef - m[:3, 3]) @ m[:3, :3]
        return crsmod.from_ecef(self.crs, ecef) - self.origin

    def describe(self) -> str:
        if self.enu is not None:
            return f"ENU:{self.enu[0]},{self.enu[1]}"
        assert self.crs is not None
        auth = self.crs.to_authority()
        return f"{auth[0]}:{auth[1]}" if auth else self.crs.name


def geodetic_to_ecef(llh: np.ndarray) -> np.ndarray:
    """(n, 3) WGS 84 longitude, latitude (degrees), ellipsoidal height (m) to (n, 3) float64 ECEF."""
    llh = np.asarray(llh, np.float64)
    lam, phi, h = np.radians(llh[:, 0]), np.radians(llh[:, 1]), llh[:, 2]
    n = _A / np.sqrt(1 - _E2 * np.sin(phi) ** 2)
    return np.column_stack([(n + h) * np.cos(phi) * np.cos(lam), (n + h) * np.cos(phi) * np.sin(lam),
                            (n * (1 - _E2) + h) * np.sin(phi)])


def parse_srs(text: str, *, what: str = "SRS") -> tuple[CRS | None, tuple[float, float] | None]:
    """A ContextCapture `<SRS>` value: `EPSG:n`, WKT, PROJ text, or `ENU:lat,lon`.

    Returns:
        (crs, None) for a CRS, (None, (lat, lon)) for a local ENU frame.
    """
    m = _ENU.match(text)
    if m:
        lat, lon = float(m.group(1)), float(m.group(2))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise CRSError(f"{what}: {text.strip()!r} is not ENU:lat,lon with latitude first (degrees)")
        return None, (lat, lon)
    return crsmod.parse_crs(text.strip(), what=what), None


def read_metadata(path: str | os.PathLike[str]) -> Georeference:
    """Read a ContextCapture `metadata.xml` (or the production folder holding it).

    Raises:
        InputNotFoundError: no metadata.xml there.
        InputError: the file is not a ContextCapture model metadata file.
        CRSError: the SRS cannot be built.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "metadata.xml"
    if not p.is_file():
        raise InputNotFoundError(f"{p} does not exist; a ContextCapture production has metadata.xml beside Data/")
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{p}: not XML ({exc})") from exc
    srs = root.findtext("SRS")
    if srs is None or not srs.strip():
        raise InputError(f"{p}: no <SRS> element; expected EPSG:n, WKT or ENU:lat,lon")
    crs, enu = parse_srs(srs, what=str(p))
    origin = np.zeros(3)
    text = root.findtext("SRSOrigin")
    if text and text.strip():
        try:
            values = [float(v) for v in re.split(r"[,\s]+", text.strip())]
        except ValueError as exc:
            raise InputError(f"{p}: <SRSOrigin> {text.strip()!r} is not 'x,y,z'") from exc
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"{p}: <SRSOrigin> {text.strip()!r} holds a value that is not a finite number")
        origin[: min(3, len(values))] = values[:3]
    return Georeference(crs=crs, origin=origin, enu=enu, source=str(p))


@dataclass
class ProductionTile:
    """One tile of a production: its folder, its root mesh file and every mesh file in the folder."""

    name: str
    folder: Path
    root_file: Path
    files: list[Path]


def find_tiles(production: str | os.PathLike[str]) -> list[ProductionTile]:
    """The tiles of a production (`Data/Tile_*/Tile_*.<ext>`; a production without `Data/` is read flat).

    Raises:
        InputError: no tile with a mesh file is found.
    """
    top = Path(production)
    data = top / "Data" if (top / "Data").is_dir() else top
    tiles = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in MESH_SUFFIXES)
        if not files:
            continue
        roots = [f for f in files if f.stem == folder.name]
        if not roots:
            # mesh exports (OBJ...) name their levels Tile_x_L16_0.obj: the coarsest level is the root
            roots = sorted(files, key=lambda f: (level_of(f.stem) or 0, f.stem))[:1]
        tiles.append(ProductionTile(folder.name, folder, roots[0], files))
    if not tiles:
        raise InputError(f"{data}: no tile folder with {'/'.join(MESH_SUFFIXES)} files; expected Data/Tile_*/")
    return tiles


_LEVEL = re.compile(r"_L(\d+)_")


def level_of(stem: str) -> int | None:
    """The pyramid level in a ContextCapture file name (`Tile_+000_+012_L18_0uuuu` -> 18), or None."""
    m = _LEVEL.search(stem + "_")
    return int(m.group(1)) if m else None


def enu_at(ecef: np.ndarray) -> LocalFrame:
    """An east-north-up frame at the centre of the bounding box of (n, 3) ECEF points."""
    ecef = np.asarray(ecef, np.float64)
    return enu_frame((ecef.min(axis=0) + ecef.max(axis=0)) / 2)




# ---------------------------------------------------------------------------------------------------------- writer
def write_dsm_production(
    out: str | os.PathLike[str],
    dsm: str | os.PathLike[str],
    ortho: str | os.PathLike[str],
    *,
    bounds: tuple[float, float, float, float] | None = None,
    tile_size: float = 250.0,
    fmt: str = "osgb",
    texture_px: int = 1024,
) -> Path:
    """Write a synthetic ContextCapture production: the DSM as a textured mesh, two pyramid levels per tile.

    Each tile `Data/Tile_+xxx_+yyy/` holds a root file (the DSM every 4 cells, a small texture) whose PagedLOD pages
    in a second file with four full-resolution quadrant nodes. Vertices are offsets from `SRSOrigin` (the south-west
    corner) in the DSM's CRS; textures are the orthophoto as JPEG. `fmt="osgb"` goes through osgconv (written as
    `.osg` text, embedded as `.osgb` with the JPEG files inside); `fmt="obj"` writes OBJ + MTL + JPEG per node with
    ContextCapture's level names (`Tile_+000_+000_L16_0.obj`, `..._L17_00.obj`).

    Args:
        out: production folder (created; `metadata.xml` and `Data/`).
        dsm, ortho: surface model and orthophoto rasters (same projected CRS).
        bounds: area to cover (default: the whole DSM).
        tile_size: tile side in metres.
        fmt: "osgb" or "obj".
        texture_px: side of the full-resolution quadrant textures.

    Returns:
        The production folder.
    """
    import rasterio
    import rasterio.windows
    from PIL import Image

    if fmt not in ("osgb", "obj"):
        raise InputError(f"fmt={fmt!r}: choose 'osgb' or 'obj'")
    out = Path(out)
    with rasterio.open(dsm) as src:
        crs = src.crs
        res = float(abs(src.transform.a))
        b = bounds or tuple(src.bounds)
        win = rasterio.windows.from_bounds(*b, transform=src.transform).round_offsets().round_lengths()
        arr = src.read(1, window=win, masked=True).filled(np.nan).astype(np.float64)
        tf = rasterio.windows.transform(win, src.transform)
    if np.isnan(arr).all():
        raise InputError(f"{dsm}: no DSM value inside {b}")
    arr = np.where(np.isnan(arr), np.nanmin(arr), arr)
    x0, y0 = float(b[0]), float(b[1])
    origin = (round(x0), round(y0), 0.0)
    (out / "Data").mkdir(parents=True, exist_ok=True)
    (out / "metadata.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<ModelMetadata version="1">\n'
        f"\t<SRS>{crs.to_wkt()}</SRS>\n\t<SRSOrigin>{origin[0]:.3f},{origin[1]:.3f},0</SRSOrigin>\n"
        "\t<Texture><ColorSource>Visible</ColorSource></Texture>\n</ModelMetadata>\n", encoding="utf-8")

    def heights(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        from cim.sources.raster import bilinear

        gx, gy = np.meshgrid(xs, ys)
        z = bilinear(arr, tf, gx.ravel(), gy.ravel())
        return np.where(np.isnan(z), np.nanmin(arr), z).reshape(gy.shape)

    def texture(bx: tuple[float, float, float, float], px: int) -> bytes:
        with rasterio.open(ortho) as o:
            w = rasterio.windows.from_bounds(*bx, transform=o.transform)
            img = o.read([1, 2, 3], window=w, out_shape=(3, px, px), boundless=True, fill_value=128)
        buf = io.BytesIO()
        Image.fromarray(np.moveaxis(img, 0, -1).astype(np.uint8)).save(buf, "JPEG", quality=88)
        return buf.getvalue()

    def grid(bx: tuple[float, float, float, float], step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nx = max(1, int(round((bx[2] - bx[0]) / step)))
        ny = max(1, int(round((bx[3] - bx[1]) / step)))
        xs = np.linspace(bx[0], bx[2], nx + 1)
        ys = np.linspace(bx[1], bx[3], ny + 1)
        z = heights(xs, ys)
        gx, gy = np.meshgrid(xs, ys)
        pos = np.column_stack([gx.ravel() - origin[0], gy.ravel() - origin[1], z.ravel()])
        uv = np.column_stack([(gx.ravel() - bx[0]) / (bx[2] - bx[0]), (gy.ravel() - bx[1]) / (bx[3] - bx[1])])
        k = np.arange(ny * (nx + 1)).reshape(ny, nx + 1)[:, :nx].ravel()
        tris = np.vstack([np.column_stack([k, k + 1, k + nx + 2]), np.column_stack([k, k + nx + 2, k + nx + 1])])
        return pos, tris, uv

    nx = max(1, math.ceil((b[2] - b[0]) / tile_size - 1e-9))
    ny = max(1, math.ceil((b[3] - b[1]) / tile_size - 1e-9))
    for i in range(nx):
        for j in range(ny):
            name = f"Tile_+{i:03d}_+{j:03d}"
            folder = out / "Data" / name
            folder.mkdir(parents=True, exist_ok=True)
            tb = (x0 + i * tile_size, y0 + j * tile_size, min(x0 + (i + 1) * tile_size, b[2]),
                  min(y0 + (j + 1) * tile_size, b[3]))
            mx, my = (tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2
            quads = [(tb[0], tb[1], mx, my), (mx, tb[1], tb[2], my), (tb[0], my, mx, tb[3]), (mx, my, tb[2], tb[3])]
            coarse = (*grid(tb, 4 * res), texture(tb, max(64, texture_px // 4)))
            fine = [(*grid(q, res), texture(q, texture_px)) for q in quads]
            if fmt == "obj":
                _write_obj(folder / f"{name}_L16_0", *coarse)
                for k, mesh in enumerate(fine):
                    _write_obj(folder / f"{name}_L17_0{k}", *mesh)
                continue
            child = f"{name}_L17_0.osgb"
            root_node = _osg_paged_lod(folder, f"{name}_L16", coarse, child, error=4 * res)
            _osg_to_osgb(folder, name, root_node)
            nodes = "".join(_osg_paged_lod(folder, f"{name}_L17_0{k}", mesh, None, 0.0)
                            for k, mesh in enumerate(fine))
            _osg_to_osgb(folder, f"{name}_L17_0", f"Group {{\n  num_children 4\n{nodes}}}\n")
    return out


def _sphere(pos: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)


def _osg_paged_lod(folder: Path, stem: str, mesh: tuple[np.ndarray, np.ndarray, np.ndarray, bytes],
                   child: str | None, error: float) -> str:
    """One PagedLOD in `.osg` text; its texture is written beside it as `<stem>.jpg`."""
    pos, tris, uv, jpeg = mesh
    (folder / f"{stem}.jpg").write_bytes(jpeg)
    centre, radius = _sphere(pos)
    # inverse of the error rule in cim.models.oblique: error = 16 * 2 r / pixels
    px = 32.0 * radius / error if child else 1e30
    ranges = f"      0 {px:.6g}\n      {px:.6g} 1e+30\n" if child else "      0 1e+30\n"
    names = f'      ""\n      {child}\n' if child else '      ""\n'
    fmt3 = "\n".join(f"          {a:.9g} {b_:.9g} {c:.9g}" for a, b_, c in pos)
    fmt2 = "\n".join(f"          {a:.9g} {b_:.9g}" for a, b_ in uv)
    idx = "\n".join(" ".join(str(int(v)) for v in row) for row in tris)
    n_ranges = 2 if child else 1
    return (f"PagedLOD {{\n  Center {centre[0]:.9g} {centre[1]:.9g} {centre[2]:.9g}\n  Radius {radius:.9g}\n"
            f"  RangeMode PIXEL_SIZE_ON_SCREEN\n  RangeList {n_ranges} {{\n{ranges}  }}\n"
            f"  FileNameList {n_ranges} {{\n{names}  }}\n  num_children 1\n  Geode {{\n  num_drawables 1\n"
            f"  Geometry {{\n    StateSet {{\n      textureUnit 0 {{\n        GL_TEXTURE_2D ON\n        Texture2D {{\n"
            f'          file "{stem}.jpg"\n          wrap_s CLAMP\n          wrap_t CLAMP\n'
            f"          min_filter LINEAR\n          mag_filter LINEAR\n        }}\n      }}\n    }}\n"
            f"    PrimitiveSets 1\n    {{\n      DrawElementsUInt TRIANGLES {tris.size}\n      {{\n{idx}\n      }}\n"
            f"    }}\n    VertexArray Vec3Array {len(pos)}\n    {{\n{fmt3}\n    }}\n"
            f"    TexCoordArray 0 Vec2Array {len(uv)}\n    {{\n{fmt2}\n    }}\n  }}\n  }}\n}}\n")


def _osg_to_osgb(folder: Path, stem: str, text: str) -> None:
    from cim.sources.osgb import run_osgconv

    src = folder / f"{stem}.osg"
    src.write_text(text, encoding="utf-8")
    run_osgconv(src, folder / f"{stem}.osgb", "WriteImageHint=IncludeFile")
    src.unlink()
    for jpg in folder.glob("*.jpg"):
        jpg.unlink()


def _write_obj(base: Path, pos: np.ndarray, tris: np.ndarray, uv: np.ndarray, jpeg: bytes) -> None:
    """OBJ + MTL + JPEG of one mesh node (UVs with OBJ's bottom-left origin)."""
    base.with_suffix(".jpg").write_bytes(jpeg)
    base.with_suffix(".mtl").write_text(f"newmtl m\nKd 1 1 1\nmap_Kd {base.name}.jpg\n", encoding="utf-8")
    lines = [f"mtllib {base.name}.mtl", "usemtl m"]
    lines += [f"v {a:.9g} {b:.9g} {c:.9g}" for a, b, c in pos]
    lines += [f"vt {a:.9g} {b:.9g}" for a, b in uv]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in (tris + 1)]
    base.with_suffix(".obj").write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Georeference", "ProductionTile", "find_tiles", "geodetic_to_ecef", "level_of", "parse_srs",
           "read_metadata", "write_dsm_production"]
