"""Planning analyses on a served model: `POST /analysis/{model}/{analysis}` (cim.analysis.planning).

The body is the analysis's parameter object as JSON (the same fields as in a notebook or on the command line),
plus an optional `scheme`: a GeoJSON FeatureCollection of footprints in lon/lat with a `height` (or `floors`) each.
Quick analyses (height control, skyline, an instant shadow) answer at once; the others (sunlight, viewshed, a day
of shadow, scheme comparison) start a job (201 + Location, see `tiles.server.jobs`) whose result is the same
document. `?f=geojson` asks for the result's GeoJSON alone; the default JSON document holds the result and its
GeoJSON under `features`.

The model's scene (footprints and DEM from its build.json, as `cim build` used them) is built on first use and kept
(one per model); a scheme is added to a copy per request. Height-control zones come from the store's
`height_zones` layer (or `zones_layer`), which the caller must be allowed to see.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from cim.analysis.planning.compare import ComparisonParams, compare_scheme
from cim.analysis.planning.height import HeightControlParams, height_control
from cim.analysis.planning.scene import CityScene, Scheme
from cim.analysis.planning.shadow import ShadowParams, shadow
from cim.analysis.planning.skyline import SkylineParams, skyline
from cim.analysis.planning.sunlight import SunlightParams, sunlight
from cim.analysis.planning.viewshed import ViewshedParams, viewshed
from tiles.server.deps import Ctx, context
from tiles.server.responses import json_response
from tiles.server.routes.jobs import accepted, job_manager

router = APIRouter(tags=["planning analyses"])
CtxDep = Annotated[Ctx, Depends(context)]
Format = Annotated[Literal["json", "geojson"], Query(alias="f")]
_NO_STORE = {"Cache-Control": "no-store"}


class _WithScheme(BaseModel):
    scheme: dict[str, Any] | None = None


class HeightControlRequest(HeightControlParams, _WithScheme):
    model_config = ConfigDict(frozen=True, extra="forbid")
    zones_layer: str = "height_zones"


class SunlightRequest(SunlightParams, _WithScheme):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ShadowRequest(ShadowParams, _WithScheme):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ViewshedRequest(ViewshedParams, _WithScheme):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SkylineRequest(SkylineParams, _WithScheme):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CompareRequest(ComparisonParams):
    model_config = ConfigDict(frozen=True, extra="forbid")
    scheme: dict[str, Any]
    zones_layer: str = "height_zones"


def _params(cls: type[BaseModel], body: BaseModel, drop: set[str]) -> Any:
    return cls(**body.model_dump(exclude=drop | {"scheme"}, exclude_unset=False))


class SceneCache:
    """One scene per served model, built on first use (it reads the model's footprints and DEM)."""

    def __init__(self) -> None:
        self._scenes: dict[str, CityScene] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, name: str, root: Path) -> CityScene:
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._scenes:
                scene = CityScene.from_build(root)
                scene.tracer()
                self._scenes[name] = scene
            return self._scenes[name]


def _scenes(request: Request) -> SceneCache:
    state = request.app.state
    if getattr(state, "analysis_scenes", None) is None:
        state.analysis_scenes = SceneCache()
    return state.analysis_scenes  # type: ignore[no-any-return]


def _scene(request: Request, ctx: Ctx, model: str, scheme: dict[str, Any] | None) -> CityScene:
    m = ctx.catalog.model(model, ctx.who)
    scene = _scenes(request).get(m.name, m.root)
    return scene.with_scheme(Scheme.from_geojson(scheme)) if scheme is not None else scene


def _zones(ctx: Ctx, layer: str) -> Any:
    info = ctx.catalog.layer(layer, ctx.who, "analysis", ctx.path, ctx.client)
    assert ctx.catalog.store is not None
    return ctx.catalog.store.query(info.name)


def _geojson(result: Any) -> dict[str, Any]:
    if hasattr(result, "windows_frame"):  # sunlight: the windows that fail (all of them would be megabytes)
        return result.to_geojson(only_failing=True)
    return result.to_geojson()  # type: ignore[no-any-return]


