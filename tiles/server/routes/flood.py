"""Flood runs (`cim.analysis.flood`): reports, depth tiles with a time dimension (TileJSON, WMTS `Time`), inundation
MVT, impacts (JSON, CSV), and new runs as background jobs.

    GET  /flood                                      the runs the server publishes (`--flood DIR`), newest first
    GET  /flood/{run}                                run.json with links
    GET  /flood/{run}/tilejson.json?var=depth        TileJSON 3.0 (+ `time`: steps and a `{time}` template)
    GET  /flood/{run}/{var}/{time}/{z}/{x}/{y}.png   var: depth | velocity | arrival; time: seconds, ISO instant, max
    GET  /flood/{run}/{var}/{time}/{tms}/{z}/{x}/{y}.png
    GET  /flood/{run}/wmts/1.0.0/WMTSCapabilities.xml, /flood/{run}/wmts?REQUEST=GetTile&TIME=...
    GET  /flood/{run}/inundation/{z}/{x}/{y}.mvt     polygons by depth class
    GET  /flood/{run}/impacts, /flood/{run}/impacts/{table}.csv, /flood/{run}/impacts/{table}.geojson
    GET  /flood/{run}/point?lon=&lat=                depth and speed through time, maximum, arrival at one place
    GET  /flood/alerts                               waterlogging warnings (sensor-triggered runs) with their areas
    POST /analysis/{model}/flood                     a run on a served model's DEM and buildings: a job

Flood runs are as secret as `flood_security` (default internal: they are made from the buildings layer); a caller
who may not see them gets 404, as for anything else it may not see.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from cim.analysis.flood.errors import FloodInputError
from cim.analysis.flood.rain import ChicagoStorm
from cim.analysis.flood.runs import FloodRuns, step_at, step_instants
from tiles.errors import TileNotFoundError, TileRequestError
from tiles.flood import FloodTiles, InundationTiles, tilejson, wmts_capabilities
from tiles.server.deps import Ctx, context
from tiles.server.responses import cache_control, etag_matches, json_response
from tiles.server.routes.jobs import accepted, job_manager

router = APIRouter(tags=["Flood"])
CtxDep = Annotated[Ctx, Depends(context)]
_LOCK = threading.Lock()


class _State:
    """Per-app flood state: the runs folder and tile renderers per run (created on first use)."""

    def __init__(self, runs: FloodRuns | None) -> None:
        self.runs = runs
        self.tiles: dict[str, tuple[float, FloodTiles]] = {}
        self.mvt: dict[str, tuple[float, InundationTiles]] = {}
        self.impacts: dict[str, dict[str, Any]] = {}


def _state(request: Request) -> _State:
    st = getattr(request.app.state, "flood", None)
    if st is None:
        with _LOCK:
            st = getattr(request.app.state, "flood", None)
            if st is None:
                root = request.app.state.catalog.settings.flood_runs
                st = request.app.state.flood = _State(FloodRuns(root) if root is not None else None)
    return st  # type: ignore[no-any-return]


def _runs(request: Request, ctx: Ctx) -> FloodRuns:
    st = _state(request)
    level = ctx.catalog.settings.flood_security
    if st.runs is None or not ctx.who.can_see("flood", level):
        raise TileNotFoundError("this server publishes no flood runs (or not to this caller); start it with "
                                "--flood DIR")
    return st.runs


def _run(request: Request, ctx: Ctx, run_id: str) -> Any:
    try:
        return _runs(request, ctx).get(run_id)
    except FloodInputError as exc:
        raise TileNotFoundError(str(exc)) from None


def _links(base: str, run_id: str, query: str) -> list[dict[str, str]]:
    q = f"?{query}" if query else ""
    amp = f"&{query}" if query else ""
    href = f"{base}/flood/{run_id}"
    return [{"href": f"{href}{q}", "rel": "self", "type": "application/json"},
            {"href": f"{href}/tilejson.json?var=depth{amp}", "rel": "tilejson", "type": "application/json"},
            {"href": f"{href}/wmts/1.0.0/WMTSCapabilities.xml{q}", "rel": "wmts", "type": "application/xml"},
            {"href": f"{href}/inundation/{{z}}/{{x}}/{{y}}.mvt{q}", "rel": "item", "templated": "true",
             "type": "application/vnd.mapbox-vector-tile"},
            {"href": f"{href}/impacts{q}", "rel": "impacts", "type": "application/json"}]


def _summary(result: Any) -> dict[str, Any]:
    r = result.report
    return {"kind": r.get("kind"), "created": r.get("created"), "rain": r.get("rain"),
            "statistics": r.get("statistics"), "times": result.times, "instants": step_instants(result)}


@router.get("/flood", summary="Flood runs published by this server, newest first")
def list_runs(request: Request, ctx: CtxDep) -> Response:
    runs = _runs(request, ctx)
    items = []
    for run_id in runs.ids():
        result = runs.get(run_id)
        items.append({"id": run_id, **_summary(result), "links": _links(ctx.base, run_id, ctx.query)})
    return json_response({"runs": items}, headers={"Cache-Control": "no-cache"})


@router.get("/flood/alerts", summary="Waterlogging warnings (sensor-triggered runs), newest first")
def list_alerts(request: Request, ctx: CtxDep) -> Response:
    from cim.analysis.flood.warning import read_alerts

    alerts = read_alerts(_runs(request, ctx))
    for a in alerts:
        a["links"] = _links(ctx.base, a["run"], ctx.query)
    return json_response({"alerts": alerts}, headers={"Cache-Control": "no-cache"})


@router.get("/flood/{run_id}", summary="A flood run's report (run.json) with links")
def run_report(run_id: str, request: Request, ctx: CtxDep) -> Response:
    result = _run(request, ctx, run_id)
    return json_response({**result.report, "id": run_id, "instants": step_instants(result),
                          "links": _links(ctx.base, run_id, ctx.query)}, headers={"Cache-Control": "no-cache"})


def _tiles(request: Request, ctx: Ctx, run_id: str) -> tuple[Any, FloodTiles]:
    result = _run(request, ctx, run_id)
    st = _state(request)
    stamp = (result.root / "run.json").stat().st_mtime
    hit = st.tiles.get(run_id)
    if hit is None or hit[0] != stamp:
        hit = (stamp, FloodTiles.of(result))
        st.tiles[run_id] = hit
    return result, hit[1]


@router.get("/flood/{run_id}/tilejson.json", summary="TileJSON 3.0 of a run's depth, velocity or arrival tiles")
def run_tilejson(run_id: str, request: Request, ctx: CtxDep, var: str = "depth", tms: str = "WebMercatorQuad"
                 ) -> Response:
    result, tiles = _tiles(request, ctx, run_id)
    if var not in ("depth", "velocity", "arrival"):
        raise TileRequestError(f"var {var!r} is not depth, velocity or arrival")
    doc = tilejson(tiles, f"{ctx.base}/flood/{run_id}", var, step_instants(result), tms_id=tms, query=ctx.query,
                   name=f"{run_id} {var}")
    return json_response(doc, headers={"Cache-Control": "no-cache"})


def _tile(request: Request, ctx: Ctx, run_id: str, var: str, when: str, tms_id: str, z: int, x: int, y: int,
          fmt: str) -> Response:
    result, tiles = _tiles(request, ctx, run_id)
    try:
        t = step_at(result, when)
    except FloodInputError as exc:
        raise TileRequestError(str(exc)) from None
    path = tiles.path(var, t)
    st = path.stat()
    key = f"flood|{path}|{st.st_mtime_ns}|{tms_id}/{z}/{x}/{y}.{fmt}"
    etag = '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": cache_control(False, ctx.catalog.settings.cache_max_age)}
    if etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    content = ctx.catalog.tiles.get(key)
    if content is None:
        content = ctx.catalog.tiles.put(key, tiles.tile(var, t, tms_id, z, x, y, fmt).content)
    return Response(content, headers=headers, media_type="image/png" if fmt == "png" else "image/webp")


@router.get("/flood/{run_id}/{var}/{when}/{z}/{x}/{y}.{fmt}", summary="Depth/velocity/arrival tile (XYZ)")
def run_xyz_tile(run_id: str, var: str, when: str, z: int, x: int, y: int, fmt: str, request: Request,
                 ctx: CtxDep) -> Response:
    return _tile(request, ctx, run_id, var, when, "WebMercatorQuad", z, x, y, fmt)


@router.get("/flood/{run_id}/{var}/{when}/{tms_id}/{z}/{x}/{y}.{fmt}",
            summary="Depth/velocity/arrival tile on a tile matrix set (x = column, y = row)")
def run_tms_tile(run_id: str, var: str, when: str, tms_id: str, z: int, x: int, y: int, fmt: str,
                 request: Request, ctx: CtxDep) -> Response:
    return _tile(request, ctx, run_id, var, when, tms_id, z, x, y, fmt)


def _capabilities(request: Request, ctx: Ctx, run_id: str) -> Response:
    result, tiles = _tiles(request, ctx, run_id)
    xml = wmts_capabilities(tiles, f"{ctx.base}/flood/{run_id}", step_instants(result),
                            title=f"{ctx.catalog.settings.title}: flood run {run_id}", query=ctx.query)
    return Response(xml, media_type="application/xml", headers={"Cache-Control": "no-cache"})


@router.get("/flood/{run_id}/wmts/1.0.0/WMTSCapabilities.xml", summary="WMTS 1.0.0 of a run, with a Time dimension")
def run_wmts_rest(run_id: str, request: Request, ctx: CtxDep) -> Response:
    return _capabilities(request, ctx, run_id)


@router.get("/flood/{run_id}/wmts", summary="WMTS 1.0.0 KVP of a run: GetCapabilities, GetTile with TIME")
def run_wmts_kvp(run_id: str, request: Request, ctx: CtxDep) -> Response:
    q = {k.upper(): v for k, v in request.query_params.items()}
    op = q.get("REQUEST", "GetCapabilities").lower()
    if op == "getcapabilities":
        return _capabilities(request, ctx, run_id)
    if op != "gettile":
        raise TileRequestError(f"REQUEST={q['REQUEST']!r}: use GetCapabilities or GetTile")
    missing = [p for p in ("LAYER", "TILEMATRIXSET", "TILEMATRIX", "TILEROW", "TILECOL") if not q.get(p)]
    if missing:
        raise TileRequestError(f"GetTile needs {', '.join(missing)}")
    try:
        z, row, col = int(q["TILEMATRIX"]), int(q["TILEROW"]), int(q["TILECOL"])
    except ValueError as exc:
        raise TileRequestError("TILEMATRIX, TILEROW and TILECOL must be integers") from exc
    return _tile(request, ctx, run_id, q["LAYER"], q.get("TIME", "max"), q["TILEMATRIXSET"], z, col, row, "png")


@router.get("/flood/{run_id}/inundation/{z}/{x}/{y}.{fmt}", summary="Inundation polygons by depth class (MVT)")
def run_inundation(run_id: str, z: int, x: int, y: int, fmt: Literal["mvt", "pbf"], request: Request,
                   ctx: CtxDep) -> Response:
    result = _run(request, ctx, run_id)
    st = _state(request)
    path = result.root / "inundation.gpkg"
    stamp = path.stat().st_mtime
    hit = st.mvt.get(run_id)
    if hit is None or hit[0] != stamp:
        hit = (stamp, InundationTiles(path))
        st.mvt[run_id] = hit
    key = f"flood-mvt|{path}|{stamp}|{z}/{x}/{y}"
    content = ctx.catalog.tiles.get(key)
    if content is None:
        content = ctx.catalog.tiles.put(key, hit[1].tile(z, x, y))
    headers = {"Cache-Control": cache_control(False, ctx.catalog.settings.cache_max_age)}
    if not content:
        return Response(status_code=204, headers=headers)
    return Response(content, headers=headers, media_type="application/vnd.mapbox-vector-tile")


def _impacts(request: Request, ctx: Ctx, run_id: str) -> Any:
    from cim.analysis.flood.impacts import FloodImpacts, ImpactParams, flood_impacts

    result = _run(request, ctx, run_id)
    params = ImpactParams()
    store = ctx.catalog.store
    if store is None:
        raise TileNotFoundError("impacts need the layer store (start the server with --store)")
    for name in (params.buildings, params.roads, params.population, params.shelters):
        if name in ctx.catalog.layers:
            ctx.catalog.layer(name, ctx.who)  # the caller must see every layer the impacts are made of
    st = _state(request)
    stamp = (result.root / "run.json").stat().st_mtime
    hit = st.impacts.get(run_id)
    if hit is None or hit["stamp"] != stamp:
        with _LOCK:
            impacts: FloodImpacts = flood_impacts(result, store, params)
        hit = {"stamp": stamp, "impacts": impacts, "doc": impacts.to_dict()}
        st.impacts[run_id] = hit
    return hit


@router.get("/flood/{run_id}/impacts", summary="Affected buildings, impassable roads, people per community, shelters")
def run_impacts(run_id: str, request: Request, ctx: CtxDep) -> Response:
    hit = _impacts(request, ctx, run_id)
    return json_response(hit["doc"], headers={"Cache-Control": "private, no-cache"})


@router.get("/flood/{run_id}/impacts/{table}.geojson", summary="One impact table as GeoJSON (lon/lat)")
def run_impacts_geojson(run_id: str, table: Literal["buildings", "roads", "communities", "shelters"],
                        request: Request, ctx: CtxDep) -> Response:
    hit = _impacts(request, ctx, run_id)
    frame = getattr(hit["impacts"], table).to_crs(4326)
    return Response(frame.to_json(drop_id=True, to_wgs84=False).encode("utf-8"), media_type="application/geo+json",
                    headers={"Cache-Control": "private, no-cache"})


@router.get("/flood/{run_id}/point", summary="Depth and speed through time, maximum and arrival at one place")
def run_point(run_id: str, lon: float, lat: float, request: Request, ctx: CtxDep) -> Response:
    import rasterio

    from cim.sources.crs import transformer

    result = _run(request, ctx, run_id)
    with rasterio.open(result.raster_path("max_depth")) as src:
        crs = src.crs.to_wkt()
    x, y = transformer("EPSG:4326", crs).transform(lon, lat)
    return json_response({"lon": lon, "lat": lat, **result.point(x, y)}, headers={"Cache-Control": "no-cache"})


@router.get("/flood/{run_id}/impacts/{table}.csv", summary="One impact table as CSV (UTF-8 with BOM, WKT lon/lat)")
def run_impacts_csv(run_id: str, table: Literal["buildings", "roads", "communities", "shelters"],
                    request: Request, ctx: CtxDep) -> Response:
    import io

    import shapely

    hit = _impacts(request, ctx, run_id)
    frame = getattr(hit["impacts"], table).to_crs(4490)
    out = frame.drop(columns=frame.geometry.name)
    out["wkt"] = shapely.to_wkt(frame.geometry.values, rounding_precision=7)
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    return Response(("\ufeff" + buf.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{run_id}-{table}.csv"',
                             "Cache-Control": "private, no-cache"})


def _model_inputs(root: Any) -> dict[str, Any]:
    import json

    path = root / "build.json"
    return json.loads(path.read_text(encoding="utf-8")).get("inputs", {}) if path.is_file() else {}


def attach_warnings(app: Any) -> Any:
    """With flood runs and a sensing store (`--ingest`), start a warning run on each sensor alert.

    The run uses the first served model whose build names a DEM (its footprints as buildings); its alert lands in
    the runs folder (`GET /flood/alerts`). Returns the `FloodWarner`, or None when there is nothing to attach to.
    """
    from pathlib import Path

    from cim.analysis.flood.gauges import SensingGauges
    from cim.analysis.flood.warning import FloodWarner, WarningParams

    catalog = app.state.catalog
    s = catalog.settings
    sensing = getattr(catalog, "sensing", None)
    if not (s.flood_runs and s.flood_warnings and sensing is not None):
        return None
    for model in catalog.models.values():
        inputs = _model_inputs(model.root)
        if inputs.get("dem"):
            base = {"dem": Path(inputs["dem"]), "buildings": Path(inputs["buildings"]) if inputs.get("buildings")
                    else "", "outlets": "", "drainage": "3y"}
            warner = FloodWarner(s.flood_runs, SensingGauges(sensing), WarningParams(base=base), store=catalog.store)
            sensing.on_alert(warner.on_alert)
            app.state.flood_warner = warner
            return warner
    return None


class FloodJob(BaseModel):
    """A flood run on a served model (its build's DEM and footprints); the fields of `FloodParams` that carry no
    server path. Losses are mm/h (drainage also "3y")."""

    model_config = ConfigDict(extra="forbid")

    storm: ChicagoStorm = Field(default_factory=ChicagoStorm)
    building_mode: Literal["walls", "porosity"] = "walls"
    drainage: float | str = 0.0
    infiltration: float = 0.0
    manning: float = 0.035
    static: bool = False
    resolution: float | None = Field(None, gt=0)
    bbox: tuple[float, float, float, float] | None = None
    boundary: Literal["open", "closed"] = "open"
    after_min: float = Field(30.0, ge=0)
    output_interval_min: float = Field(5.0, gt=0)
    depth_classes: list[float] | None = None


@router.post("/analysis/{model}/flood", summary="Start a flood run on a model's DEM and buildings (a job)")
def start_run(model: str, body: FloodJob, request: Request, ctx: CtxDep) -> Response:
    from pathlib import Path

    from cim.analysis.flood.run import FloodParams, run_flood

    runs = _runs(request, ctx)
    m = ctx.catalog.model(model, ctx.who)
    inputs = _model_inputs(m.root)
    if not inputs.get("dem"):
        raise TileRequestError(f"model {model!r} was built without a DEM; a flood run needs one")
    if isinstance(body.drainage, str) and not body.drainage.strip().lower().endswith("y"):
        raise TileRequestError("drainage is a number (mm/h) or a design return period such as '3y'")
    values = body.model_dump(exclude_none=True)
    params = FloodParams.build(dem=Path(inputs["dem"]), buildings=Path(inputs["buildings"]) if inputs.get(
        "buildings") else "", **values)
    if not runs.writable():
        raise TileRequestError(f"the flood runs folder {runs.root} is not writable by the server")
    out = runs.new_path(model)
    job = job_manager(request).submit(
        lambda progress: run_flood(params, out, progress=progress), owner=ctx.who.key_id, kind="flood",
        render=lambda result: ({**result.report, "id": out.name,
                                "links": _links(ctx.base, out.name, ctx.query)}, "application/json"),
        params=body.model_dump(mode="json"))
    return accepted(job, ctx)
