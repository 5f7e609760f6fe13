"""The `cim` command: argument parsing only.

Every command calls one public library function (the same one a notebook calls) and prints its result: rich
text on a terminal, one JSON document with `--json`. Library errors become exit codes in `EXIT_CODES`, here and
nowhere else. Each command group lives in a module of its own (`build`, `layers`, `sensors`, `serve`, `demo`, `analyze`; shared options
and output in `options`) and is registered below; the repository's `cli.py` is only a face over this package.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Annotated

import typer
from rich.markup import escape

import cim
from cim.cli import analyze, build, demo, geocode, layers, sensors, serve
from cim.cli.options import err_console
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


app.command("build")(build.build_cmd)
app.command("sample")(build.sample_cmd)
app.add_typer(layers.app, name="layers")
app.add_typer(sensors.app, name="sensors")
app.add_typer(geocode.app, name="geocode")
app.command("serve")(serve.serve_cmd)
app.add_typer(serve.keys_app, name="keys")
app.command("view")(serve.view_cmd)
app.command("demo")(demo.demo_cmd)
app.add_typer(analyze.app, name="analyze")


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a library error (see EXIT_CODES)."""
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cim` console script."""
    # Standalone mode lets click handle usage errors (exit 2) and --help; library errors come through here.
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        app(args=argv)
    except CimError as exc:
        # soft_wrap: a path in the message stays on one line, whatever the terminal width
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        code = exit_code_for(exc)
        if "--json" in (sys.argv[1:] if argv is None else argv):
            # a machine reading stdout gets one JSON document whatever happened
            sys.stdout.write(json.dumps({"error": str(exc), "type": type(exc).__name__, "exit_code": code},
                                        ensure_ascii=False) + "\n")
        sys.exit(code)
    finally:
        warnings.showwarning = previous


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """A warning on the terminal as one `warning:` line (what it says), not Python's file:line and source line."""
    text = " ".join(str(message).split())
    err_console.print(f"[yellow]warning:[/] {escape(text)}", markup=True, highlight=False, soft_wrap=True)