def _render(result: Any, f: str) -> tuple[dict[str, Any], str]:
    if f == "geojson":
        return _geojson(result), "application/geo+json"
    doc = result.to_dict()
    doc["features"] = _geojson(result)
    return doc, "application/json"


def _answer(result: Any, f: str) -> Response:
    body, media = _render(result, f)
    return json_response(body, media_type=media, headers=_NO_STORE)


@router.post("/analysis/{model}/height-control", summary="Buildings (and a scheme) against the height-control zones")
def height_control_route(model: str, body: HeightControlRequest, request: Request, ctx: CtxDep,
                         f: Format = "json") -> Response:
    scene = _scene(request, ctx, model, body.scheme)
    zones = _zones(ctx, body.zones_layer)
    return _answer(height_control(scene, zones, _params(HeightControlParams, body, {"zones_layer"})), f)


@router.post("/analysis/{model}/skyline", summary="The skyline from a viewpoint and the buildings forming it")
def skyline_route(model: str, body: SkylineRequest, request: Request, ctx: CtxDep, f: Format = "json") -> Response:
    scene = _scene(request, ctx, model, body.scheme)
    return _answer(skyline(scene, _params(SkylineParams, body, set())), f)


@router.post("/analysis/{model}/shadow", summary="Shadow at an instant (answered at once) or over a day (a job)")
def shadow_route(model: str, body: ShadowRequest, request: Request, ctx: CtxDep, f: Format = "json") -> Response:
    scene = _scene(request, ctx, model, body.scheme)
    params = _params(ShadowParams, body, set())
    params.civil_date()  # a bad date fails now, not in the job
    if params.at is not None:
        return _answer(shadow(scene, params), f)
    return _submit(request, ctx, "shadow", lambda p: shadow(scene, params, progress=p), f, body)


@router.post("/analysis/{model}/sunlight", summary="Sunlight hours of the housing (GB 50180-2018): a job")
def sunlight_route(model: str, body: SunlightRequest, request: Request, ctx: CtxDep, f: Format = "json") -> Response:
    scene = _scene(request, ctx, model, body.scheme)
    params = _params(SunlightParams, body, set())
    from cim.analysis.planning.sunlight import select_buildings

    select_buildings(scene, params)  # nothing to check fails now, not in the job
    return _submit(request, ctx, "sunlight", lambda p: sunlight(scene, params, progress=p), f, body)


@router.post("/analysis/{model}/viewshed", summary="What an observer sees: visible area and buildings (a job)")
def viewshed_route(model: str, body: ViewshedRequest, request: Request, ctx: CtxDep, f: Format = "json") -> Response:
    scene = _scene(request, ctx, model, body.scheme)
    params = _params(ViewshedParams, body, set())
    from cim.analysis.planning.viewshed import observer_point

    observer_point(scene, params.observer, params.height, params.absolute)  # outside the model fails now
    return _submit(request, ctx, "viewshed", lambda p: viewshed(scene, params, progress=p), f, body)


@router.post("/analysis/{model}/compare", summary="Every analysis with and without a scheme (a job)")
def compare_route(model: str, body: CompareRequest, request: Request, ctx: CtxDep, f: Format = "json") -> Response:
    scene = _scene(request, ctx, model, None)
    scheme = Scheme.from_geojson(body.scheme, name=str(body.scheme.get("name") or "scheme"))
    params = _params(ComparisonParams, body, {"zones_layer"})
    zones = None
    if params.height is not None:
        try:
            zones = _zones(ctx, body.zones_layer)
        except LookupError:
            zones = None  # no zones layer visible: the comparison leaves height control out
    return _submit(request, ctx, "compare",
                   lambda p: compare_scheme(scene, scheme, params, zones=zones, progress=p), f, body)


def _submit(request: Request, ctx: Ctx, kind: str, fn: Any, f: str, body: BaseModel) -> Response:
    params = body.model_dump(mode="json", exclude={"scheme"})
    if getattr(body, "scheme", None) is not None:
        params["scheme_features"] = len((getattr(body, "scheme") or {}).get("features") or [])
    job = job_manager(request).submit(fn, owner=ctx.who.key_id, kind=kind, render=lambda r: _render(r, f),
                                      params=params)
    return accepted(job, ctx)


__all__ = ["router"]
