"""Viewshed (可视域): what an observer sees over the terrain and buildings.

    >>> r = viewshed(scene, ViewshedParams(observer=(113.305, 40.09), height=1.6, radius=500))
    >>> r.visible_area_m2, r.buildings.head()                                        # doctest: +SKIP

The observer stands `height` metres above the model's surface at a lon/lat (on a roof when the point is on a
building), or at an absolute elevation. Targets are the model's top surface over a grid of `cell` metres within
`radius` (terrain, and roofs where buildings stand), raised by `target_height` (at least 5 cm, so a target is not
inside its own surface), plus sample points on every facade within the radius (every `cell` metres along and up
the walls). A target is visible when the segment from the observer to it hits nothing (one Embree ray each, ended
5 cm short of the target). A building is visible when any of its roof cells or facade points is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.planning.exposure import Progress
from cim.analysis.planning.output import geojson, grid, json_records, write_layer, write_raster
from cim.analysis.planning.scene import NOTHING, TERRAIN, CityScene
from cim.errors import InputError

TARGET_LIFT = 0.05
CHUNK = 200_000


class ViewshedParams(BaseModel):
    """Where the observer stands and how far it looks.

    Attributes:
        observer: (lon, lat) degrees.
        height: metres above the surface (eye height 1.6 m by default), or the absolute elevation with
            `absolute=True`.
        absolute: `height` is an elevation (metres, the DEM's datum).
        radius: metres the observer looks.
        cell: grid cell in metres.
        target_height: metres above the surface of each target.
        facades: also sample building facades (visible buildings seen from the street).
    """

    model_config = ConfigDict(frozen=True)

    observer: tuple[float, float]
    height: float = 1.6
    absolute: bool = False
    radius: float = Field(500.0, gt=0.0, le=20_000.0)
    cell: float = Field(2.0, gt=0.0, le=1000.0)
    target_height: float = Field(0.0, ge=0.0, le=1000.0)
    facades: bool = True


def observer_point(scene: CityScene, lonlat: tuple[float, float], height: float, absolute: bool
                   ) -> tuple[np.ndarray, int]:
    """The observer's (3,) absolute position and what it stands on (building index, `TERRAIN` or `NOTHING`).

    Raises:
        InputError: the point is outside the model, or (absolute) inside a building or under the terrain.
    """
    lon, lat = lonlat
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"observer {lon}, {lat} is not a lon, lat in degrees")
    x, y = scene.from_lonlat([lon], [lat])
    if not scene.inside(float(x[0]), float(y[0])):
        b = scene.bounds()
        ll = scene.to_lonlat([b[0], b[2]], [b[1], b[3]])
        raise InputError(f"observer {lon:.6f}, {lat:.6f} is outside the model (lon {ll[0][0]:.5f}..{ll[0][1]:.5f}, "
                         f"lat {ll[1][0]:.5f}..{ll[1][1]:.5f}); place it inside the city")
    z, owner = scene.surface(x, y)
    ground = float(z[0]) if np.isfinite(z[0]) else 0.0
    if absolute:
        if height < ground - 1e-6:
            what = "a building" if owner[0] >= 0 else "the terrain"
            raise InputError(f"observer elevation {height:g} m is below the top of {what} there ({ground:.2f} m); "
                             f"give a higher elevation, or a height above the surface")
        zz = height
    else:
        zz = ground + height
    return np.array([x[0], y[0], zz]), int(owner[0])


@dataclass
class ViewshedResult:
    """What the observer sees.

    Attributes:
        params: what was asked.
        observer: (3,) absolute position (scene CRS).
        stands_on: building ID, "terrain" or None.
        values: (rows, cols) float32: 1 visible, 0 hidden, NaN outside the radius.
        surface_owner: (rows, cols) int32 what the surface is in each cell (building index, TERRAIN, NOTHING).
        transform, crs: the grid.
        buildings: visible buildings: id, name, distance (m), visible_samples, samples, fraction.
    """

    params: ViewshedParams
    observer: np.ndarray
    stands_on: str | None
    values: np.ndarray
    surface_owner: np.ndarray
    transform: Any
    crs: Any
    buildings: pd.DataFrame
    rays: int = 0

    @property
    def visible_area_m2(self) -> float:
        return float(np.nansum(self.values)) * abs(self.transform.a * self.transform.e)

    def summary(self) -> dict[str, Any]:
        cells = np.isfinite(self.values)
        return {"observer": [round(float(v), 3) for v in self.observer], "stands_on": self.stands_on,
                "radius": self.params.radius, "cells": int(cells.sum()),
                "visible_cells": int(np.nansum(self.values)),
                "visible_area_m2": round(self.visible_area_m2, 1),
                "visible_fraction": round(float(np.nansum(self.values) / max(cells.sum(), 1)), 4),
                "visible_buildings": int(len(self.buildings)), "rays": self.rays}

    def to_dict(self) -> dict[str, Any]:
        recs = json_records(self.buildings)
        return {"analysis": "viewshed", "summary": self.summary(), "params": self.params.model_dump(mode="json"),
                "buildings": recs}

    def polygons(self) -> gpd.GeoDataFrame:
        """The visible area as polygons (scene CRS)."""
        v = np.where(np.isfinite(self.values), self.values, 0).astype(np.uint8)
        geoms = [shapely.geometry.shape(g) for g, val in
                 rasterio.features.shapes(v, mask=v == 1, transform=self.transform)]
        gdf = gpd.GeoDataFrame({"kind": ["visible"] * len(geoms)}, geometry=geoms, crs=self.crs)
        return gdf.dissolve("kind", as_index=False) if len(gdf) else gdf

    def to_geojson(self) -> dict[str, Any]:
        """The visible area (polygons) and the observer (a point), lon/lat."""
        doc = geojson(self.polygons())
        obs = gpd.GeoDataFrame({"kind": ["observer"], "stands_on": [self.stands_on]},
                               geometry=[shapely.Point(*self.observer)], crs=self.crs)
        doc["features"] += geojson(obs)["features"]
        return doc

    def to_layer(self, store: Any, name: str, **kw: Any) -> Any:
        return write_layer(self.polygons(), store, name, title=kw.pop("title", f"可视域 {name}"), **kw)

    def to_raster(self, path: Any, *, overwrite: bool = False) -> Any:
        return write_raster(path, self.values, self.transform, self.crs, overwrite=overwrite,
                            description="visible (1) / hidden (0)")


def line_of_sight(scene: CityScene, observer: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n,) bool: nothing lies between the observer (3,) and each target (n, 3) (absolute positions); the ray
    stops `TARGET_LIFT` short of the target."""
    if len(targets) == 0:
        return np.zeros(0, bool)
    tracer = scene.tracer()
    o = scene.to_local(observer[None, :])[0]
    out = np.zeros(len(targets), bool)
    for a in range(0, len(targets), CHUNK):
        t = scene.to_local(targets[a:a + CHUNK]).astype(np.float64) - o
        dist = np.linalg.norm(t, axis=1)
        d = t / np.maximum(dist, 1e-9)[:, None]
        far = np.maximum(dist - TARGET_LIFT, 0.0).astype(np.float32)
        org = np.broadcast_to(o, (len(t), 3)).astype(np.float32)
        out[a:a + CHUNK] = ~tracer.occluded(org, d.astype(np.float32), far)
    return out


def viewshed(scene: CityScene, params: ViewshedParams, *, progress: Progress | None = None) -> ViewshedResult:
    """The viewshed of an observer (see the module docstring).

    Raises:
        InputError: the observer is outside the model or inside its solids.
    """
    obs, stands = observer_point(scene, params.observer, params.height, params.absolute)
    r = params.radius
    x, y, transform = grid((obs[0] - r, obs[1] - r, obs[0] + r, obs[1] + r), params.cell)
    inside = np.hypot(x - obs[0], y - obs[1]) <= r
    xs, ys = x[inside], y[inside]
    if progress:
        progress("surface", 0, 2)
    z, owner = scene.surface(xs, ys)
    has = np.isfinite(z)
    targets = np.column_stack([xs, ys, np.where(has, z, 0.0) + max(params.target_height, TARGET_LIFT)])
    if progress:
        progress("surface", 1, 2)
    vis = np.zeros(len(xs), bool)
    vis[has] = line_of_sight(scene, obs, targets[has])
    rays = 2 * len(xs)
    values = np.full(x.shape, np.nan, np.float32)
    values[inside] = np.where(has, vis, 0).astype(np.float32)
    own = np.full(x.shape, NOTHING, np.int32)
    own[inside] = owner
    # visible buildings: roof cells, and facade samples
    bs = scene.buildings
    hit_b = owner[has & vis & (owner >= 0)]
    counts = pd.Series(np.ones(len(hit_b), np.int64)).groupby(hit_b).sum() if len(hit_b) else pd.Series(dtype=int)
    totals = pd.Series(np.ones(int((owner >= 0).sum()), np.int64)).groupby(owner[owner >= 0]).sum() \
        if (owner >= 0).any() else pd.Series(dtype=int)
    if params.facades and len(bs):
        near = np.flatnonzero(shapely.dwithin(bs.geoms, shapely.Point(obs[0], obs[1]), r))
        fp, fo = facade_points(scene, near, params.cell)
        ok = np.hypot(fp[:, 0] - obs[0], fp[:, 1] - obs[1]) <= r
        fp, fo = fp[ok], fo[ok]
        fv = line_of_sight(scene, obs, fp)
        rays += len(fp)
        if len(fo):
            counts = counts.add(pd.Series(fv.astype(np.int64)).groupby(fo).sum(), fill_value=0)
            totals = totals.add(pd.Series(np.ones(len(fo), np.int64)).groupby(fo).sum(), fill_value=0)
    if progress:
        progress("surface", 2, 2)
    seen = counts[counts > 0].index.to_numpy(np.int64) if len(counts) else np.zeros(0, np.int64)
    if stands >= 0:
        seen = seen[seen != stands]
    dist = shapely.distance(shapely.Point(obs[0], obs[1]), bs.geoms[seen]) if len(seen) else np.zeros(0)
    table = pd.DataFrame({"id": bs.ids[seen], "name": bs.name[seen], "scheme": bs.scheme[seen],
                          "distance": np.round(dist, 2),
                          "visible_samples": counts.reindex(seen).to_numpy(np.int64) if len(seen) else [],
                          "samples": totals.reindex(seen).to_numpy(np.int64) if len(seen) else []})
    if len(table):
        table["fraction"] = np.round(table["visible_samples"] / table["samples"], 4)
        table = table.sort_values("distance", kind="stable").reset_index(drop=True)
    else:
        table["fraction"] = []
    stands_on = None if stands == NOTHING else ("terrain" if stands == TERRAIN else str(bs.ids[stands]))
    return ViewshedResult(params, obs, stands_on, values, own, transform, scene.crs, table, rays)


def facade_points(scene: CityScene, which: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points `TARGET_LIFT` out of every wall of the buildings `which`, every `step` metres along and up it (at
    least one per wall and per building height): ((n, 3) absolute positions, (n,) building index)."""
    bs = scene.buildings
    rows: list[np.ndarray] = []
    for b in np.asarray(which, np.int64).tolist():
        top = float(bs.height[b] if scene.level < 3 else min(bs.eave[b], bs.height[b]))
        nz = max(1, int(math.floor(top / step)))
        zs = bs.base[b] + (np.arange(nz) + 0.5) * (top / nz)
        for part in shapely.get_parts(shapely.orient_polygons(bs.geoms[b])):
            for ring in (part.exterior, *part.interiors):
                c = np.asarray(ring.coords)[:, :2]
                v = c[1:] - c[:-1]
                length = np.hypot(v[:, 0], v[:, 1])
                for p, d, L in zip(c[:-1], v, length):
                    if L < 1e-6:
                        continue
                    u = d / L
                    normal = np.array([u[1], -u[0]])
                    k = max(1, int(math.floor(L / step)))
                    xy = p + ((np.arange(k) + 0.5) * (L / k))[:, None] * u + normal * TARGET_LIFT
                    rows.append(np.column_stack([np.repeat(xy, nz, axis=0), np.tile(zs, k), np.full(k * nz, b)]))
    if not rows:
        return np.zeros((0, 3)), np.zeros(0, np.int64)
    a = np.vstack(rows)
    return a[:, :3], a[:, 3].astype(np.int64)


__all__ = ["ViewshedParams", "ViewshedResult", "facade_points", "line_of_sight", "observer_point", "viewshed"]
