"""Small grids for the flood solver's tests: the global step (test_flood_solver) and local time stepping
(test_flood_lts) are held to the same cases."""

from __future__ import annotations

import numpy as np
import pytest

from cim.analysis.flood.fill import fill_spill_merge
from cim.analysis.flood.solver import ShallowWaterSolver, solver_grid

_GRID_ARGS = ("drainage", "infiltration", "boundary_slope", "rain_area")


def small_solver(z, phi=None, *, manning=0.03, open_boundary=False, **kw) -> ShallowWaterSolver:
    """A solver on a 1 m grid of beds `z` (porosity `phi`, default 1 everywhere), on one thread unless `threads`
    says otherwise; `drainage`, `infiltration`, `boundary_slope` and `rain_area` go to `solver_grid`, the rest of
    `kw` to `ShallowWaterSolver`."""
    phi = np.ones_like(z) if phi is None else phi
    g = solver_grid(z, phi, 1.0, 1.0, manning=manning, open_boundary=open_boundary,
                    **{k: kw.pop(k) for k in _GRID_ARGS if k in kw})
    return ShallowWaterSolver(g, threads=kw.pop("threads", 1), **kw)


def assert_rain_losses_and_outflow_balance(s: ShallowWaterSolver) -> None:
    """Rain 60 mm/h for 30 minutes (advanced minute by minute), then run to one hour: 30 mm of rain over the grid,
    outflow, drainage, infiltration and storage each > 0 and adding up to the rain to rounding, no negative depth."""
    for k in range(30):
        s.advance((k + 1) * 60.0, rain_rate=60 / 1000 / 3600)
    s.advance(3600.0)
    b = s.balance
    assert b.rain == pytest.approx(0.03 * s.depth().size)
    assert min(b.outflow, b.drainage, b.infiltration, b.stored) > 0
    assert b.relative_error < 1e-12
    assert (s.depth() >= 0).all()


#: the bowl z = BOWL_A r² (61 x 61 cells, centre (30, 30)) holds BOWL_WATER m over its area
BOWL_A = 0.01
BOWL_WATER = 0.05


def bowl() -> np.ndarray:
    """The beds of a closed paraboloid bowl z = BOWL_A r², 61 x 61 cells of 1 m."""
    yy, xx = np.mgrid[0:61, 0:61]
    return BOWL_A * ((xx - 30.0) ** 2 + (yy - 30.0) ** 2)


def assert_bowl_settles_at_the_static_level(s: ShallowWaterSolver) -> None:
    """On `s` (a solver on `bowl()`), a column of BOWL_WATER x the bowl's area released on the bowl's side sloshes
    for 15 minutes and comes to rest flat (within 1 mm) at the static model's level (within 3 mm)."""
    z = bowl()
    static = fill_spill_merge(z, BOWL_WATER, cell_area=1.0, open_boundary=False)
    h0 = np.zeros_like(z)
    h0[25:35, 30:40] = BOWL_WATER * z.size / 100.0
    s.set_depth(h0)
    s.advance(900.0)
    d = s.depth()
    level = (z + d)[d > 0.01]
    assert np.ptp(level) < 1e-3
    assert level.mean() == pytest.approx(np.nanmax(static.level), abs=3e-3)
