"""Urban waterlogging (城市内涝): static ponding, a 2D shallow-water solver, design storms, warnings and impacts.

Data flow: `grid` (DEM + buildings + losses) -> `rain` (Chicago design storm, a series, or `gauges`) -> the static
model (`fill`: Priority-Flood, fill-spill-merge) or the dynamic one (`solver`: local inertial) -> `outputs`
(COGs, polygons) and `run` (`FloodParams` in, `run_flood`, `FloodResult` out).

    from cim.analysis.flood import FloodParams, ChicagoStorm, run_flood
    result = run_flood(FloodParams(storm=ChicagoStorm(return_period=50)), "out/flood")
    result.report["mass_balance"], result.read("max_depth")
"""

from cim.analysis.flood.errors import FloodError, FloodInputError, FloodWarning
from cim.analysis.flood.fill import StaticResult, fill_depressions, fill_spill_merge
from cim.analysis.flood.gauges import GaugeRain, GaugeSeries, GaugeSource, RecordedGauges, SensingGauges
from cim.analysis.flood.grid import FloodGrid, prepare_grid
from cim.analysis.flood.rain import ChicagoStorm, RainSeries, StormFormula, read_rain
from cim.analysis.flood.run import FloodParams, FloodResult, run_flood
from cim.analysis.flood.solver import MassBalance, ShallowWaterSolver, SolverGrid, solver_grid

__all__ = [
    "ChicagoStorm", "FloodError", "FloodGrid", "FloodInputError", "FloodParams", "FloodResult", "FloodWarning",
    "GaugeRain", "GaugeSeries", "GaugeSource", "MassBalance", "RainSeries", "RecordedGauges", "SensingGauges",
    "ShallowWaterSolver", "SolverGrid", "StaticResult", "StormFormula", "fill_depressions", "fill_spill_merge",
    "prepare_grid", "read_rain", "run_flood", "solver_grid",
]
