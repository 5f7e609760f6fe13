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
    sensor_time: Annotated[Optional[str], typer.Option(
        "--sensor-time", help="The simulated sensors' clock starts at this UTC time (ISO 8601, e.g. "
                              "2026-09-09T19:06:00Z) and runs at wall speed; their storms, alerts and warning runs "
                              "follow it (default: now).")] = None,
    texture_quality: Annotated[Optional[int], typer.Option(
        "--texture-quality", min=1, max=100,
        help="Build the models with every texture at this WebP quality, one encoding each: faster than the default "
             "per-texture choice checked against the photo (as `cim build --texture-quality`). Models built with "
             "other options are built again.")] = None,
) -> None:
    """Sample city -> models -> layer store -> server -> viewer, in one command (docs/viewer.md)."""
    from cim.demo import run_demo
    from layers.sensing.simulate import clock_from
    from layers.sensing.values import parse_instant

    clock = None if sensor_time is None else clock_from(parse_instant(sensor_time, "--sensor-time"))
    run_demo(folder, host=host, port=port, open_browser=not no_browser, buildings=buildings, oblique=oblique,
             texture_quality=texture_quality, echo=typer.echo, clock=clock)

