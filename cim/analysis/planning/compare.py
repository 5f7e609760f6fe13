"""Scheme comparison (体块比对): every analysis with and without a proposed massing, and what changes because of it.

    >>> scheme = Scheme.read("scheme.geojson")                        # footprints with a height (or floors)
    >>> cmp = compare_scheme(scene, scheme, zones=load_zones("height_zones.gpkg"))
    >>> cmp.summary()["sunlight"]["windows_newly_failing"]                        # doctest: +SKIP
    >>> cmp.windows[["building", "floor", "before_min", "after_min", "cause"]]     # doctest: +SKIP

- Sunlight: the windows of the existing housing (minus what the scheme demolishes) are checked in both scenes with
  the same parameters. A window that loses sunlight is `newly_failing` (it passed and no longer does), `worsened`
  (it already failed and loses more: GB 50180-2018 4.0.9-2 forbids lowering a neighbour's sunlight below what it
  had) or `reduced` (it still passes). The cause is found by casting rays, in the scene with the scheme, at every
  minute of the time the window lost: whatever they hit first is a scheme building (nothing else changed), and the
  one that blocks the most minutes is the cause. Windows that now face a scheme building's wall lose everything.
  The scheme's own housing is checked too.
- Height control: the violations of the scheme's buildings.
- Skyline (with a viewpoint): the azimuths where the skyline rises, and which scheme building raises it.
- Viewshed (with an observer): the area and the buildings the scheme hides from it, and whether it is seen.
- Shadow (optional): the minutes of shadow the scheme adds to the ground over the standard day.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.planning.exposure import Progress
from cim.analysis.planning.height import HeightControlParams, HeightControlResult, height_control
from cim.analysis.planning.output import geojson, json_records, write_layer
from cim.analysis.planning.scene import CityScene, Scheme
from cim.analysis.planning.shadow import ShadowParams, ShadowResult, shadow
from cim.analysis.planning.skyline import SkylineParams, SkylineResult, skyline
from cim.analysis.planning.sunlight import SunlightParams, SunlightResult, select_buildings, sunlight
from cim.analysis.planning.viewshed import ViewshedParams, ViewshedResult, viewshed
from cim.errors import InputError


class ComparisonParams(BaseModel):
    """Which analyses to compare, with their parameters (None leaves one out).

    Attributes:
        sunlight: sunlight parameters (the buildings under test are the existing housing they select).
        height: height-control parameters (needs zones).
        skyline: a viewpoint and sweep.
        viewshed: an observer: what the scheme hides from it.
        shadow: the day shadow of the scheme (`of` is set to the scheme).
        min_loss_minutes: smaller losses are not reported.
    """

    model_config = ConfigDict(frozen=True)

    sunlight: SunlightParams | None = SunlightParams()
    height: HeightControlParams | None = HeightControlParams()
    skyline: SkylineParams | None = None
    viewshed: ViewshedParams | None = None
    shadow: ShadowParams | None = None
    min_loss_minutes: float = Field(1.0, ge=0.0)


@dataclass
class SchemeComparison:
    """What the scheme changes.

    Attributes:
        scheme: the scheme's name; scheme_ids: its buildings' IDs; removed: existing buildings it demolishes.
        windows: the windows that lose sunlight: building, name, facade, floor, x, y, z, before_min, after_min,
            lost_min, passes_before, passes_after, status, cause (scheme building ID), causes (ID -> minutes).
        buildings: per affected building: id, name, windows_affected, newly_failing, worsened, max_lost_min,
            passes_before, passes_after.
        before, after: the sunlight results; scheme_sunlight: the scheme's own housing (or None).
        height: height control with the scheme (its violations are the new ones).
        skyline_before, skyline_after, skyline_changes: the skyline, and the azimuths where it rose.
        viewshed_before, viewshed_after: what the observer sees without and with the scheme.
        shadow: the shadow the scheme adds over the day.
    """

    scheme: str
    scheme_ids: list[str]
    removed: list[str]
    params: ComparisonParams
    windows: pd.DataFrame
    buildings: pd.DataFrame
    before: SunlightResult | None
    after: SunlightResult | None
    scheme_sunlight: SunlightResult | None
    height: HeightControlResult | None
    skyline_before: SkylineResult | None
    skyline_after: SkylineResult | None
    skyline_changes: pd.DataFrame | None
    shadow: ShadowResult | None
    viewshed_before: ViewshedResult | None
    crs: Any
    footprints: gpd.GeoDataFrame
    viewshed_after: ViewshedResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def new_violations(self) -> gpd.GeoDataFrame | None:
        if self.height is None:
            return None
        v = self.height.violations()
        return v[v["scheme"]]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scheme": self.scheme, "buildings": self.scheme_ids, "removed": self.removed}
        if self.before is not None:
            w = self.windows
            out["sunlight"] = {
                "windows_checked": int(len(self.before.windows)),
                "windows_losing": int(len(w)),
                "windows_newly_failing": int((w["status"] == "newly_failing").sum()) if len(w) else 0,
                "windows_worsened": int((w["status"] == "worsened").sum()) if len(w) else 0,
                "buildings_affected": int(len(self.buildings)),
                "buildings_newly_failing": int((self.buildings["passes_before"]
                                                & ~self.buildings["passes_after"]).sum()) if len(self.buildings)
                else 0,
                "max_lost_min": float(w["lost_min"].max()) if len(w) else 0.0,
                "by_cause": {str(k): int(v) for k, v in w["cause"].value_counts().items()} if len(w) else {},
                "scheme_housing": self.scheme_sunlight.summary() if self.scheme_sunlight is not None else None,
            }
        if self.height is not None:
            nv = self.new_violations()
            out["height"] = {"new_violations": int(len(nv)),
                             "max_excess": float(nv["excess"].max()) if len(nv) else 0.0}
        if self.skyline_changes is not None:
            c = self.skyline_changes
            out["skyline"] = {"azimuths_raised": int(len(c)),
                              "degrees_raised": float(len(c) * self.params.skyline.azimuth_step)  # type: ignore[union-attr]
                              if len(c) else 0.0,
                              "max_rise": float(c["rise"].max()) if len(c) else 0.0,
                              "by_building": {str(k): int(v) for k, v in c["owner"].value_counts().items()}}
        if self.viewshed_before is not None and self.viewshed_after is not None:
            vb, va = self.viewshed_before, self.viewshed_after
            cell = abs(vb.transform.a * vb.transform.e)
            hidden = (np.nan_to_num(vb.values) == 1) & (np.nan_to_num(va.values) == 0)
            seen_after = set(va.buildings["id"])
            out["viewshed"] = {
                "visible_m2_before": round(vb.visible_area_m2, 1), "visible_m2_after": round(va.visible_area_m2, 1),
                "newly_hidden_m2": round(float(hidden.sum()) * cell, 1),
                "buildings_hidden": sorted(set(vb.buildings["id"]) - seen_after),
                "scheme_visible": sorted(i for i in seen_after if i in set(self.scheme_ids))}
        if self.shadow is not None:
            out["shadow"] = self.shadow.summary()
        return out

    def to_dict(self) -> dict[str, Any]:
        def recs(df: pd.DataFrame | None, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
            if df is None:
                return []
            return json_records(df.drop(columns=[c for c in drop if c in df.columns]))

        nv = self.new_violations()
        return {"analysis": "compare", "summary": self.summary(), "params": self.params.model_dump(mode="json"),
                "windows": recs(self.windows, ("x", "y")), "buildings": recs(self.buildings),
                "new_violations": recs(None if nv is None else pd.DataFrame(nv.drop(columns=nv.geometry.name))),
                "skyline_changes": recs(self.skyline_changes, ("x", "y", "z")),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def features(self) -> gpd.GeoDataFrame:
        """Everything to draw (scene CRS): the scheme's footprints, the windows that lose sunlight (with cause),
        and the new height violations; `kind` tells them apart."""
        parts = [self.footprints.assign(kind="scheme")]
        if len(self.windows):
            w = self.windows
            parts.append(gpd.GeoDataFrame(
                w.drop(columns=["x", "y", "z", "causes"]).assign(kind="window"),
                geometry=shapely.points(w["x"], w["y"], w["z"]), crs=self.crs))
        nv = self.new_violations()
        if nv is not None and len(nv):
            parts.append(nv.assign(kind="violation"))
        return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=self.crs)

    def to_geojson(self) -> dict[str, Any]:
        return geojson(self.features())

    def to_layer(self, store: Any, name: str, **kw: Any) -> Any:
        f = self.features()
        return write_layer(f[f["kind"] == "window"] if len(self.windows) else f, store, name,
                           title=kw.pop("title", f"方案比对 {name}"), **kw)


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Intervals of `a` not covered by `b` (both sorted, half-open)."""
    out = []
    for s, e in a:
        cur = s
        for bs, be in b:
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append((cur, bs))
            cur = max(cur, be)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def _causes(after_scene: CityScene, after: SunlightResult, rows: pd.DataFrame, lost: list[list[tuple[int, int]]],
            day: str) -> tuple[list[str | None], list[dict[str, float]]]:
    """Per window: the scheme building blocking most of its lost time, and minutes per blocker."""
    from cim.analysis.planning.exposure import SunTable

    info = after.days[day]
    site = after_scene.site if after.params.refraction else dataclasses.replace(after_scene.site, pressure=0.0)
    sun = SunTable.compute(site, info["date"], info["window"])
    times, weights, owner_row = [], [], []
    for i, intervals in enumerate(lost):
        for s, e in intervals:
            n = max(1, (e - s) // 60)
            ts = s + (np.arange(n) + 0.5) * ((e - s) / n)
            times.append(ts.astype(np.int64))
            weights.append(np.full(n, (e - s) / n / 60.0))
            owner_row.append(np.full(n, i))
    if not times:
        return [None] * len(rows), [{} for _ in range(len(rows))]
    t = np.concatenate(times)
    wgt = np.concatenate(weights)
    row = np.concatenate(owner_row)
    xyz = rows[["x", "y", "z"]].to_numpy(np.float64)[row]
    pts = after_scene.to_local(xyz)
    owner, _ = after_scene.tracer().first_hit(pts, sun.vectors[t].astype(np.float32))
    ids = after_scene.owner_ids(owner)
    per: list[dict[str, float]] = [{} for _ in range(len(rows))]
    for r, o, w in zip(row.tolist(), ids.tolist(), wgt.tolist()):
        key = "none" if o is None else str(o)
        per[r][key] = per[r].get(key, 0.0) + w
    main = [max(d, key=d.get) if d else None for d in per]  # type: ignore[arg-type]
    return main, [{k: round(v, 2) for k, v in d.items()} for d in per]


def compare_scheme(scene: CityScene, scheme: Scheme, params: ComparisonParams | None = None, *,
                   zones: gpd.GeoDataFrame | None = None, progress: Progress | None = None) -> SchemeComparison:
    """Every asked analysis with and without `scheme` (see the module docstring).

    Args:
        scene: the city as built (without a scheme).
        scheme: the proposed massing.
        params: which analyses and how.
        zones: height-control zones (needed when `params.height` is set; the check is skipped without them).
        progress: called as progress(stage, done, total).

    Raises:
        InputError: the scene already carries a scheme, or the scheme is unusable (see `Scheme`).
    """
    params = params or ComparisonParams()
    if scene.scheme_name is not None:
        raise InputError("compare a scheme against the city as built: this scene already carries scheme "
                         f"{scene.scheme_name!r}")
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    after_scene = scene.with_scheme(scheme)
    bs = after_scene.buildings
    scheme_ids = [str(i) for i in bs.ids[bs.scheme]]
    footprints = gpd.GeoDataFrame({"id": scheme_ids, "height": bs.height[bs.scheme],
                                   "name": bs.name[bs.scheme]}, geometry=bs.geoms[bs.scheme], crs=scene.crs)
    windows = pd.DataFrame()
    buildings = pd.DataFrame()
    before = after = own = None
    if params.sunlight is not None:
        sp = params.sunlight
        idx, _ = select_buildings(scene, sp)
        ids = [str(i) for i in scene.buildings.ids[idx] if str(i) not in set(after_scene.removed)]
        if not ids:
            raise InputError("every building under test is demolished by the scheme: nothing to compare")
        p = sp.model_copy(update={"buildings": ids, "ground": None})
        before = sunlight(scene, p, progress=progress)
        after = sunlight(after_scene, p, progress=progress)
        seconds["sunlight"] = time.perf_counter() - t0
        windows, buildings = _sunlight_changes(after_scene, before, after, params.min_loss_minutes)
        seconds["causes"] = time.perf_counter() - t0 - seconds["sunlight"]
        uses = set(sp.uses) | set(sp.elderly_uses)
        own_ids = [i for i in scheme_ids if bs.use[bs.index()[i]] in uses]
        if own_ids:
            own = sunlight(after_scene, sp.model_copy(update={"buildings": own_ids, "ground": None}),
                           progress=progress)
    height = None
    if params.height is not None and zones is not None:
        tick = time.perf_counter()
        height = height_control(after_scene, zones, params.height.model_copy(update={"buildings": scheme_ids}))
        seconds["height"] = time.perf_counter() - tick
    sky_b = sky_a = changes = None
    if params.skyline is not None:
        tick = time.perf_counter()
        sky_b = skyline(scene, params.skyline)
        sky_a = skyline(after_scene, params.skyline)
        pb, pa = sky_b.profile, sky_a.profile
        rise = np.nan_to_num(pa["elevation"].to_numpy(), nan=-90.0) - np.nan_to_num(pb["elevation"].to_numpy(),
                                                                                     nan=-90.0)
        up = rise > 2 * params.skyline.precision
        changes = pd.DataFrame({"azimuth": pa["azimuth"][up], "before": pb["elevation"][up],
                                "after": pa["elevation"][up], "rise": np.round(rise[up], 4),
                                "owner": pa["owner"][up], "scheme": pa["scheme"][up],
                                "x": pa["x"][up], "y": pa["y"][up], "z": pa["z"][up]}).reset_index(drop=True)
        seconds["skyline"] = time.perf_counter() - tick
    view_b = view_a = None
    if params.viewshed is not None:
        tick = time.perf_counter()
        view_b = viewshed(scene, params.viewshed, progress=progress)
        view_a = viewshed(after_scene, params.viewshed, progress=progress)
        seconds["viewshed"] = time.perf_counter() - tick
    shade = None
    if params.shadow is not None:
        tick = time.perf_counter()
        shade = shadow(after_scene, params.shadow.model_copy(update={"of": ["scheme"], "at": None}),
                       progress=progress)
        seconds["shadow"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - t0
    return SchemeComparison(scheme=scheme.name, scheme_ids=scheme_ids, removed=list(after_scene.removed),
                            params=params, windows=windows, buildings=buildings, before=before, after=after,
                            scheme_sunlight=own, height=height, skyline_before=sky_b, skyline_after=sky_a,
                            skyline_changes=changes, shadow=shade, viewshed_before=view_b, crs=scene.crs,
                            footprints=footprints, viewshed_after=view_a, seconds=seconds)


def _sunlight_changes(after_scene: CityScene, before: SunlightResult, after: SunlightResult, min_loss: float
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    key = ["building", "facade", "floor", "x", "y"]
    wb = before.windows.copy()
    wa = after.windows[key + ["counted_min", "passes", "segment_index", "day"]].rename(
        columns={"counted_min": "after_min", "passes": "passes_after", "segment_index": "after_index",
                 "day": "after_day"})
    wb["x"], wb["y"] = wb["x"].round(4), wb["y"].round(4)
    wa = wa.assign(x=wa["x"].round(4), y=wa["y"].round(4))
    m = wb.merge(wa, on=key, how="left")
    walled = m["after_min"].isna()  # the window now faces a scheme building's wall
    m["after_min"] = m["after_min"].fillna(0.0)
    m["passes_after"] = m["passes_after"].fillna(False).astype(bool)
    m["lost_min"] = np.round(m["counted_min"] - m["after_min"], 2)
    changed = m[(m["lost_min"] >= min_loss) | (walled & (m["counted_min"] > 0))].copy()
    if len(changed) == 0:
        empty_w = pd.DataFrame(columns=["building", "name", "facade", "floor", "x", "y", "z", "before_min",
                                        "after_min", "lost_min", "passes_before", "passes_after", "status", "cause",
                                        "causes"])
        empty_b = pd.DataFrame(columns=["id", "name", "windows_affected", "newly_failing", "worsened",
                                        "max_lost_min", "passes_before", "passes_after"])
        return empty_w, empty_b
    changed["status"] = np.where(changed["passes"] & ~changed["passes_after"], "newly_failing",
                                 np.where(~changed["passes"], "worsened", "reduced"))
    lost: list[list[tuple[int, int]]] = []
    days = []
    for _, r in changed.iterrows():
        segb = before.segments[r["day"]].of(int(r["segment_index"]))
        sega = [] if pd.isna(r["after_index"]) else after.segments[r["after_day"]].of(int(r["after_index"]))
        lost.append(_subtract(segb, sega))
        days.append(r["day"])
    main: list[str | None] = []
    per: list[dict[str, float]] = []
    for day in sorted(set(days)):
        sel = np.flatnonzero(np.array(days) == day)
        mm, pp = _causes(after_scene, after, changed.iloc[sel], [lost[i] for i in sel], day)
        main += mm
        per += pp
    order = np.concatenate([np.flatnonzero(np.array(days) == d) for d in sorted(set(days))])
    changed = changed.iloc[order].reset_index(drop=True)
    changed["cause"] = main
    changed["causes"] = per
    out = changed.rename(columns={"counted_min": "before_min", "passes": "passes_before"})[
        ["building", "name", "facade", "floor", "x", "y", "z", "before_min", "after_min", "lost_min",
         "passes_before", "passes_after", "status", "cause", "causes"]]
    g = out.groupby("building", sort=False)
    bb = before.buildings.set_index("id")
    ba = after.buildings.set_index("id")
    buildings = pd.DataFrame({
        "id": list(g.groups), "name": g["name"].first().to_numpy(), "windows_affected": g.size().to_numpy(),
        "newly_failing": g["status"].apply(lambda s: int((s == "newly_failing").sum())).to_numpy(),
        "worsened": g["status"].apply(lambda s: int((s == "worsened").sum())).to_numpy(),
        "max_lost_min": g["lost_min"].max().to_numpy()})
    buildings["passes_before"] = bb.loc[buildings["id"], "passes"].to_numpy()
    buildings["passes_after"] = ba.loc[buildings["id"], "passes"].to_numpy()
    return out.sort_values("lost_min", ascending=False, kind="stable").reset_index(drop=True), \
        buildings.sort_values("max_lost_min", ascending=False, kind="stable").reset_index(drop=True)


__all__ = ["ComparisonParams", "SchemeComparison", "compare_scheme"]
