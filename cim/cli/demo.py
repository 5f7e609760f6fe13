"""`cim demo`: sample city -> models -> layer store -> server -> viewer in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


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

