"""What every `cim` command shares: its options, the way it prints results, its progress bar."""

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

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and no progress.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", help="The store file (default: $CIM_STORE, else ./cim.duckdb)."),
]
VersionOpt = Annotated[Optional[int], typer.Option("--version", help="A layer version (default: current).")]

err_console = Console(stderr=True)


def emit(result: Any, as_json: bool, human: str | None = None) -> None:
    """Print a command's result: JSON (machines) or a short human summary (terminal)."""
    if as_json:
        payload = result.to_dict() if hasattr(result, "to_dict") else result
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")
    elif human is not None:
        Console().print(human, soft_wrap=True)  # paths stay on one line, copyable


def echo_result(result: Any, as_json: bool, human: str) -> None:
    """Like `emit`, but human text goes out unwrapped (paths and ids must stay copyable)."""
    if as_json:
        emit(result, as_json)
    else:
        typer.echo(human)


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
