"""Shadows on the ground: at an instant, and hours in shadow over a day.

    >>> r = shadow(scene, ShadowParams(at=10.0, of=["scheme"]))      # the scheme's shadow at 10:00 true solar time
    >>> r.to_geojson()                                                # its outline, lon/lat       # doctest: +SKIP
    >>> r = shadow(scene, ShadowParams(of=["14021300100100034"]))    # minutes of shadow it casts over the day

The ground is the model's top surface over a grid of `cell` metres (terrain; cells under a building's roof are
left out). A cell is in shadow when the ray from its surface point towards the sun hits a building or the terrain
(the same engine as `sunlight`, `exposure`). With `of`, the shadow those buildings cast is told apart: at an
instant, cells their own geometry shades (whether or not something else shades them too); over a day, the minutes
of shadow that would not be there without them (sunlit minutes without them minus with them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cim.analysis.planning.exposure import Progress, SunTable, sunlit_segments
from cim.analysis.planning.output import geojson, grid, write_layer, write_raster
from cim.analysis.planning.scene import SCHEME_PREFIX, TERRAIN, CityScene
from cim.analysis.planning.standards import WINDOWS
from cim.analysis.planning.sun import StandardDay, check_year, standard_date, true_solar_to_utc
from cim.errors import InputError

LIT, SHADOW_OF, SHADOW_OTHER = 0, 1, 2
NODATA = 255


class ShadowParams(BaseModel):
    """Which shadow, when, where.

    Attributes:
        year, day: the standard day (大寒日 "dahan" / 冬至日 "dongzhi") of a year; or `on_date` for any civil date.
        at: true solar hour of an instant shadow; None: hours in shadow over `window`.
        window: true solar hours (default: the standard window of `day`, 8-16 on 大寒日, 9-15 on 冬至日).
        of: building IDs whose shadow is wanted ("scheme" stands for every scheme building); None: all.
        bbox: lon/lat box of the grid; default: the `of` buildings (or the whole model) plus `margin`.
        margin: metres around the `of` buildings.
        cell: grid cell in metres.
        step_seconds: ray step over a day (at most 60).
        refraction: use the refracted sun (as SPA gives it).
        workers: threads casting rays.
    """

    model_config = ConfigDict(frozen=True)

    year: int = 2001
    day: StandardDay = "dahan"
    on_date: date | None = None
    at: float | None = Field(None, ge=0.0, le=24.0)
    window: tuple[float, float] | None = None
    of: list[str] | None = None
    bbox: tuple[float, float, float, float] | None = None
    margin: float = Field(150.0, ge=0.0)
    cell: float = Field(2.0, gt=0.0, le=1000.0)
    step_seconds: int = Field(60, ge=1, le=60)
    refraction: bool = True
    workers: int | None = Field(None, ge=1, le=256)

    @field_validator("year")
    @classmethod
    def _year(cls, v: int) -> int:
        check_year(v)
        return v

    def civil_date(self) -> date:
        if self.on_date is not None:
            check_year(self.on_date.year, "date year")
            return self.on_date
        return standard_date(self.year, self.day)


@dataclass
class ShadowResult:
    """A shadow raster.

    Attributes:
        params: what was asked.
        date: the civil date.
        values: at an instant: (rows, cols) uint8 codes 0 lit, 1 shadow of `of`, 2 shadow of anything else,
            255 not ground; over a day: (rows, cols) float32 minutes in shadow (NaN not ground).
        caused: over a day with `of`: (rows, cols) float32 minutes of shadow the `of` buildings add; else None.
        transform: the grid's affine transform (scene CRS).
        crs: the scene's CRS.
        of: the building IDs whose shadow was asked for.
        sun: at an instant: {"elevation", "azimuth"} degrees; else None.
    """

    params: ShadowParams
    date: date
    values: np.ndarray
    caused: np.ndarray | None
    transform: Any
    crs: Any
    of: list[str]
    sun: dict[str, float] | None = None
    rays: int = 0

    @property
    def instant(self) -> bool:
        return self.params.at is not None

    def summary(self) -> dict[str, Any]:
        cell_area = abs(self.transform.a * self.transform.e)
        out: dict[str, Any] = {"date": self.date.isoformat(), "cell": self.params.cell,
                               "cells": int(self.values.size), "of": self.of[:50], "rays": self.rays}
        if self.instant:
            out.update(at=self.params.at, sun=self.sun,
                       shadow_of_m2=round(float((self.values == SHADOW_OF).sum()) * cell_area, 1),
                       shadow_other_m2=round(float((self.values == SHADOW_OTHER).sum()) * cell_area, 1),
                       lit_m2=round(float((self.values == LIT).sum()) * cell_area, 1))
        else:
            v = self.values
            out.update(window=list(self.params.window or WINDOWS[self.params.day]),
                       mean_shadow_min=round(float(np.nanmean(v)), 2) if np.isfinite(v).any() else None)
            if self.caused is not None:
                c = self.caused
                out.update(caused_m2_over_60min=round(float((c >= 60).sum()) * cell_area, 1),
                           caused_max_min=round(float(np.nanmax(c)), 2) if np.isfinite(c).any() else 0.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"analysis": "shadow", "summary": self.summary(), "params": self.params.model_dump(mode="json")}

    def polygons(self) -> gpd.GeoDataFrame:
        """The shadow as polygons (scene CRS): at an instant, the cells shaded by `of` (kind "of") and by anything
        else (kind "other"); over a day, cells with `caused` (or shadow) minutes in classes of an hour."""
        if self.instant:
            classes = self.values.astype(np.uint8)
            keep = (classes == SHADOW_OF) | (classes == SHADOW_OTHER)
            label = {SHADOW_OF: "of", SHADOW_OTHER: "other"}
        else:
            v = self.caused if self.caused is not None else self.values
            classes = np.where(np.isfinite(v), np.minimum(np.floor(v / 60.0), 23), 255).astype(np.uint8)
            keep = np.isfinite(v) & (v >= 60)
            label = {k: f">= {k} h" for k in range(24)}
        geoms, kinds = [], []
        for geom, value in rasterio.features.shapes(classes, mask=keep, transform=self.transform):
            geoms.append(shapely.geometry.shape(geom))
            kinds.append(label.get(int(value), str(int(value))))
        gdf = gpd.GeoDataFrame({"kind": kinds}, geometry=geoms, crs=self.crs)
        return gdf.dissolve("kind", as_index=False) if len(gdf) else gdf

    def to_geojson(self) -> dict[str, Any]:
        return geojson(self.polygons())

    def to_layer(self, store: Any, name: str, **kw: Any) -> Any:
        return write_layer(self.polygons(), store, name, title=kw.pop("title", f"阴影分析 {name}"), **kw)

    def to_raster(self, path: Any, *, overwrite: bool = False, caused: bool = False) -> Any:
        """GeoTIFF of the codes (instant) or the shadow minutes (day; `caused=True`: the minutes `of` adds)."""
        values = self.caused if caused and self.caused is not None else self.values
        if self.instant:
            values = np.where(values == NODATA, np.nan, values).astype(np.float32)
        return write_raster(path, values, self.transform, self.crs, overwrite=overwrite,
                            description="shadow codes" if self.instant else "shadow minutes")


def _of_ids(scene: CityScene, of: list[str] | None) -> list[str]:
    if not of:
        return []
    ids: list[str] = []
    known = scene.buildings.index()
    for o in of:
        if o == "scheme":
            found = [str(i) for i in scene.buildings.ids[scene.buildings.scheme]]
            if not found:
                raise InputError("of=['scheme'] but no scheme is attached to the model; pass --scheme FILE")
            ids += found
        elif o in known or SCHEME_PREFIX + o in known:
            ids.append(o if o in known else SCHEME_PREFIX + o)
        else:
            raise InputError(f"building {o!r} is not in the model")
    return ids


def shadow(scene: CityScene, params: ShadowParams | None = None, *, progress: Progress | None = None
           ) -> ShadowResult:
    """Shadows on the ground (see the module docstring).

    Raises:
        InputError: an unknown building, a date outside SPA's range, the sun below the horizon at `at`.
    """
    params = params or ShadowParams()
    day = params.civil_date()
    of = _of_ids(scene, params.of)
    bs = scene.buildings
    if params.bbox is not None:
        bounds = scene.bbox_from_lonlat(params.bbox).bounds
    elif of:
        bounds = shapely.total_bounds(shapely.buffer(bs.geoms[bs.rows(of)], params.margin))
    else:
        bounds = scene.bounds()
    x, y, transform = grid(tuple(float(v) for v in bounds), params.cell)  # type: ignore[arg-type]
    z, owner = scene.surface(x.ravel(), y.ravel())
    ground = (owner == TERRAIN) & np.isfinite(z)
    pts = np.column_stack([x.ravel()[ground], y.ravel()[ground], z[ground] + 0.05])
    site = scene.site if params.refraction else dataclasses.replace(scene.site, pressure=0.0)
    if params.at is not None:
        from cim.analysis.planning.sun import sun_positions

        t = true_solar_to_utc(site, day, np.array([params.at]))
        pos = sun_positions(site, t)
        if pos.elevation[0] <= 0:
            raise InputError(f"the sun is below the horizon at {params.at:g} h true solar time on {day}")
        d = pos.vectors().astype(np.float32)
        org = scene.to_local(pts)
        shaded = scene.tracer().occluded(org, d)
        codes = np.full(x.size, NODATA, np.uint8)
        vals = np.where(shaded, SHADOW_OTHER, LIT).astype(np.uint8)
        if of:
            only = scene.without([i for i in bs.ids if i not in set(of)])
            only = dataclasses.replace(only, dem=None, _terrain=None)
            by_of = only.tracer().occluded(only.to_local(pts), d)
            vals[by_of] = SHADOW_OF
        codes[ground] = vals
        sun = {"elevation": round(float(pos.elevation[0]), 4), "azimuth": round(float(pos.azimuth[0]), 4)}
        return ShadowResult(params, day, codes.reshape(x.shape), None, transform, scene.crs, of, sun, len(pts))
    window = params.window or WINDOWS[params.day]
    table = SunTable.compute(site, day, window)
    seg, rays = sunlit_segments(scene, table, pts, None, step=params.step_seconds, workers=params.workers,
                                progress=progress, stage="shadow")
    up = float(((table.elevation[:-1] > 0).sum()))
    shade = np.full(x.size, np.nan, np.float32)
    shade[ground] = (up - seg.total()) / 60.0
    caused = None
    if of:
        seg0, r0 = sunlit_segments(scene.without(of), table, pts, None, step=params.step_seconds,
                                   workers=params.workers, progress=progress, stage="without")
        rays += r0
        caused = np.full(x.size, np.nan, np.float32)
        caused[ground] = np.maximum(seg0.total() - seg.total(), 0.0) / 60.0
        caused = caused.reshape(x.shape)
    return ShadowResult(params, day, shade.reshape(x.shape), caused, transform, scene.crs, of, None, rays)


__all__ = ["LIT", "NODATA", "SHADOW_OF", "SHADOW_OTHER", "ShadowParams", "ShadowResult", "shadow"]
