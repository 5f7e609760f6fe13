"""The `cim` command: argument parsing only.

Every command calls one public library function (the same one a notebook calls) and prints its result: rich text on a
terminal, one JSON document with `--json`. Library errors become exit codes in `EXIT_CODES`, here and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

import cim
from cim.errors import (
    BuildError,
    CimError,
    CRSError,
    InputError,
    InputNotFoundError,
    MissingToolError,
    OutputExistsError,
)
from layers.errors import LayerExistsError, LayerNotFoundError, StoreLockedError
from tiles.errors import ServerConfigError, TileRequestError

app = typer.Typer(
    name="cim",
    help="City digital twin engine: build CIM city models, keep business layers, serve tiles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One table from error class to exit code; the first matching class (most specific first) wins.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (InputNotFoundError, 3),
    (CRSError, 4),
    (InputError, 2),
    (OutputExistsError, 5),
    (MissingToolError, 6),
    (BuildError, 7),
    (LayerExistsError, 5),
    (LayerNotFoundError, 8),
    (StoreLockedError, 9),
    (ServerConfigError, 2),
    (TileRequestError, 2),
    (CimError, 1),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and no progress.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]

err_console = Console(stderr=True)


def emit(result: Any, as_json: bool, human: str | None = None) -> None:
    """Print a command's result: JSON (machines) or a short human summary (terminal)."""
    if as_json:
        payload = result.to_dict() if hasattr(result, "to_dict") else result
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")
    elif human is not None:
        Console().print(human)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cim {cim.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """City digital twin engine."""


@contextlib.contextmanager
def progress_bar(as_json: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress callback drawing a rich bar on a terminal; None (silent) with --json or when not a TTY."""
    if as_json or not sys.stderr.isatty():
        yield None
        return
    with Progress(
        TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=False,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder for the tileset.")],
    level: Annotated[int, typer.Option("--level", help="CIM level (2: terrain + LOD1 buildings; 3: oblique "
                                                       "photography, or LOD2 buildings without --oblique).")] = 2,
    dem: Annotated[Optional[Path], typer.Option("--dem", help="DEM GeoTIFF (default: the sample city).")] = None,
    ortho: Annotated[Optional[Path], typer.Option("--ortho", help="Orthophoto draped on the terrain.")] = None,
    buildings: Annotated[Optional[Path], typer.Option("--buildings", help="Building footprints file.")] = None,
    dsm: Annotated[Optional[Path], typer.Option("--dsm", help="DSM for heights missing from attributes.")] = None,
    oblique: Annotated[Optional[Path], typer.Option(
        "--oblique", help="ContextCapture production folder (metadata.xml + Data/), level 3.")] = None,
    height_field: Annotated[Optional[str], typer.Option("--height-field", help="Attribute with heights (m).")] = None,
    floors_field: Annotated[Optional[str], typer.Option("--floors-field", help="Attribute with floor counts.")] = None,
    storey_height: Annotated[float, typer.Option("--storey-height", help="Metres per floor.")] = 3.0,
    default_height: Annotated[float, typer.Option("--default-height", help="Height when nothing else gives one.")] = 10.0,
    id_field: Annotated[Optional[str], typer.Option("--id-field", help="Attribute with stable building IDs.")] = None,
    max_error: Annotated[float, typer.Option("--max-error", help="Terrain TIN tolerance in metres.")] = 0.5,
    crs: Annotated[Optional[str], typer.Option("--crs", help="CRS of inputs that declare none (EPSG:n or WKT).")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a CIM city model (3D Tiles 1.1) from DEM, orthophoto and footprints."""
    from cim.build import build_city
    from cim.models.footprints import BuildingOptions
    from cim.models.terrain import TerrainOptions

    bopts = BuildingOptions(height_field=height_field, floors_field=floors_field, storey_height=storey_height,
                            default_height=default_height, id_field=id_field)
    with progress_bar(as_json) as cb:
        report = build_city(out, level=level, dem=dem, ortho=ortho, buildings=buildings, dsm=dsm, oblique=oblique,
                            crs=crs,
                            building_options=bopts, terrain_options=TerrainOptions(max_error=max_error, crs=crs),
                            overwrite=overwrite, progress=cb)
    b = report.buildings or {}
    lines = [f"[green]built[/] {report.tileset}  ({report.seconds:.1f} s)"]
    if b:
        sources = ", ".join(f"{k} {v}" for k, v in b["height_sources"].items())
        lines.append(f"buildings: {b['buildings']} in {b['tiles']} tiles; heights from {sources}")
    if report.oblique:
        o = report.oblique
        lines.append(f"oblique: {o['files']} files, {o['contents']} tiles, {o['triangles']} triangles, "
                     f"{o['textures']} textures, {o['singulated_triangles']} triangles singulated")
    lines.extend(f"[yellow]warning:[/] {w}" for w in report.warnings)
    emit(report, as_json, "\n".join(lines))


@app.command("sample")
def sample_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder for the sample city.")],
    buildings: Annotated[int, typer.Option("--buildings", min=1, help="Number of building footprints.")] = 2500,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed and size: same city).")] = 7,
    no_rasters: Annotated[bool, typer.Option("--no-rasters", help="Vectors only: no DEM, DSM or orthophoto.")] = False,
    no_ortho: Annotated[bool, typer.Option("--no-ortho", help="Leave out the orthophoto (the slowest raster).")] = False,
    footprints_only: Annotated[
        bool, typer.Option("--footprints-only", help="Of the vector layers, write only the buildings.")
    ] = False,
    footprint_format: Annotated[
        str, typer.Option("--footprint-format", help="Footprints as gpkg (GeoPackage) or parquet (GeoParquet).")
    ] = "gpkg",
    no_oblique: Annotated[bool, typer.Option(
        "--no-oblique", help="Leave out the synthetic oblique production (oblique/; also left out by --no-rasters "
                             "and --no-ortho).")] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate the embedded sample city (Datong, EPSG:4547): DEM, DSM, orthophoto, footprints, layers, oblique
    production, manifest."""
    from cim.sample import generate

    with progress_bar(as_json) as cb:
        city = generate(out, buildings=buildings, seed=seed, overwrite=overwrite, rasters=not no_rasters,
                        ortho=not no_ortho, layers=("buildings",) if footprints_only else None,
                        footprint_format=footprint_format,  # type: ignore[arg-type]
                        oblique=not (no_oblique or no_rasters or no_ortho),
                        progress=None if cb is None else (lambda stage, f: cb("sample", round(f * 100), 100)))
    emit(city, as_json, f"[green]sample city[/] {city.root}: {city.n_buildings} buildings, "
                        f"{len(city.layers)} vector layers, manifest {city.manifest}")


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a library error (see EXIT_CODES)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cim` console script."""
    # Standalone mode lets click handle usage errors (exit 2) and --help; library errors come through here.
    try:
        app(args=argv)
    except CimError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        sys.exit(exit_code_for(exc))


# ---------------------------------------------------------------------- cim layers: the layer store (layers/)
layers_app = typer.Typer(
    help="Keep a city's themed business layers in one DuckDB file: import, query, version, export.",
    no_args_is_help=True,
)
StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", help="The store file (default: $CIM_STORE, else ./cim.duckdb)."),
]
VersionOpt = Annotated[Optional[int], typer.Option("--version", help="A layer version (default: current).")]


