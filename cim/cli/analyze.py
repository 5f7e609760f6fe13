"""`cim analyze ...`: the planning analyses (cim.analysis.planning) and urban waterlogging (cim.analysis.flood), each
command one library call.

    cim analyze height-control [--scheme FILE]
    cim analyze sunlight --zone II [--ground-cell 5 --raster sun.tif] [--scheme FILE]
    cim analyze shadow --at 10 --of scheme --scheme FILE
    cim analyze viewshed --observer 113.305,40.09 --radius 500 --raster view.tif
    cim analyze skyline --viewpoint 113.305,40.09
    cim analyze compare --scheme FILE --viewpoint 113.305,40.09

The city is the sample city unless `--model DIR` (a `cim build` output) or `--buildings FILE [--dem FILE]` says
otherwise. Results: a summary on the terminal, the whole result with `--json`, GeoJSON with `--out FILE`, a GeoTIFF
with `--raster FILE`, a layer of the store with `--to-layer NAME [--store FILE]`.

    cim analyze flood OUT                                   # the sample city, 50-year 60-min Chicago storm
    cim analyze flood OUT --dem dem.tif --buildings b.gpkg --storm 100 --duration 120 --drainage 3y
    cim analyze flood OUT --rain rain.csv --static          # ponding map in seconds (fill-spill-merge)
    cim analyze flood OUT --gauges readings.csv --start 2024-07-20T08:00Z --duration 90
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cim.cli.options import JsonOpt, OverwriteOpt, StoreOpt, emit, progress_bar
from cim.errors import InputError, OutputExistsError

app = typer.Typer(help="Analyses: height control, sunlight hours (GB 50180), shadow, viewshed, skyline, scheme "
                       "comparison; urban waterlogging (flood).", no_args_is_help=True)

ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="A `cim build` output folder (its build.json "
                                                                  "names the footprints and DEM).")]
BuildingsOpt = Annotated[Optional[Path], typer.Option("--buildings", help="Footprints file (default: the sample "
                                                                          "city).")]
DemOpt = Annotated[Optional[Path], typer.Option("--dem", help="DEM of --buildings (terrain and bases).")]
LevelOpt = Annotated[int, typer.Option("--level", help="2: LOD1 prisms; 3: LOD2 roofs.")]
SchemeOpt = Annotated[Optional[Path], typer.Option("--scheme", help="A proposed massing: footprints with a "
                                                                    "`height` (or `floors`), any vector format.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Write the result as GeoJSON (lon/lat).")]
LayerOpt = Annotated[Optional[str], typer.Option("--to-layer", help="Store the result as this layer of --store.")]
BboxOpt = Annotated[Optional[str], typer.Option("--bbox", help="minlon,minlat,maxlon,maxlat: only this area.")]
YearOpt = Annotated[int, typer.Option("--year", help="Year of the standard day (1..6000).")]
IdsOpt = Annotated[Optional[str], typer.Option("--ids", help="Building IDs, comma-separated.")]


def _floats(text: Optional[str], n: int, opt: str) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise InputError(f"{opt} {text!r}: expected {n} comma-separated numbers")
    return values


def _ids(text: Optional[str]) -> Optional[list[str]]:
    return None if not text else [v.strip() for v in text.split(",") if v.strip()]


def _scene(model: Optional[Path], buildings: Optional[Path], dem: Optional[Path], level: int,
           scheme: Optional[Path]) -> Any:
    from cim.analysis.planning.scene import CityScene, Scheme

    if model is not None:
        scene = CityScene.from_build(model, level=level if level != 2 else None)
    elif buildings is not None:
        scene = CityScene.open(buildings, dem, level=level)
    else:
        scene = CityScene.sample(level=level)
    return scene.with_scheme(Scheme.read(scheme)) if scheme is not None else scene


def _check_new(path: Optional[Path], overwrite: bool) -> None:
    """Refuse to replace an existing output file without --overwrite."""
    if path is not None and path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")


def _params(cls: type, **values: Any) -> Any:
    from cim.analysis.planning.sunlight import build_params

    return build_params(cls, **{k: v for k, v in values.items() if v is not None})


def _outputs(result: Any, as_json: bool, human: str, out: Optional[Path], overwrite: bool, to_layer: Optional[str],
             store: Optional[Path], geojson: Any = None) -> None:
    import json

    if out is not None:
        _check_new(out, overwrite)
        doc = geojson() if geojson is not None else result.to_geojson()
        out.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    if to_layer is not None:
        from layers.store import default_store_path

        result.to_layer(store or default_store_path(), to_layer)
    emit(result, as_json, human)


def _sample_zones() -> Path:
    from cim.sample import default_sample

    return default_sample().layers["height_zones"]


@app.command("height-control")
def height_control_cmd(
    zones: Annotated[Optional[Path], typer.Option("--zones", help="Height-control zones file (default: the "
                                                                  "store's layer with --store, else the sample "
                                                                  "city's).")] = None,
    zones_layer: Annotated[str, typer.Option("--zones-layer", help="The zones layer of --store.")] = "height_zones",
    limit_field: Annotated[str, typer.Option("--limit-field", help="The zones' limit field (m).")] = "max_height_m",
    tolerance: Annotated[float, typer.Option("--tolerance", help="Metres allowed over the limit.")] = 0.0,
    ids: IdsOpt = None, bbox: BboxOpt = None,
    model: ModelOpt = None, buildings: BuildingsOpt = None, dem: DemOpt = None, level: LevelOpt = 2,
    scheme: SchemeOpt = None, out: OutOpt = None, to_layer: LayerOpt = None, store: StoreOpt = None,
    overwrite: OverwriteOpt = False, as_json: JsonOpt = False,
) -> None:
    """Buildings (and a scheme) against the height-control zones: violations with height, limit and excess."""
    from cim.analysis.planning.height import HeightControlParams, height_control, load_zones

    params = _params(HeightControlParams, limit_field=limit_field, tolerance=tolerance, buildings=_ids(ids),
                     bbox=_floats(bbox, 4, "--bbox"))
    scene = _scene(model, buildings, dem, level, scheme)
    if zones is not None:
        z = load_zones(zones)
    elif store is not None:
        z = load_zones(store=store, layer=zones_layer)
    else:
        z = load_zones(_sample_zones())
    r = height_control(scene, z, params)
    s = r.summary()
    lines = [f"{s['violations']} violations by {s['buildings_violating']} of {s['buildings_checked']} buildings "
             f"(largest excess {s['max_excess']:.1f} m)"]
    for _, v in r.violations().head(15).iterrows():
        lines.append(f"  {v['id']} {v['name']}: {v['height']:.1f} m in {v['zone_code']} {v['zone_name']} "
                     f"(limit {v['limit']:g} m, +{v['excess']:.1f} m)")
    _outputs(r, as_json, "\n".join(lines), out, overwrite, to_layer, store)


@app.command("sunlight")
def sunlight_cmd(
    zone: Annotated[str, typer.Option("--zone", help="Building climate zone (GB 50178): I..VII.")] = "II",
    small_city: Annotated[bool, typer.Option("--small-city", help="Urban population under 500,000.")] = False,
    kind: Annotated[str, typer.Option("--kind", help="housing, elderly or renewal.")] = "housing",
    day: Annotated[Optional[str], typer.Option("--day", help="dahan (大寒日) or dongzhi (冬至日); default: the "
                                                             "zone's.")] = None,
    year: YearOpt = 2001,
    counting: Annotated[str, typer.Option("--counting", help="cumulative or continuous.")] = "cumulative",
    min_segment: Annotated[float, typer.Option("--min-segment", help="Shortest counted segment (min).")] = 5.0,
    sweep: Annotated[float, typer.Option("--sweep", help="Sweep angle (degrees).")] = 15.0,
    step: Annotated[int, typer.Option("--step", help="Seconds between rays (<= 60).")] = 60,
    spacing: Annotated[float, typer.Option("--spacing", help="Metres between windows along a facade.")] = 3.0,
    ground_cell: Annotated[Optional[float], typer.Option("--ground-cell", help="Also a ground raster with this "
                                                                               "cell (m).")] = None,
    raster: Annotated[Optional[Path], typer.Option("--raster", help="Write the ground raster (GeoTIFF).")] = None,
    ids: IdsOpt = None, bbox: BboxOpt = None,
    model: ModelOpt = None, buildings: BuildingsOpt = None, dem: DemOpt = None, level: LevelOpt = 2,
    scheme: SchemeOpt = None, out: OutOpt = None, to_layer: LayerOpt = None, store: StoreOpt = None,
    overwrite: OverwriteOpt = False, as_json: JsonOpt = False,
) -> None:
    """Sunlight hours of every housing window (GB 50180-2018, counted as GB/T 50947-2014 prescribes)."""
    from cim.analysis.planning.standards import SunlightRule
    from cim.analysis.planning.sunlight import GroundGrid, SunlightParams, sunlight

    if raster is not None and ground_cell is None:
        ground_cell = 5.0
    rule = _params(SunlightRule, counting=counting, min_segment_minutes=min_segment, sweep_angle=sweep,
                   step_seconds=step)
    params = _params(SunlightParams, year=year, climate_zone=zone, large_city=not small_city, kind=kind, day=day,
                     rule=rule, spacing=spacing, buildings=_ids(ids), bbox=_floats(bbox, 4, "--bbox"),
                     ground=None if ground_cell is None else GroundGrid(cell=ground_cell))
    _check_new(raster, overwrite)
    scene = _scene(model, buildings, dem, level, scheme)
    with progress_bar(as_json) as progress:
        r = sunlight(scene, params, progress=progress)
    if raster is not None:
        r.to_raster(raster, overwrite=overwrite)
    s = r.summary()
    day_lines = [f"{d['date']} {d['requirement']}" for d in r.to_dict()["days"].values()]
    lines = [*day_lines,
             f"{s['buildings_failing']} of {s['buildings']} buildings fail; {s['windows_failing']} of {s['windows']} "
             f"windows fail ({s['windows_unfavourable']} face away from the sun); {s['rays']:,} rays"]
    for _, b in r.buildings[~r.buildings["passes"]].head(10).iterrows():
        lines.append(f"  {b['id']} {b['name']}: floors {b['floors_failing']} fail")
    _outputs(r, as_json, "\n".join(lines), out, overwrite, to_layer, store,
             geojson=lambda: r.to_geojson(only_failing=False))


@app.command("shadow")
def shadow_cmd(
    at: Annotated[Optional[float], typer.Option("--at", help="True solar hour of an instant shadow; without it: "
                                                             "minutes in shadow over the day.")] = None,
    on_date: Annotated[Optional[str], typer.Option("--date", help="A civil date YYYY-MM-DD (default: the standard "
                                                                  "day).")] = None,
    day: Annotated[str, typer.Option("--day", help="dahan or dongzhi.")] = "dahan",
    year: YearOpt = 2001,
    of: Annotated[Optional[str], typer.Option("--of", help="Building IDs (comma-separated) or `scheme`: whose "
                                                           "shadow.")] = None,
    cell: Annotated[float, typer.Option("--cell", help="Grid cell (m).")] = 2.0,
    raster: Annotated[Optional[Path], typer.Option("--raster", help="Write the raster (GeoTIFF).")] = None,
    bbox: BboxOpt = None,
    model: ModelOpt = None, buildings: BuildingsOpt = None, dem: DemOpt = None, level: LevelOpt = 2,
    scheme: SchemeOpt = None, out: OutOpt = None, to_layer: LayerOpt = None, store: StoreOpt = None,
    overwrite: OverwriteOpt = False, as_json: JsonOpt = False,
) -> None:
    """The shadow of buildings (or a scheme) at an instant, or the minutes in shadow over a day."""
    from cim.analysis.planning.shadow import ShadowParams, shadow

    params = _params(ShadowParams, at=at, on_date=on_date, day=day, year=year, of=_ids(of), cell=cell,
                     bbox=_floats(bbox, 4, "--bbox"))
    _check_new(raster, overwrite)
    scene = _scene(model, buildings, dem, level, scheme)
    with progress_bar(as_json) as progress:
        r = shadow(scene, params, progress=progress)
    if raster is not None:
        r.to_raster(raster, overwrite=overwrite, caused=r.caused is not None)
    s = r.summary()
    if r.instant:
        human = (f"{s['date']} {at:g} h: sun at {s['sun']['elevation']:.1f} deg; shadow of {len(r.of) or 'all'} "
                 f"buildings {s['shadow_of_m2']:.0f} m2, other shadow {s['shadow_other_m2']:.0f} m2")
    else:
        human = f"{s['date']}: mean {s['mean_shadow_min']} min in shadow per ground cell" + (
            f"; the {len(r.of)} buildings add >= 1 h of shadow to {s['caused_m2_over_60min']:.0f} m2"
            if r.caused is not None else "")
    _outputs(r, as_json, human, out, overwrite, to_layer, store)


@app.command("viewshed")
def viewshed_cmd(
    observer: Annotated[str, typer.Option("--observer", help="lon,lat of the observer.")],
    height: Annotated[float, typer.Option("--height", help="Metres above the surface (eye: 1.6).")] = 1.6,
    absolute: Annotated[bool, typer.Option("--absolute", help="--height is an elevation.")] = False,
    radius: Annotated[float, typer.Option("--radius", help="Metres.")] = 500.0,
    cell: Annotated[float, typer.Option("--cell", help="Grid cell (m).")] = 2.0,
    raster: Annotated[Optional[Path], typer.Option("--raster", help="Write the visibility raster.")] = None,
    model: ModelOpt = None, buildings: BuildingsOpt = None, dem: DemOpt = None, level: LevelOpt = 2,
    scheme: SchemeOpt = None, out: OutOpt = None, to_layer: LayerOpt = None, store: StoreOpt = None,
    overwrite: OverwriteOpt = False, as_json: JsonOpt = False,
) -> None:
    """What an observer sees over terrain and buildings: visible area and visible buildings."""
    from cim.analysis.planning.viewshed import ViewshedParams, viewshed

    params = _params(ViewshedParams, observer=_floats(observer, 2, "--observer"), height=height, absolute=absolute,
                     radius=radius, cell=cell)
    _check_new(raster, overwrite)
    scene = _scene(model, buildings, dem, level, scheme)
    with progress_bar(as_json) as progress:
        r = viewshed(scene, params, progress=progress)
    if raster is not None:
        r.to_raster(raster, overwrite=overwrite)
    s = r.summary()
    human = (f"visible: {s['visible_area_m2']:.0f} m2 ({100 * s['visible_fraction']:.1f}% of {radius:g} m around), "
             f"{s['visible_buildings']} buildings")
    _outputs(r, as_json, human, out, overwrite, to_layer, store)


@app.command("skyline")
def skyline_cmd(
    viewpoint: Annotated[str, typer.Option("--viewpoint", help="lon,lat of the viewpoint.")],
    height: Annotated[float, typer.Option("--height", help="Metres above the surface.")] = 1.6,
    absolute: Annotated[bool, typer.Option("--absolute", help="--height is an elevation.")] = False,
    step: Annotated[float, typer.Option("--step", help="Degrees between azimuths.")] = 0.5,
    max_distance: Annotated[float, typer.Option("--max-distance", help="Metres.")] = 5000.0,
    model: ModelOpt = None, buildings: BuildingsOpt = None, dem: DemOpt = None, level: LevelOpt = 2,
    scheme: SchemeOpt = None, out: OutOpt = None, to_layer: LayerOpt = None, store: StoreOpt = None,
    overwrite: OverwriteOpt = False, as_json: JsonOpt = False,
) -> None:
    """The skyline from a viewpoint (elevation angle by azimuth) and the buildings forming it."""
    from cim.analysis.planning.skyline import SkylineParams, skyline

    params = _params(SkylineParams, viewpoint=_floats(viewpoint, 2, "--viewpoint"), height=height,
                     absolute=absolute, azimuth_step=step, max_distance=max_distance)
    scene = _scene(model, buildings, dem, level, scheme)
    r = skyline(scene, params)
    lines = [f"highest point {r.summary()['max_elevation']} deg; {r.summary()['buildings']} buildings form it"]
    for _, f in r.formers().head(10).iterrows():
        lines.append(f"  {f['id']} {f['name'] or ''}: {f['degrees']:g} deg wide, up to {f['max_elevation']:.2f} deg "
                     f"at {f['distance']:.0f} m")
    _outputs(r, as_json, "\n".join(lines), out, overwrite, to_layer, store)


@app.command("compare")
def compare_cmd(
    scheme: Annotated[Path, typer.Option("--scheme", help="The proposed massing (footprints with height).")],
    viewpoint: Annotated[Optional[str], typer.Option("--viewpoint", help="lon,lat: also compare the skyline.")]
    = None,
    observer: Annotated[Optional[str], typer.Option("--observer", help="lon,lat: also compare the viewshed.")]
    = None,
    with_shadow: Annotated[bool, typer.Option("--shadow", help="Also the shadow the scheme adds over the day.")]
    = False,
    zones: Annotated[Optional[Path], typer.Option("--zones", help="Height-control zones file (default: --store's "
                                                                  "layer, else the sample city's).")] = None,
    zone: Annotated[str, typer.Option("--zone", help="Building climate zone (GB 50178).")] = "II",
    year: YearOpt = 2001,
    spacing: Annotated[float, typer.Option("--spacing", help="Metres between windows.")] = 3.0,
    bbox: BboxOpt = None,
    model: ModelOpt = None, buildings: BuildingsOpt = None, dem: DemOpt = None, level: LevelOpt = 2,
    out: OutOpt = None, to_layer: LayerOpt = None, store: StoreOpt = None,
    overwrite: OverwriteOpt = False, as_json: JsonOpt = False,
) -> None:
    """Every analysis with and without a scheme: what changes, and which scheme building causes it."""
    from cim.analysis.planning.compare import ComparisonParams, compare_scheme
    from cim.analysis.planning.height import load_zones
    from cim.analysis.planning.scene import Scheme
    from cim.analysis.planning.shadow import ShadowParams
    from cim.analysis.planning.skyline import SkylineParams
    from cim.analysis.planning.sunlight import SunlightParams
    from cim.analysis.planning.viewshed import ViewshedParams

    sp = _params(SunlightParams, climate_zone=zone, year=year, spacing=spacing, bbox=_floats(bbox, 4, "--bbox"))
    params = _params(ComparisonParams, sunlight=sp,
                     skyline=None if viewpoint is None else _params(SkylineParams,
                                                                    viewpoint=_floats(viewpoint, 2, "--viewpoint")),
                     viewshed=None if observer is None else _params(ViewshedParams,
                                                                    observer=_floats(observer, 2, "--observer")),
                     shadow=ShadowParams(year=year) if with_shadow else None)
    the_scheme = Scheme.read(scheme)
    scene = _scene(model, buildings, dem, level, None)
    z = load_zones(zones) if zones is not None else (load_zones(store=store) if store is not None else
                                                      load_zones(_sample_zones()) if model is None and buildings is None
                                                      else None)
    with progress_bar(as_json) as progress:
        r = compare_scheme(scene, the_scheme, params, zones=z, progress=progress)
    s = r.summary()
    lines = [f"scheme {s['scheme']}: {len(s['buildings'])} buildings, demolishes {len(s['removed'])}"]
    if "sunlight" in s:
        su = s["sunlight"]
        lines.append(f"sunlight: {su['windows_losing']} windows lose time ({su['windows_newly_failing']} newly fail, "
                     f"{su['windows_worsened']} already failing lose more); causes {su['by_cause']}")
    if "height" in s:
        lines.append(f"height control: {s['height']['new_violations']} new violations")
    if "skyline" in s:
        lines.append(f"skyline: raised over {s['skyline']['degrees_raised']:g} deg by {s['skyline']['by_building']}")
    if "viewshed" in s:
        v = s["viewshed"]
        lines.append(f"viewshed: {v['newly_hidden_m2']:.0f} m2 newly hidden, buildings hidden {v['buildings_hidden']}")
    _outputs(r, as_json, "\n".join(lines), out, overwrite, to_layer, store)


__all__ = ["app"]


# ---------------------------------------------------------------------------- urban waterlogging (flood)


def _rate(text: str, opt: str) -> float | str:
    """A loss given as mm/h, a file, or (drainage) a design return period such as 3y."""
    try:
        return float(text)
    except ValueError:
        return text


@app.command("flood")
def flood_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder (depth/velocity COGs, maxima, polygons, run.json).")],
    dem: Annotated[Optional[Path], typer.Option("--dem", help="DEM (default: the sample city, with its buildings)."
                                                )] = None,
    buildings: Annotated[Optional[Path], typer.Option("--buildings", help="Footprints to burn in.")] = None,
    no_buildings: Annotated[bool, typer.Option("--no-buildings", help="Bare terrain, no buildings.")] = False,
    building_mode: Annotated[str, typer.Option("--building-mode", help="walls | porosity.")] = "walls",
    outlets: Annotated[Optional[Path], typer.Option("--outlets", help="Rivers/lakes (polygons) that take the water "
                                                    "reaching them (default with the sample city: its river).")] = None,
    no_outlets: Annotated[bool, typer.Option("--no-outlets", help="No outlets but the raster's edge.")] = False,
    storm: Annotated[Optional[float], typer.Option("--storm", help="Design storm return period P (years); the "
                                                                   "default rain, P=50.")] = None,
    rain: Annotated[Optional[Path], typer.Option("--rain", help="Rainfall CSV (minutes or time; mm_h or mm)."
                                                 )] = None,
    gauges: Annotated[Optional[Path], typer.Option("--gauges", help="Recorded rain-gauge readings CSV "
                                                   "(gauge_id,x,y,time,mm_h; lon/lat).")] = None,
    start: Annotated[Optional[datetime], typer.Option("--start", help="Start of a gauge run (UTC).")] = None,
    duration: Annotated[float, typer.Option("--duration", help="Storm duration (min); the gauge window.")] = 60.0,
    after: Annotated[float, typer.Option("--after", help="Minutes simulated after the rain.")] = 30.0,
    peak: Annotated[float, typer.Option("--peak-ratio", help="Chicago peak position (0-1).")] = 0.4,
    formula: Annotated[Optional[str], typer.Option("--formula", help="A1,C,b,n of the city's rainstorm formula "
                                                   "q=167A1(1+ClgP)/(t+b)^n (default: Beijing).")] = None,
    drainage: Annotated[str, typer.Option("--drainage", help="Drainage capacity: mm/h, a raster or vector file "
                                                             "(drainage_mm_h), or e.g. 3y.")] = "0",
    infiltration: Annotated[str, typer.Option("--infiltration", help="Infiltration: mm/h or a file.")] = "0",
    manning: Annotated[str, typer.Option("--manning", help="Manning's n, or a raster of it.")] = "0.035",
    static: Annotated[bool, typer.Option("--static", help="Static ponding only (seconds).")] = False,
    resolution: Annotated[Optional[float], typer.Option("--resolution", help="Coarsen the DEM to this cell size "
                                                                             "(m).")] = None,
    bbox: Annotated[Optional[str], typer.Option("--bbox", help="left,bottom,right,top in the DEM's CRS.")] = None,
    boundary: Annotated[str, typer.Option("--boundary", help="open | closed edges.")] = "open",
    interval: Annotated[float, typer.Option("--interval", help="Minutes between depth outputs.")] = 5.0,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Cores for the solver.")] = None,
    local_steps: Annotated[int, typer.Option("--local-steps", help="Local time stepping: blocks take up to 2^N "
                                                                   "times the global step where water is shallow "
                                                                   "(0: global step, the reference).")] = 0,
    impacts: Annotated[bool, typer.Option("--impacts", help="Also work out affected buildings, roads, people and "
                                                            "shelters (from --store, else the sample city) into "
                                                            "OUT/impacts.")] = False,
    to_layer: Annotated[Optional[str], typer.Option("--to-layer", help="Also store the inundation polygons as "
                                                                       "this layer of --store (and the impacts as "
                                                                       "NAME_buildings, ...).")] = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Urban waterlogging: where water stands, how deep and when (static or 2D shallow-water)."""
    from cim.analysis.flood import FloodParams, run_flood

    storm_spec: dict[str, Any] | None = None
    if rain is None and gauges is None:
        storm_spec = {"return_period": 50.0 if storm is None else storm, "duration_min": duration,
                      "peak_ratio": peak}
        f = _floats(formula, 4, "--formula")
        if f is not None:
            storm_spec["formula"] = {"a1": f[0], "c": f[1], "b": f[2], "n": f[3], "name": f"--formula {formula}"}
    elif storm is not None:
        raise InputError("--storm cannot be combined with --rain or --gauges")
    params = FloodParams.build(
        dem=dem, buildings="" if no_buildings else buildings, building_mode=building_mode,
        outlets="" if no_outlets else outlets, storm=storm_spec,
        rain_file=rain, gauges_file=gauges, start=start, after_min=after,
        duration_min=(duration + after) if gauges is not None else None,
        drainage=_rate(drainage, "--drainage"), infiltration=_rate(infiltration, "--infiltration"),
        manning=_rate(manning, "--manning"), static=static, resolution=resolution,
        bbox=_floats(bbox, 4, "--bbox"), boundary=boundary, output_interval_min=interval, threads=threads,
        local_levels=local_steps)
    with progress_bar(as_json) as cb:
        result = run_flood(params, out, overwrite=overwrite, progress=cb)
    found = None
    if impacts:
        from cim.analysis.flood.impacts import flood_impacts, sample_city_files

        if store is None and dem is None:
            found = flood_impacts(result, files=sample_city_files())
        else:
            from layers.store import LayerStore

            with LayerStore(store, read_only=True) as s:
                found = flood_impacts(result, s)
        found.write(result.root / "impacts")
        result.report["impacts"] = found.summary
    if to_layer:
        from layers.store import LayerStore

        with LayerStore(store) as s:
            result.to_layer(s, to_layer)
            if found is not None:
                found.to_layer(s, f"{to_layer}_")
    rep = result.report
    st = rep["statistics"]
    deep = sum(v for k, v in st["area_by_class_m2"].items())
    mb = rep["mass_balance"]
    affected = (f"; {found.summary['buildings_affected']} buildings, {found.summary['affected_population']} people "
                f"affected, {found.summary['shelters_dry']}/{found.summary['shelters_total']} shelters dry"
                if found is not None else "")
    emit(result, as_json,
         f"[green]flood[/] {result.root}: {rep['kind']}, {rep['rain']['source']}, "
         f"{rep['rain'].get('depth_mm', 0):.1f} mm; max depth {st['max_depth_m']:.2f} m, "
         f"{deep / 1e4:.2f} ha at >= {params.depth_classes[0]:g} m; mass balance error "
         f"{mb['relative_error']:.1e}{affected}; {rep['times']['total_s']:.1f} s")
