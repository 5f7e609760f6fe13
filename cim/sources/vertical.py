"""Vertical datums: what the heights of an input mean, and how they become the ellipsoidal heights of 3D Tiles.

Chinese elevations are normal heights (1985 National Height Datum, above a quasi-geoid); globes and 3D Tiles use
heights above the WGS 84 / CGCS2000 ellipsoid. The two differ by the (quasi-)geoid undulation N, from about -15 m
to +40 m across China: h = H + N. A model built from normal heights taken as ellipsoidal floats or sinks by N
against anyone else's terrain.

A `VerticalDatum` names the surface the input heights are measured from:
- `ellipsoidal` (the default): heights are used as they are, as today (no grid needed);
- `egm96`: the EGM96 geoid, from the 15' grid Debian's `proj-data` installs (`/usr/share/proj/egm96_15.gtx`);
- a path to any geoid or quasi-geoid grid PROJ reads (`.gtx`, GeoTIFF `.tif`): EGM2008, a national model. The grid
  holds N in metres by longitude/latitude.

`apply_ecef` moves Earth-centred points: ECEF -> geodetic (lon, lat, h) -> h + N(lon, lat) -> ECEF, all in float64
through PROJ (`vgridshift`, bilinear in the grid). Every builder applies it to the ECEF vertices it makes, so terrain,
buildings and oblique meshes shift alike.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import Transformer

from cim.errors import InputError, InputNotFoundError

EGM96_GRID = Path(os.environ.get("CIM_EGM96_GRID", "/usr/share/proj/egm96_15.gtx"))
DATUMS = ("ellipsoidal", "egm96")


@functools.lru_cache(maxsize=8)
def _undulation_transformer(grid: str) -> Transformer:
    # lon/lat degrees in, the grid's value added to the height out (PROJ's vgridshift, multiplier +1: H -> h)
    return Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=vgridshift +grids={grid} +multiplier=1 "
        "+step +proj=unitconvert +xy_in=rad +xy_out=deg"
    )


@functools.lru_cache(maxsize=2)
def _geodetic() -> tuple[Transformer, Transformer]:
    return (Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True),
            Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True))


@dataclass(frozen=True)
class VerticalDatum:
    """The surface input heights are measured from.

    Attributes:
        name: "ellipsoidal", "egm96", or "grid" for a user-supplied grid.
        grid: the geoid grid file (None for ellipsoidal).
    """

    name: str = "ellipsoidal"
    grid: Path | None = None

    @classmethod
    def parse(cls, value: str | os.PathLike[str] | VerticalDatum | None) -> VerticalDatum:
        """From `ellipsoidal`, `egm96` or the path of a geoid grid.

        Raises:
            InputNotFoundError: the grid file does not exist (for egm96: proj-data is not installed).
            InputError: the value is neither a known name nor a path.
        """
        if value is None:
            return cls()
        if isinstance(value, VerticalDatum):
            return value
        text = os.fspath(value)
        if text.lower() == "ellipsoidal":
            return cls()
        if text.lower() == "egm96":
            if not EGM96_GRID.is_file():
                raise InputNotFoundError(f"--vertical-datum egm96 needs {EGM96_GRID}: install Debian's proj-data "
                                         "(bin/setup does) or pass the path of an EGM96 grid")
            return cls("egm96", EGM96_GRID)
        path = Path(text)
        if path.suffix.lower() in (".gtx", ".tif", ".tiff") or path.exists():
            if not path.is_file():
                raise InputNotFoundError(f"--vertical-datum {text}: no such geoid grid file")
            return cls("grid", path.resolve())
        raise InputError(f"--vertical-datum {text!r}: choose ellipsoidal, egm96 or the path of a geoid grid "
                         "(.gtx or GeoTIFF)")

    @property
    def is_ellipsoidal(self) -> bool:
        return self.grid is None

    def undulation(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """N (metres, float64) at longitudes/latitudes in degrees: ellipsoidal height = input height + N.

        Raises:
            InputError: a point is outside the grid (PROJ returns infinity there).
        """
        lon = np.asarray(lon, np.float64)
        if self.grid is None:
            return np.zeros_like(lon)
        _, _, n = _undulation_transformer(str(self.grid)).transform(lon, np.asarray(lat, np.float64),
                                                                    np.zeros_like(lon))
        n = np.asarray(n, np.float64)
        if not np.isfinite(n).all():
            bad = int((~np.isfinite(n)).sum())
            raise InputError(f"vertical datum {self.label}: {bad} points lie outside the grid {self.grid}")
        return n

    def apply_ecef(self, ecef: np.ndarray) -> np.ndarray:
        """(n, 3) ECEF of points whose heights were taken as ellipsoidal -> (n, 3) ECEF with h = H + N (float64)."""
        ecef = np.asarray(ecef, np.float64)
        if self.grid is None or not len(ecef):
            return ecef
        to_geo, to_ecef = _geodetic()
        lon, lat, h = to_geo.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
        x, y, z = to_ecef.transform(lon, lat, np.asarray(h) + self.undulation(lon, lat))
        return np.column_stack([x, y, z])

    @property
    def label(self) -> str:
        return self.name if self.name != "grid" else str(self.grid)

    def to_dict(self) -> dict[str, str | None]:
        return {"verticalDatum": self.name, "geoidGrid": None if self.grid is None else self.grid.name}


ELLIPSOIDAL = VerticalDatum()

__all__ = ["DATUMS", "EGM96_GRID", "ELLIPSOIDAL", "VerticalDatum"]
