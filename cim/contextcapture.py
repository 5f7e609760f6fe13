"""ContextCapture (Smart3D) productions: `metadata.xml` and the tile folders beside it.

A production is a folder with `metadata.xml` and `Data/Tile_<x>_<y>/` folders. `metadata.xml` says where the mesh
vertices are: `<SRS>` is `EPSG:n`, a WKT or `ENU:lat,lon` (a local east-north-up frame on the ellipsoid), and
`<SRSOrigin>x,y,z</SRSOrigin>` is added to every vertex first. A WKT is built from its parameters through
`cim.crs.parse_crs`, which drops an authority code its parameters contradict (real productions carry such labels).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import CRS

from cim import crs as crsmod
from cim.errors import CRSError, InputError, InputNotFoundError
from cim.geodesy import LocalFrame, enu_frame

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


__all__ = ["Georeference", "ProductionTile", "find_tiles", "geodetic_to_ecef", "level_of", "parse_srs",
           "read_metadata"]
