"""The `cim` command: argument parsing only.

Every command calls one public library function (the same one a notebook calls) and prints its result: rich text on a
terminal, one JSON document with `--json`. Library errors become exit codes in `EXIT_CODES`, here and nowhere else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
