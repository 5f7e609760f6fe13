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
    # Standalone mode lets click handle usage errors (exit 2) and --help; library errors come through here. With
    # --json, click's usage errors come through here too, so a machine reading stdout gets its JSON document.
    as_json = "--json" in (sys.argv[1:] if argv is None else argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        if as_json:
            code = app(args=argv, standalone_mode=False)
            # as standalone mode does: exit with the code of typer.Exit(code) or Ctrl-C (130), else 0
            sys.exit(code if isinstance(code, int) else 0)
        else:
            app(args=argv)
    except CimError as exc:
        # soft_wrap: a path in the message stays on one line, whatever the terminal width
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        code = exit_code_for(exc)
        if as_json:
            _json_error(str(exc), type(exc).__name__, code)
        sys.exit(code)
    except typer.TyperException as exc:  # click's usage errors, only with --json (standalone mode handles them)
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # the usual usage line and boxed message on stderr
        code = getattr(exc, "exit_code", 2)
        _json_error(exc.format_message() if hasattr(exc, "format_message") else str(exc), type(exc).__name__, code)
        sys.exit(code)
    except typer.Abort:
        sys.exit(1)
    finally:
        warnings.showwarning = previous


def _json_error(message: str, kind: str, code: int) -> None:
    """One JSON document on stdout for a failure: what a machine reads whatever happened."""
    sys.stdout.write(json.dumps({"error": message, "type": kind, "exit_code": code}, ensure_ascii=False) + "\n")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """A warning on the terminal as one `warning:` line (what it says), not Python's file:line and source line."""
    text = " ".join(str(message).split())
    err_console.print(f"[yellow]warning:[/] {escape(text)}", markup=True, highlight=False, soft_wrap=True)
