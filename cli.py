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
    level: Annotated[int, typer.Option("--level", help="CIM level (2: terrain + LOD1 buildings).")] = 2,
    dem: Annotated[Optional[Path], typer.Option("--dem", help="DEM GeoTIFF (default: the sample city).")] = None,
    ortho: Annotated[Optional[Path], typer.Option("--ortho", help="Orthophoto draped on the terrain.")] = None,
    buildings: Annotated[Optional[Path], typer.Option("--buildings", help="Building footprints file.")] = None,
    dsm: Annotated[Optional[Path], typer.Option("--dsm", help="DSM for heights missing from attributes.")] = None,
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
    from cim.buildings import BuildingOptions
    from cim.terrain import TerrainOptions

    bopts = BuildingOptions(height_field=height_field, floors_field=floors_field, storey_height=storey_height,
                            default_height=default_height, id_field=id_field)
    with progress_bar(as_json) as cb:
        report = build_city(out, level=level, dem=dem, ortho=ortho, buildings=buildings, dsm=dsm, crs=crs,
                            building_options=bopts, terrain_options=TerrainOptions(max_error=max_error, crs=crs),
                            overwrite=overwrite, progress=cb)
    b = report.buildings or {}
    lines = [f"[green]built[/] {report.tileset}  ({report.seconds:.1f} s)"]
    if b:
        lines.append(f"buildings: {b['buildings']} in {b['tiles']} tiles; heights from {b['height_sources']}")
    lines.extend(f"[yellow]warning:[/] {w}" for w in report.warnings)
    emit(report, as_json, "\n".join(lines))


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


if __name__ == "__main__":
    main()
