"""Skyline (天际线): from a viewpoint, the highest elevation angle at which something stands, per azimuth, and which
buildings form it.

    >>> r = skyline(scene, SkylineParams(viewpoint=(113.30, 40.09), height=1.6))
    >>> r.profile.head(), r.formers()                                              # doctest: +SKIP

Scheme (numerics): for each azimuth, the skyline elevation is the supremum of the elevation angles whose ray hits
something within `max_distance`; buildings are prisms or roofs standing on the terrain, so the set of hitting
elevations is an interval from below, and the supremum is found by bisection on [-45, 89.9] degrees to `precision`
(14 rays for 0.01 degree). One more ray, just under the skyline, tells what forms it (building, terrain) and how
far it is. An azimuth with nothing within reach has no skyline (NaN: open sky down to the horizon).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cim.analysis.planning.exposure import Progress
from cim.analysis.planning.output import geojson, json_records, write_layer
from cim.analysis.planning.scene import NOTHING, CityScene
from cim.analysis.planning.viewshed import observer_point
from cim.errors import InputError

LOW, HIGH = -45.0, 89.9


class SkylineParams(BaseModel):
    """Where the viewpoint is and how finely to sweep.

    Attributes:
        viewpoint: (lon, lat) degrees.
        height: metres above the surface (or the elevation with `absolute=True`).
        absolute: `height` is an elevation.
        azimuth_step: degrees between profile samples.
        azimuths: (from, to) degrees clockwise from grid north; `to` may exceed 360 to wrap.
        max_distance: metres; things farther away do not count.
        precision: degrees of elevation the bisection resolves.
    """

    model_config = ConfigDict(frozen=True)

    viewpoint: tuple[float, float]
    height: float = 1.6
    absolute: bool = False
    azimuth_step: float = Field(0.5, gt=0.0, le=45.0)
    azimuths: tuple[float, float] = (0.0, 360.0)
    max_distance: float = Field(5000.0, gt=0.0, le=100_000.0)
    precision: float = Field(0.01, gt=0.0, le=5.0)

    @field_validator("azimuths")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1] <= v[0] + 360.0:
            raise ValueError(f"azimuths {v} must be (from, to) with from < to <= from + 360")
        return v


@dataclass
class SkylineResult:
    """The skyline profile.

    Attributes:
        params: what was asked.
        viewpoint: (3,) absolute position (scene CRS).
        profile: one row per azimuth: azimuth (grid degrees), elevation (degrees, NaN: open sky), distance (m),
            owner (building ID, "terrain" or None), name, scheme (bool), x, y, z (where the skyline point is).
        crs: the scene's CRS.
    """

    params: SkylineParams
    viewpoint: np.ndarray
    profile: pd.DataFrame
    crs: Any
    rays: int = 0

    def formers(self) -> pd.DataFrame:
        """The buildings forming the skyline: id, name, scheme, azimuth span (from, to, degrees covered), the
        highest elevation and its distance; largest span first."""
        p = self.profile[self.profile["owner"].notna() & (self.profile["owner"] != "terrain")]
        if len(p) == 0:
            return pd.DataFrame(columns=["id", "name", "scheme", "from", "to", "degrees", "max_elevation",
                                         "distance"])
        step = self.params.azimuth_step
        g = p.groupby("owner", sort=False)
        out = pd.DataFrame({
            "id": list(g.groups), "name": g["name"].first().to_numpy(), "scheme": g["scheme"].first().to_numpy(),
            "from": g["azimuth"].min().to_numpy(), "to": g["azimuth"].max().to_numpy(),
            "degrees": (g.size() * step).to_numpy(), "max_elevation": g["elevation"].max().round(3).to_numpy(),
            "distance": g["distance"].min().round(2).to_numpy()})
        return out.sort_values("degrees", ascending=False, kind="stable").reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        p = self.profile
        return {"viewpoint": [round(float(v), 3) for v in self.viewpoint], "azimuths": int(len(p)),
                "open_sky": int(p["elevation"].isna().sum()),
                "max_elevation": round(float(np.nanmax(p["elevation"])), 3) if p["elevation"].notna().any() else None,
                "buildings": int(len(self.formers())), "rays": self.rays}

    def to_dict(self, profile: bool = True) -> dict[str, Any]:
        out = {"analysis": "skyline", "summary": self.summary(), "params": self.params.model_dump(mode="json"),
               "buildings": json_records(self.formers())}
        if profile:
            out["profile"] = json_records(self.profile[["azimuth", "elevation", "distance", "owner", "name", "scheme"]])
        return out

    def points(self) -> gpd.GeoDataFrame:
        """The skyline points (3D, scene CRS) with what forms them."""
        p = self.profile[self.profile["elevation"].notna()]
        return gpd.GeoDataFrame(p[["azimuth", "elevation", "distance", "owner", "name", "scheme"]].reset_index(
            drop=True), geometry=shapely.points(p["x"], p["y"], p["z"]), crs=self.crs)

    def to_geojson(self) -> dict[str, Any]:
        return geojson(self.points())

    def to_layer(self, store: Any, name: str, **kw: Any) -> Any:
        return write_layer(self.points(), store, name, title=kw.pop("title", f"天际线 {name}"), **kw)


def _dirs(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    a, e = np.radians(az), np.radians(el)
    return np.column_stack([np.sin(a) * np.cos(e), np.cos(a) * np.cos(e), np.sin(e)]).astype(np.float32)


def skyline(scene: CityScene, params: SkylineParams, *, progress: Progress | None = None) -> SkylineResult:
    """The skyline from a viewpoint (see the module docstring).

    Raises:
        InputError: the viewpoint is outside the model, or something stands right above it (inside a building).
    """
    vp, _ = observer_point(scene, params.viewpoint, params.height, params.absolute)
    a0, a1 = params.azimuths
    n = max(1, int(round((a1 - a0) / params.azimuth_step)))
    az = (a0 + np.arange(n) * params.azimuth_step) % 360.0
    tracer = scene.tracer()
    org = np.broadcast_to(scene.to_local(vp[None, :])[0], (n, 3)).astype(np.float32)
    far = np.float32(params.max_distance)
    if tracer.occluded(org[:1], np.array([[0, 0, 1]], np.float32), far)[0]:
        raise InputError(f"something stands right above the viewpoint {params.viewpoint} (inside or under a "
                         f"building); raise it (--height) or move it")
    lo = np.full(n, LOW)
    hi = np.full(n, HIGH)
    hits_low = tracer.occluded(org, _dirs(az, lo), far)
    rays = 2 * n
    top_hit = tracer.occluded(org, _dirs(az, hi), far)
    lo[top_hit] = hi[top_hit]  # something rises above 89.9 degrees there
    steps = int(math.ceil(math.log2((HIGH - LOW) / params.precision)))
    active = hits_low & ~top_hit
    for i in range(steps):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        mid = (lo[idx] + hi[idx]) / 2
        hit = tracer.occluded(org[idx], _dirs(az[idx], mid), far)
        rays += len(idx)
        lo[idx[hit]] = mid[hit]
        hi[idx[~hit]] = mid[~hit]
        if progress:
            progress("skyline", i + 1, steps)
    elevation = np.where(hits_low, lo, np.nan)
    probe = np.where(hits_low, lo - params.precision / 2, LOW)
    owner, dist = tracer.first_hit(org, _dirs(az, probe), far)
    rays += n
    owner = np.where(hits_low, owner, NOTHING)
    bs = scene.buildings
    ids = scene.owner_ids(owner)
    names = np.array([bs.name[o] if o >= 0 else None for o in owner], dtype=object)
    scheme = np.array([bool(bs.scheme[o]) if o >= 0 else False for o in owner])
    d = np.where(np.isfinite(dist), dist.astype(np.float64), np.nan)
    v = _dirs(az, np.nan_to_num(probe)).astype(np.float64)
    pts = vp[None, :] + v * np.nan_to_num(d)[:, None]
    profile = pd.DataFrame({"azimuth": np.round(az, 6), "elevation": np.round(elevation, 4),
                            "distance": np.round(d, 2), "owner": ids, "name": names, "scheme": scheme,
                            "x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]})
    profile.loc[~hits_low, ["distance", "x", "y", "z"]] = np.nan
    return SkylineResult(params, vp, profile, scene.crs, rays)


__all__ = ["SkylineParams", "SkylineResult", "skyline"]
