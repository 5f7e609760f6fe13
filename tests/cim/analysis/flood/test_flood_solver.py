"""The local-inertial solver against analytic cases: lake at rest, frictionless acceleration, Manning normal depth,
a bowl filling to its analytic level, Stoker's dam break, and exact mass accounting.

Grids are small and generated here; every case runs single-threaded in well under a second once compiled.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from cim.analysis.flood.errors import FloodError
from cim.analysis.flood.fill import fill_spill_merge
from cim.analysis.flood.solver import G
from tests.support.flood import (
    BOWL_A,
    BOWL_WATER,
    assert_bowl_settles_at_the_static_level,
    assert_rain_losses_and_outflow_balance,
    bowl,
)
from tests.support.flood import small_solver as _solver


@pytest.fixture(scope="module")
def rough_dem():
    return np.random.default_rng(11).uniform(0.0, 2.0, (40, 50))


def test_lake_at_rest_stays_at_rest(rough_dem):
    """A still lake over a rough bed (islands, dry cells above it) does not move in an hour."""
    s = _solver(rough_dem)
    h0 = np.maximum(1.2 - rough_dem, 0.0)
    s.set_depth(h0)
    s.advance(3600.0)
    assert s.state.steps > 1000
    assert s.speed().max() < 1e-6
    assert np.abs(s.depth() - h0).max() < 1e-9
    assert s.balance.relative_error < 1e-12


def test_frictionless_sheet_accelerates_as_g_h_s_t():
    """Without friction a uniform sheet on a uniform slope gains q = g h S t (exact for the scheme inside)."""
    slope, h0, t = 0.01, 0.5, 5.0
    z = (np.arange(200)[::-1] * slope)[None, :]
    s = _solver(z, manning=0.0, theta=1.0)
    s.set_depth(np.full(z.shape, h0))
    s.advance(t)
    q = s.state.qx[1, 1:-1]
    assert q[100] == pytest.approx(G * h0 * slope * t, rel=1e-9)


def test_manning_flow_reaches_normal_depth():
    """Inflow into a sloping channel settles at Manning's normal depth, carrying the inflow at every face."""
    nx, slope, n, q_in = 400, 0.005, 0.03, 0.2
    z = np.vstack([np.arange(nx)[::-1] * slope] * 3)
    phi = np.ones_like(z)
    phi[0] = phi[2] = 0.0  # walls on both sides: a 1 m wide channel
    phi[:, 0] = 0.0        # closed upstream end; the downstream edge is an open boundary
    s = _solver(z, phi, manning=n, open_boundary=True, boundary_slope=slope)
    s.set_inflows(np.array([nx + 1]), np.array([q_in]))
    s.advance(3000.0)
    h_normal = (n * q_in / np.sqrt(slope)) ** 0.6
    assert s.depth()[1, 100:300] == pytest.approx(h_normal, rel=1e-4)
    assert s.state.qx[2, 50:350] == pytest.approx(q_in, rel=1e-4)
    assert s.balance.relative_error < 1e-12


def test_bowl_fills_to_the_analytic_level():
    """A closed paraboloid z = a r² holding V settles at eta = sqrt(2 a V / pi), statically and dynamically."""
    z = bowl()
    eta = np.sqrt(2 * BOWL_A * BOWL_WATER * z.size / np.pi)
    static = fill_spill_merge(z, BOWL_WATER, cell_area=1.0, open_boundary=False)
    assert np.nanmax(static.level) == pytest.approx(eta, abs=2e-3)
    # dynamic: a column of water released on the bowl's side sloshes and comes to rest at the same level
    s = _solver(z, h_min=1e-4)
    assert_bowl_settles_at_the_static_level(s)
    assert s.speed().max() < 1e-3


def _stoker(x, t, hl, hr):
    """Stoker's (1957) dam break on a wet bed: depth at x (dam at 0) after t."""
    cl, cr = np.sqrt(G * hl), np.sqrt(G * hr)

    def jump(cm: float) -> float:  # momentum across the shock, with its speed from mass conservation
        hm, um = cm * cm / G, 2 * (cl - cm)
        speed = hm * um / (hm - hr)
        return hm * um * um + 0.5 * G * hm * hm - 0.5 * G * hr * hr - speed * hm * um

    cm = brentq(jump, cr * 1.0001, cl * 0.9999)
    hm, um = cm * cm / G, 2 * (cl - cm)
    shock = hm * um / (hm - hr)
    h = np.where(x < -cl * t, hl, np.where(x < (um - cm) * t, ((2 * cl - x / t) / 3) ** 2 / G,
                                           np.where(x < shock * t, hm, hr)))
    return h, hm, shock * t