def _out(result: Any, as_json: bool, human: str) -> None:
    """Like `emit`, but human text goes out unwrapped (paths and ids must stay copyable)."""
    if as_json:
        emit(result, as_json)
    else:
        typer.echo(human)


def _layer_lines(items: list[Any]) -> str:
    return "\n".join(f"{i.name:<24} v{i.version:<3} {i.feature_count:>9}  {i.geometry_type:<14} {i.security:<12} "
                     f"{i.theme}  {i.title}" for i in items) or "no layers"


@layers_app.command("import")
def layers_import_cmd(
    file: Annotated[Path, typer.Argument(help="GeoJSON, GeoPackage, Shapefile/.zip, FlatGeobuf, GeoParquet, CSV, "
                                              "CityJSON, SQLite.")],
    name: Annotated[str, typer.Option("--name", help="Layer name: lower-case letters, digits, _.")],
    theme: Annotated[Optional[str], typer.Option("--theme", help="Theme path (see `cim layers themes`).")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="Display title.")] = None,
    department: Annotated[Optional[str], typer.Option("--department", help="Owning department.")] = None,
    security: Annotated[Optional[str], typer.Option("--security", help="public, internal or confidential.")] = None,
    level: Annotated[Optional[str], typer.Option("--level", help="Library level: base, theme or topic.")] = None,
    crs: Annotated[Optional[str], typer.Option("--crs", help="CRS of a file that declares none.")] = None,
    encoding: Annotated[Optional[str], typer.Option("--encoding", help="Text encoding (e.g. gbk).")] = None,
    source_layer: Annotated[Optional[str], typer.Option("--source-layer", help="Layer of a multi-layer file.")] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="Field identifying features across versions.")] = None,
    new_version: Annotated[bool, typer.Option("--new-version", help="Add a version to an existing layer.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a vector file as a layer (or a new version of one)."""
    from layers import import_layer

    report = import_layer(store, file, name, theme, crs=crs, encoding=encoding, source_layer=source_layer, key=key,
                          title=title, department=department, security=security, level=level,
                          new_version=new_version)
    lines = [f"imported {report.layer} v{report.version}: {report.feature_count} features ({report.geometry_type}, "
             f"from {report.source_crs}), {report.repaired} repaired, {len(report.rejected)} rejected"]
    lines += [f"  rejected {r.feature}: {r.reason}" for r in report.rejected[:20]]
    _out(report, as_json, "\n".join(lines))


@layers_app.command("export")
def layers_export_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    out: Annotated[Path, typer.Argument(help="Output .geojson, .gpkg, .parquet or .csv.")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="geojson, gpkg, parquet or csv.")] = None,
    crs: Annotated[Optional[str], typer.Option("--crs", help="Reproject to this CRS.")] = None,
    version: VersionOpt = None,
    overwrite: OverwriteOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a layer to a file."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        result = s.export(name, out, format=fmt, crs=crs, version=version, overwrite=overwrite)
    _out(result, as_json, f"wrote {result.feature_count} features of {name} v{result.version} to {result.path} "
                          f"({result.format}, {result.crs})")


def _floats(text: Optional[str], n: int, opt: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != n:
        raise typer.BadParameter(f"expected {n} comma-separated numbers, got {text!r}", param_hint=opt)
    return values


@layers_app.command("query")
def layers_query_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    bbox: Annotated[Optional[str], typer.Option("--bbox", help="xmin,ymin,xmax,ymax in lon/lat.")] = None,
    intersects: Annotated[Optional[Path], typer.Option("--intersects", help="File whose geometries select.")] = None,
    where: Annotated[Optional[str], typer.Option("--where", help="CQL2-text filter, e.g. \"pop > 100\".")] = None,
    near: Annotated[Optional[str], typer.Option("--near", help="lon,lat: nearest features first.")] = None,
    k: Annotated[int, typer.Option("--k", help="Number of neighbours for --near.")] = 10,
    fields: Annotated[Optional[str], typer.Option("--fields", help="Comma-separated fields to return.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many features.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many features.")] = 0,
    fmt: Annotated[Optional[str], typer.Option("--format", help="geojson, table or csv (default: table on a "
                                                                "terminal, geojson when piped).")] = None,
    version: VersionOpt = None,
    store: StoreOpt = None,
) -> None:
    """Query a layer's features."""
    from layers import LayerStore
    from layers.writers import render_features

    fmt = fmt or ("table" if sys.stdout.isatty() else "geojson")
    with LayerStore(store, read_only=True) as s:
        gdf = s.query(name, bbox=_floats(bbox, 4, "--bbox"), intersects=intersects, where=where,
                      near=_floats(near, 2, "--near"), k=k, limit=limit, offset=offset, version=version,
                      fields=[f.strip() for f in fields.split(",")] if fields else None)
    if fmt == "table":
        shown = gdf.drop(columns=[gdf.geometry.name]).assign(geometry=gdf.geometry.geom_type)
        Console().print(shown.to_string(index=False, max_rows=50, max_colwidth=40), highlight=False)
        Console(stderr=True).print(f"{len(gdf)} features", highlight=False)
    else:
        sys.stdout.write(render_features(gdf, fmt) + ("\n" if fmt == "geojson" else ""))


@layers_app.command("stats")
def layers_stats_cmd(
    name: Annotated[str, typer.Argument(help="Layer to summarise.")],
    by: Annotated[str, typer.Option("--by", help="Division layer (polygons).")],
    field: Annotated[Optional[str], typer.Option("--field", help="Numeric field to aggregate.")] = None,
    agg: Annotated[str, typer.Option("--agg", help="count, sum, mean, min or max.")] = "count",
    label: Annotated[Optional[str], typer.Option("--label", help="Division field naming the rows.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Statistics of a layer per division (spatial join by representative point)."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        result = s.stats(name, by, field=field, agg=agg, label=label)
    head = f"{'division':<28} {'count':>8} {agg + (f'({field})' if field else ''):>16}"
    rows = [f"{str(r.division if r.division is not None else r.division_fid):<28} {r.count:>8} "
            f"{'' if r.value is None else f'{r.value:.6g}':>16}" for r in result.rows]
    _out(result, as_json, "\n".join([head, *rows]))


@layers_app.command("list")
def layers_list_cmd(
    theme: Annotated[Optional[str], typer.Option("--theme", help="Only layers in this theme.")] = None,
    security: Annotated[Optional[str], typer.Option("--security", help="Only layers visible at this level.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the layers."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        items = s.list(theme, security=security)
    _out([i.to_dict() for i in items], as_json, _layer_lines(items))


@layers_app.command("info")
def layers_info_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    version: VersionOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a layer's catalogue record: theme, source, CRS, extent, fields."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        i = s.info(name, version)
    lines = [f"{i.name} v{i.version}: {i.title}", f"theme:      {i.theme} ({i.theme_title}), library {i.level}",
             f"department: {i.department}", f"security:   {i.security}",
             f"source:     {i.source} ({i.source_format}, {i.source_crs})", f"stored as:  {i.crs}",
             f"features:   {i.feature_count} {i.geometry_type}", f"extent:     {i.extent}",
             f"updated:    {i.updated_at:%Y-%m-%d %H:%M:%S} UTC", "fields:",
             *[f"  {f.name}: {f.type}" for f in i.fields]]
    _out(i, as_json, "\n".join(lines))


@layers_app.command("history")
def layers_history_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a layer's versions."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        versions = s.history(name)
    lines = [f"{'*' if v.current else ' '} v{v.version:<3} {v.created_at:%Y-%m-%d %H:%M:%S} {v.operation:<8} "
             f"{v.feature_count:>9} {v.note or v.source}" for v in versions]
    _out([v.to_dict() for v in versions], as_json, "\n".join(lines))


@layers_app.command("diff")
def layers_diff_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    from_version: Annotated[int, typer.Argument(help="Older version.")],
    to_version: Annotated[Optional[int], typer.Argument(help="Newer version (default: current).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Features added, removed and changed between two versions."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        d = s.diff(name, from_version, to_version)
    lines = [f"{name} v{d.from_version} -> v{d.to_version} (by {d.key}): {len(d.added)} added, "
             f"{len(d.removed)} removed, {len(d.changed)} changed"]
    for label, ids in (("added", d.added), ("removed", d.removed), ("changed", d.changed)):
        if ids:
            lines.append(f"  {label}: {', '.join(map(str, ids[:20]))}{' ...' if len(ids) > 20 else ''}")
    if d.fields_added or d.fields_removed:
        lines.append(f"  fields added: {d.fields_added}, removed: {d.fields_removed}")
    _out(d, as_json, "\n".join(lines))


@layers_app.command("rollback")
def layers_rollback_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    to: Annotated[int, typer.Option("--to", help="The version to make current again.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make an old version current again (as a new version)."""
    from layers import LayerStore

    with LayerStore(store) as s:
        v = s.rollback(name, to)
    _out(v, as_json, f"{name} is now v{v.version} ({v.note}, {v.feature_count} features)")


@layers_app.command("drop")
def layers_drop_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    purge: Annotated[bool, typer.Option("--purge", help="Also delete its history and features.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop a layer; its history is kept until --purge."""
    from layers import LayerStore

    with LayerStore(store) as s:
        r = s.drop(name, purge=purge)
    _out(r, as_json, f"purged {name}: {r.versions} versions, {r.tables_dropped} tables" if purge
         else f"dropped {name} (history of {r.versions} versions kept; --purge deletes it)")


@layers_app.command("themes")
def layers_themes_cmd(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Show the theme tree (CJJ/T 315-2022 catalogue plus this store's sub-themes)."""
    from layers import LayerStore, default_store_path

    path = store or default_store_path()
    with LayerStore(path, read_only=True) if path.is_file() else contextlib.nullcontext() as s:
        from layers.themes import builtin

        tree = s.themes() if s is not None else builtin()
    lines = [f"{'  ' * t.depth}{t.path.rsplit('/', 1)[-1]:<{30 - 2 * t.depth}} {t.zh} / {t.en} [{t.level}]"
             + ("" if t.builtin else " (user)") for t in tree]
    _out([t.to_dict() for t in tree], as_json, "\n".join(lines))


@layers_app.command("add-theme")
def layers_add_theme_cmd(
    parent: Annotated[str, typer.Argument(help="Parent theme path.")],
    theme_id: Annotated[str, typer.Argument(help="Id of the new sub-theme (lower-case, digits, _).")],
    zh: Annotated[str, typer.Option("--zh", help="Chinese title.")],
    en: Annotated[str, typer.Option("--en", help="English title.")],
    level: Annotated[Optional[str], typer.Option("--level", help="Library level (default: the parent's).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a sub-theme to the store's theme tree."""
    from layers import LayerStore

    with LayerStore(store) as s:
        t = s.add_theme(parent, theme_id, zh, en, level)
    _out(t, as_json, f"added theme {t.path} ({t.zh} / {t.en}, {t.level})")


app.add_typer(layers_app, name="layers")


# ---------------------------------------------------------------------- cim serve / cim keys: tile services (tiles/server)
@app.command("serve")
def serve_cmd(
    store: StoreOpt = None,
    models: Annotated[Optional[list[str]], typer.Option(
        "--models", help="A `cim build` output to publish as 3D Tiles: DIR or NAME=DIR (repeatable).")] = None,
    maps: Annotated[Optional[list[str]], typer.Option(
        "--map", help="A COG to publish as raster tiles (ortho or DEM): FILE or NAME=FILE (repeatable).")] = None,
    restrict: Annotated[Optional[list[str]], typer.Option(
        "--restrict", help="NAME=LEVEL: security level of a model or map (default public; repeatable).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    public_url: Annotated[Optional[str], typer.Option("--public-url", help="Base URL clients see (behind a proxy).")
                          ] = None,
) -> None:
    """Serve the models, maps and layers over HTTP: 3D Tiles, XYZ/WMTS, MVT, OGC API - Features (docs/http-api.md)."""
    from tiles.server import ServerSettings, serve
    from tiles.server.settings import named_paths

    base = ServerSettings()
    settings = base.model_copy(update={
        "store": store if store is not None else base.store, "host": host, "port": port,
        "public_url": public_url or base.public_url,
        "models": {**base.models, **named_paths(models or [], "--models")},
        "maps": {**base.maps, **named_paths(maps or [], "--map")},
        "security": {**base.security, **{k: str(v) for k, v in named_paths(restrict or [], "--restrict").items()}},
    })
    serve(settings)  # uvicorn logs the address once the catalogue is open and the port bound


keys_app = typer.Typer(help="API keys of `cim serve` (stored hashed beside the store) and its audit log.",
                       no_args_is_help=True)


def _access(store: Optional[Path]) -> Any:
    from layers import default_store_path
    from tiles.server.auth import AccessStore, access_path

    return AccessStore(access_path(store or default_store_path()))


@keys_app.command("create")
def keys_create_cmd(
    scope: Annotated[str, typer.Option("--scope", help="internal, confidential, layer:NAME, theme:PATH; "
                                                       "comma-separated.")],
    label: Annotated[str, typer.Option("--label", help="Who or what the key is for.")] = "",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; its secret is printed once and only its hash is kept."""
    with _access(store) as acc:
        k = acc.create(scope, label)
    emit(k, as_json, f"key {k.id} ({','.join(k.scope)}): {k.key}\nsend it as X-API-Key; it is not shown again")


@keys_app.command("revoke")
def keys_revoke_cmd(
    key_id: Annotated[str, typer.Argument(help="The key's id (or the whole key).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key (a running server refuses it from the next request)."""
    with _access(store) as acc:
        k = acc.revoke(key_id)
    emit(k, as_json, f"revoked key {k.id} ({','.join(k.scope)})")


@keys_app.command("list")
def keys_list_cmd(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (never their secrets)."""
    with _access(store) as acc:
        keys = acc.list()
    emit([k.to_dict() for k in keys], as_json, "\n".join(
        f"{k.id}  {','.join(k.scope):<30} {k.created_at:%Y-%m-%d %H:%M}  "
        f"{'revoked ' + format(k.revoked_at, '%Y-%m-%d %H:%M') if k.revoked_at else 'active'}  {k.label}"
        for k in keys) or "no keys")


@keys_app.command("audit")
def keys_audit_cmd(
    layer: Annotated[Optional[str], typer.Option("--layer", help="Only accesses to this layer.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many records, newest first.")] = 50,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log of accesses to confidential layers."""
    with _access(store) as acc:
        log = acc.audit_log(layer, limit)
    emit([r.to_dict() for r in log], as_json, "\n".join(
        f"{r.at:%Y-%m-%d %H:%M:%S}  {r.key_id or '-':<8} {r.layer:<20} {r.action:<10} {r.client or '-':<15} {r.path}"
        for r in log) or "no accesses recorded")


app.add_typer(keys_app, name="keys")


# ---------------------------------------------------------------------- cim view / cim demo: the "one map" viewer (tiles/viewer.py)
@app.command("view")
def view_cmd(
    html_out: Annotated[Path, typer.Option("--html", help="Write the viewer page to this file.")],
    server: Annotated[str, typer.Option("--server", help="Base URL of a running `cim serve`.")
                      ] = "http://127.0.0.1:8000",
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="A key of that server; written into the "
                                                   "page's URLs.", envvar="CIM_API_KEY")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a viewer page (HTML) that shows what a running server publishes (docs/viewer.md)."""
    from tiles.viewer import write_viewer_html

    out = write_viewer_html(html_out, server, api_key=api_key, overwrite=overwrite)
    emit({"html": str(out), "server": server}, as_json, f"wrote {out} (open it while {server} runs)")


@app.command("demo")
def demo_cmd(
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    folder: Annotated[Path, typer.Option("--dir", help="Where the demo keeps its city, models and store "
                                                        "(reused on the next run).")] = Path("cim-demo"),
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    buildings: Annotated[Optional[int], typer.Option(
        "--buildings", help="Generate a city of this many buildings (default: the default sample city).")] = None,
    oblique: Annotated[bool, typer.Option("--oblique", help="Also build the synthetic oblique production.")
                       ] = False,
) -> None:
    """Sample city -> models -> layer store -> server -> viewer, in one command (docs/viewer.md)."""
    from cim.demo import run_demo

    run_demo(folder, host=host, port=port, open_browser=not no_browser, buildings=buildings, oblique=oblique,
             echo=typer.echo)


if __name__ == "__main__":
    main()
