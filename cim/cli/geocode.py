"""`cim geocode`: standard addresses (标准地址), geocoding and the 一标三实 registries (layers.addresses).

Every command calls one library function: build -> `build_address_layer`, import -> `import_address_file`,
run -> `Geocoder.geocode` (one text) or `geocode_file` (a CSV column), reverse -> `Geocoder.reverse`,
link -> `link_registry`, counts -> `link_counts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cim.cli.options import JsonOpt, OverwriteOpt, StoreOpt, echo_result, progress_bar

app = typer.Typer(
    help="Standard addresses (GB/T 35639), geocoding of address text and files, 一标三实 registries.",
    no_args_is_help=True,
)
LayerOpt = Annotated[str, typer.Option("--layer", help="The standard-address layer.")]
SecurityOpt = Annotated[Optional[str], typer.Option("--security", help="public, internal or confidential.")]
NewVersionOpt = Annotated[bool, typer.Option("--new-version", help="Add a version to an existing layer.")]


def _store(path: Path | None, write: bool):  # noqa: ANN202
    from layers import LayerStore

    return LayerStore(path, read_only=not write)


def _result_text(r) -> str:  # noqa: ANN001
    lines = [f"{r.reason} {r.score:.2f}  {r.address or '-'}",
             f"  building {r.building_code or '-'}  code {r.code or '-'}"
             + (f"  lon/lat {r.lon:.7f}, {r.lat:.7f}" if r.lon is not None else "")]
    extra = {k: r.components.get(k) for k in ("unit", "floor", "room") if r.components.get(k)}
    if extra:
        lines.append("  " + "  ".join(f"{k} {v}" for k, v in extra.items()))
    if r.note:
        lines.append(f"  note: {r.note}")
    return "\n".join(lines)


@app.command("build")
def build_cmd(
    source_layer: Annotated[str, typer.Option("--from-layer", help="The footprint layer with address attributes.")]
    = "buildings",
    address_field: Annotated[str, typer.Option("--address-field", help="Attribute with the address text.")] = "address",
    name_field: Annotated[str, typer.Option("--name-field", help="Attribute with the building name (小区/楼栋).")]
    = "name",
    code_field: Annotated[str, typer.Option("--code-field", help="Attribute with the building code.")] = "code",
    layer: LayerOpt = "addresses",
    security: SecurityOpt = None,
    new_version: NewVersionOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the standard addresses from the footprints' address attributes (layer `addresses`)."""
    from layers.addresses import build_address_layer

    with _store(store, True) as s, progress_bar(as_json) as progress:
        report = build_address_layer(s, source_layer, name=layer, address_field=address_field,
                                     name_field=name_field, code_field=code_field, security=security,
                                     new_version=new_version, progress=progress)
    lines = [f"{report.layer} v{report.version}: {report.addresses} standard addresses, "
             f"{len(report.skipped)} footprints skipped"]
    lines += [f"  skipped {code}: {why}" for code, why in report.skipped[:20]]
    echo_result(report, as_json, "\n".join(lines))


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="Standard addresses: CSV (lon/lat), GeoPackage, GeoJSON, GeoParquet.")],
    crs: Annotated[Optional[str], typer.Option("--crs", help="CRS of the coordinates (CSV default EPSG:4490).")]
    = None,
    encoding: Annotated[Optional[str], typer.Option("--encoding", help="Text encoding (e.g. gbk).")] = None,
    layer: LayerOpt = "addresses",
    security: SecurityOpt = None,
    new_version: NewVersionOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import standard addresses from a registry file (columns by component: 街路巷, 门牌号, ... or address)."""
    from layers.addresses import import_address_file

    with _store(store, True) as s:
        report = import_address_file(s, file, name=layer, crs=crs, encoding=encoding, security=security,
                                     new_version=new_version)
    echo_result(report, as_json, f"{report.layer} v{report.version}: {report.addresses} standard addresses from {file}")


@app.command("run")
def run_cmd(
    text: Annotated[Optional[str], typer.Argument(help="One address to geocode.")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="A CSV whose column to geocode.")] = None,
    column: Annotated[str, typer.Option("--column", help="The CSV column with the address text.")] = "address",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output .csv or .parquet (GeoParquet).")] = None,
    encoding: Annotated[Optional[str], typer.Option("--encoding", help="CSV text encoding (e.g. gbk).")] = None,
    layer: LayerOpt = "addresses",
    overwrite: OverwriteOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Geocode one address, or a CSV column into a CSV/GeoParquet with components, match and score."""
    from layers.addresses import Geocoder, geocode_file
    from layers.addresses.errors import AddressInputError

    if (text is None) == (csv is None):
        raise AddressInputError("give one address (cim geocode run TEXT) or a file (--csv FILE --out OUT)")
    with _store(store, False) as s:
        gc = Geocoder.from_store(s, layer)
    if text is not None:
        r = gc.geocode(text)
        echo_result(r, as_json, _result_text(r))
        return
    if out is None:
        raise AddressInputError("--csv needs --out (a .csv or .parquet file)")
    with progress_bar(as_json) as progress:
        report = geocode_file(gc, csv, out, column=column, overwrite=overwrite, encoding=encoding,
                              progress=progress)
    _echo_matches(report, as_json, f"{report.out}: {report.matched} of {report.rows} matched "
                                   f"({report.rows_per_second:,.0f} rows/s)")