def test_dam_break_against_stoker():
    """A frictionless dam break (1 m onto 0.5 m) against Stoker's solution, within the local-inertial tolerance.

    Local-inertial schemes drop advection, so the rarefaction is steeper, the middle plateau higher and the bore
    slower than in the full equations (de Almeida & Bates 2013). Documented tolerance (docs/flood.md): L1 error
    below 8 % of the disturbance, plateau within 8 %, bore within 15 % of its travel.
    """
    nx, hl, hr, t = 800, 1.0, 0.5, 30.0
    z = np.zeros((1, nx))
    s = _solver(z, manning=0.0)
    s.set_depth(np.where(np.arange(nx) < nx // 2, hl, hr)[None, :].astype(float))
    s.advance(t)
    x = np.arange(nx) + 0.5 - nx / 2
    exact, hm, bore = _stoker(x, t, hl, hr)
    h = s.depth()[0]
    assert np.abs(h - exact).sum() / np.abs(exact - hr).sum() < 0.08
    plateau = h[(x > 0.3 * bore) & (x < 0.6 * bore)]
    assert plateau.mean() == pytest.approx(hm, rel=0.08)
    front = x[np.argmax((h < 0.5 * (hm + hr)) & (x > 0))]
    assert abs(front - bore) < 0.15 * bore
    assert s.balance.relative_error < 1e-12


def test_rain_losses_and_outflow_balance(rough_dem):
    """Rain, drainage, infiltration and outflow through open edges add up to the stored water to rounding."""
    assert_rain_losses_and_outflow_balance(_solver(rough_dem, open_boundary=True, drainage=5e-6, infiltration=2e-6))


def test_walls_and_porosity_hold_water_where_the_open_area_is():
    """Walls take no water; a half-open cell stores half: the same volume stands twice as deep there."""
    z = np.zeros((5, 5))
    phi = np.ones_like(z)
    phi[2, 2] = 0.0
    phi[1, 1] = 0.5
    s = _solver(z, phi)
    s.advance(600.0, rain_rate=0.1 / 600.0)
    s.advance(1800.0)
    d = s.depth()
    assert d[2, 2] == 0.0
    assert d[0, 0] == pytest.approx(0.1 * 24 / 23.5, rel=1e-7)  # 24 cells catch rain (routing roofs is the grid's job)
    assert d[1, 1] == pytest.approx(d[0, 0], rel=1e-6)          # one water level over open and porous cells


def _state(s):
    st = s.state
    return [s.depth().copy(), s.max_depth().copy(), s.time_to_mark().copy(), st.qx.copy(), st.qy.copy()]


def test_chunks_and_threads_give_identical_results(rough_dem):
    """The row chunks only share two halo rows each, and update in place through side rows: any chunking and
    thread count gives the same bits (depths, maximum depths, times to the mark, discharges)."""
    runs = []
    for chunk, threads in ((5, 1), (7, 2), (5, 2), (256, 1)):
        s = _solver(rough_dem, open_boundary=True, chunk_rows=chunk, threads=threads, depth_mark=0.01)
        s.advance(300.0, rain_rate=1e-4)
        runs.append(_state(s))
    assert np.isfinite(runs[0][2]).sum() > 100  # cells reached the mark
    for other in runs[1:]:
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(runs[0], other, strict=True))


def test_uniform_roughness_and_no_losses_agree_with_the_general_step(rough_dem):
    """A grid with one Manning's n and no losses runs the step that reads neither n per cell nor the loss
    fields. Forced through the general step instead: without losses the same bits (the loss terms are exact
    zeros); with n per cell the same to rounding (the fast-math product of the friction term is associated
    differently when n is one value)."""
    runs = {}
    for n_per_cell, loss_fields in ((False, False), (False, True), (True, True)):
        s = _solver(rough_dem, open_boundary=True, threads=2, chunk_rows=9, depth_mark=0.01)
        assert s._n2u == np.float32(0.03 ** 2) and not s._losses
        if n_per_cell:
            s._n2u = -1.0
        s._losses = loss_fields
        s.advance(300.0, rain_rate=1e-4)
        runs[n_per_cell, loss_fields] = _state(s)
    fast, losses, general = runs[False, False], runs[False, True], runs[True, True]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(fast, losses, strict=True))
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    assert len(_solver(rough_dem, manning=np.full(rough_dem.shape, 0.03)).step_arrays()[0]) == 5
    varied = _solver(rough_dem, manning=np.linspace(0.02, 0.04, rough_dem.size).reshape(rough_dem.shape),
                     drainage=1e-6)
    assert varied._n2u < 0 and varied._losses and len(varied.step_arrays()[0]) == 8


def test_time_to_mark_and_maximum():
    """The first time a cell holds 0.15 m is recorded; the maximum depth is kept after the water drains."""
    z = np.zeros((3, 3))
    s = _solver(z, drainage=0.0)
    s.advance(100.0, rain_rate=0.001)  # 1 mm/s: 0.15 m after 150 s
    assert np.isnan(s.time_to_mark()).all()
    s.advance(200.0, rain_rate=0.001)
    assert s.time_to_mark() == pytest.approx(150.0, abs=1.0)
    assert s.max_depth() == pytest.approx(0.2)


def test_bad_inputs_are_refused():
    s = _solver(np.zeros((3, 3)))
    with pytest.raises(FloodError, match="negative|>= 0"):
        s.advance(10.0, rain_rate=-1.0)
    with pytest.raises(FloodError, match="finite"):
        s.set_depth(np.full((3, 3), np.nan))
    with pytest.raises(FloodError, match="wall"):
        walls = _solver(np.zeros((3, 3)), np.zeros((3, 3)))
        walls.set_inflows(np.array([4]), np.array([1.0]))
