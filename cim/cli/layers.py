"""`cim layers ...`: the layer store (layers/): import, query, version, export."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from cim.cli.options import JsonOpt, OverwriteOpt, StoreOpt, VersionOpt, echo_result

app = typer.Typer(
    help="Keep a city's themed business layers in one DuckDB file: import, query, version, export.",
    no_args_is_help=True,
)


def _layer_lines(items: list[Any]) -> str:
    return "\n".join(f"{i.name:<24} v{i.version:<3} {i.feature_count:>9}  {i.geometry_type:<14} {i.security:<12} "
                     f"{i.theme}  {i.title}" for i in items) or "no layers"


@app.command("import")
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
    echo_result(report, as_json, "\n".join(lines))


@app.command("export")
def layers_export_cmd(
    name: Annotated[str, typer.Argument(help="Layer name.")],
    out: Annotated[Path, typer.Argument(help="Output .geojson, .gpkg, .shp, .fgb, .parquet or .csv.")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="geojson, gpkg, shp, fgb, parquet or csv.")] = None,
    crs: Annotated[Optional[str], typer.Option(
        "--crs", help="Reproject to this CRS (default: the CRS the layer was imported from).")] = None,
    encoding: Annotated[Optional[str], typer.Option(
        "--encoding", help="Shapefile text encoding, written to its .cpg (default UTF-8; GBK for older GIS).")] = None,
    version: VersionOpt = None,
    overwrite: OverwriteOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a layer to a file."""
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        result = s.export(name, out, format=fmt, crs=crs, version=version, overwrite=overwrite, encoding=encoding)
    lines = [f"wrote {result.feature_count} features of {name} v{result.version} to {result.path} ({result.format}, "
             f"{result.crs}{', ' + result.encoding if result.encoding else ''})"]
    lines += [f"warning: {w}" for w in result.warnings]
    echo_result(result, as_json, "\n".join(lines))


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


@app.command("query")
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
    as_json: JsonOpt = False,
) -> None:
    """Query a layer's features (with --json: one GeoJSON FeatureCollection on stdout, errors as JSON)."""
    from layers import LayerStore
    from layers.errors import LayerInputError
    from layers.writers import render_features

    if as_json and fmt not in (None, "geojson"):
        raise LayerInputError(f"--json prints GeoJSON, not --format {fmt}; drop one of the two")
    fmt = "geojson" if as_json else fmt or ("table" if sys.stdout.isatty() else "geojson")
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


@app.command("stats")
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
    echo_result(result, as_json, "\n".join([head, *rows]))


@app.command("list")
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
    echo_result([i.to_dict() for i in items], as_json, _layer_lines(items))


@app.command("info")
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
    echo_result(i, as_json, "\n".join(lines))


@app.command("history")
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
    echo_result([v.to_dict() for v in versions], as_json, "\n".join(lines))


@app.command("diff")
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
    echo_result(d, as_json, "\n".join(lines))


@app.command("rollback")
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
    echo_result(v, as_json, f"{name} is now v{v.version} ({v.note}, {v.feature_count} features)")


@app.command("drop")
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
    echo_result(r, as_json, f"purged {name}: {r.versions} versions, {r.tables_dropped} tables" if purge
         else f"dropped {name} (history of {r.versions} versions kept; --purge deletes it)")


@app.command("themes")
def layers_themes_cmd(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Show the theme tree (CJJ/T 315-2022 catalogue plus this store's sub-themes)."""
    from layers import LayerStore, default_store_path

    path = store or default_store_path()
    with LayerStore(path, read_only=True) if path.is_file() else contextlib.nullcontext() as s:
        from layers.themes import builtin

        tree = s.themes() if s is not None else builtin()
    lines = [f"{'  ' * t.depth}{t.path.rsplit('/', 1)[-1]:<{30 - 2 * t.depth}} {t.zh} / {t.en} [{t.level}]"
             + ("" if t.builtin else " (user)") for t in tree]
    echo_result([t.to_dict() for t in tree], as_json, "\n".join(lines))


@app.command("add-theme")
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
    echo_result(t, as_json, f"added theme {t.path} ({t.zh} / {t.en}, {t.level})")