@app.command("reverse")
def reverse_cmd(
    lon: Annotated[float, typer.Argument(help="Longitude (CGCS2000 degrees).")],
    lat: Annotated[float, typer.Argument(help="Latitude.")],
    layer: LayerOpt = "addresses",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The standard address nearest to a point, its building, community and town."""
    from layers.addresses import Geocoder

    with _store(store, False) as s:
        r = Geocoder.from_store(s, layer).reverse(lon, lat)
    echo_result(r, as_json, f"{r.address} ({r.distance_m:.1f} m)\n  building {r.building_code}  code {r.code}  "
                     f"{r.town} {r.community}")


@app.command("link")
def link_cmd(
    file: Annotated[Path, typer.Argument(help="A registry CSV (UTF-8 unless --encoding).")],
    kind: Annotated[str, typer.Option("--kind", help="population, organisations or houses.")],
    column: Annotated[str, typer.Option("--column", help="The column with the address text.")] = "address",
    name: Annotated[Optional[str], typer.Option("--name", help="Layer name (default address_<kind>).")] = None,
    security: SecurityOpt = None,
    new_version: NewVersionOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Link a 一标三实 registry to the buildings: geocode it and store the matched records as a layer."""
    from layers.addresses import link_registry

    with _store(store, True) as s, progress_bar(as_json) as progress:
        report = link_registry(s, file, kind, column=column, layer=name, security=security,
                               new_version=new_version, progress=progress)
    _echo_matches(report, as_json, f"{report.layer} v{report.version}: {report.linked} of {report.records} "
                                   f"records linked")


@app.command("counts")
def counts_cmd(
    by: Annotated[str, typer.Option("--by", help="building, community, town or address.")] = "community",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """一标三实 records per building, community or town (of the registries linked)."""
    from layers.addresses import link_counts

    with _store(store, False) as s:
        t = link_counts(s, by)
    rows = t.to_pylist()
    human = "\n".join("  ".join(f"{v}" for v in r.values()) for r in rows) or "no linked registries"
    echo_result(rows, as_json, "  ".join(t.column_names) + "\n" + human)


def _echo_matches(report: Any, as_json: bool, head: str) -> None:
    """A geocoding run's summary: the head, the counts by reason, the first 20 unmatched rows (or the report as JSON)."""
    lines = [f"{head}; " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_reason.items()))]
    lines += [f"  row {u.row}: {u.reason}: {u.text}  ({u.note})" for u in report.unmatched[:20]]
    echo_result(report, as_json, "\n".join(lines))
