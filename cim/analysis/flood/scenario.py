"""The sample city's storm scenario (what `cim demo` serves): a 50-year, one-hour Chicago storm with a drainage
network built for the 3-year storm, the river as the outfall, 30 minutes after the rain, outputs every 5 minutes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cim.analysis.flood.rain import ChicagoStorm
from cim.analysis.flood.run import FloodParams, FloodResult, Progress, run_flood

SCENARIO = "storm-50y"


def sample_storm_params(resolution: float | None = 8.0) -> FloodParams:
    """The scenario's parameters (the sample city's DEM, buildings and river by default)."""
    return FloodParams(storm=ChicagoStorm(return_period=50, duration_min=60), drainage="3y", after_min=30.0,
                       output_interval_min=5.0, resolution=resolution)


def sample_storm(runs: str | os.PathLike[str], *, resolution: float | None = 8.0,
                 progress: Progress | None = None) -> FloodResult:
    """Run the scenario into `runs/storm-50y`, or reuse it when it is there with the same parameters."""
    out = Path(runs) / SCENARIO
    params = sample_storm_params(resolution)
    report = out / "run.json"
    if report.is_file():
        done = json.loads(report.read_text(encoding="utf-8"))
        if done.get("params") == params.model_dump(mode="json"):
            return FloodResult(out, done)
    return run_flood(params, out, overwrite=True, progress=progress)
