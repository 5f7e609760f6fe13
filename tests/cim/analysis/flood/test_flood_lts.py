"""Local time stepping (cim.analysis.flood.lts) against the global-step solver, the reference.

The invariants of the reference hold exactly (still water, mass to rounding, positivity, the same bits for any
thread count); on a generated storm with a deep pond beside shallow streets (so several levels are in use) the
maximum depths and the times to 0.15 m stay within the documented bounds of the reference's (docs/flood.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from cim.analysis.flood.solver import ShallowWaterSolver
from tests.support.flood import (
    assert_bowl_settles_at_the_static_level,
    assert_rain_losses_and_outflow_balance,
    bowl,
)
from tests.support.flood import small_solver as _solver


def _saved(s: ShallowWaterSolver) -> float:
    """Work relative to the global step (1: every cell took every finest step)."""
    return s.state.cell_updates / (s.state.steps * s.ncells)


@pytest.fixture(scope="module")
def town():
    """A 64 x 64 m town at 1 m: a gentle slope, a 1.6 m deep pond in one corner (filled), rough streets, blocks
    of buildings as walls. The pond's depth sets the global step; the streets could step 4-8x longer."""
    rng = np.random.default_rng(5)
    n = 64
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    z = 0.004 * xx + 0.002 * yy + rng.uniform(0.0, 0.03, (n, n))
    r2 = (xx - 12.0) ** 2 + (yy - 12.0) ** 2
    z -= 1.8 * np.exp(-r2 / 40.0)
    phi = np.ones((n, n))
    for j0 in range(28, 60, 12):
        for i0 in range(6, 60, 12):
            if (j0 // 12 + i0 // 12) % 3:
                phi[j0:j0 + 7, i0:i0 + 7] = 0.0
    pond = np.where(r2 < 64.0, np.maximum(z[12, 12] + 1.6 - z, 0.0), 0.0)
    return z, phi, pond


def _storm(z, phi, pond, **kw):
    """A 20-minute storm in 5-minute blocks (70 mm), then 10 minutes; arrival times of 5 cm (more cells than
    0.15 m on this small town)."""
    s = _solver(z, phi, open_boundary=True, depth_mark=0.05, **kw)
    s.set_depth(pond)
    for k, mm_h in enumerate((60, 240, 600, 60)):
        s.advance((k + 1) * 300.0, rain_rate=mm_h / 3.6e6)
    s.advance(1800.0)
    return s


@pytest.fixture(scope="module")
def storms(town):
    z, phi, pond = town
    return _storm(z, phi, pond), _storm(z, phi, pond, local_levels=3, lts_block=8)


def test_lts_steps_less_and_keeps_the_reference_maximum_depths(storms):
    """The bound: max depths within 1 cm and 1.5 mm RMS of the
    reference's, arrival times within 10 s (median) and 60 s (95 %) where both arrive, at most 3 % of the cells
    arriving in one run only, while local steps do at most 60 % of the work (measured: 5.3 mm, 0.90 mm, 1.9 s,
    4.3 s, 7 of 246 cells, 42 %)."""
    ref, lts = storms
    assert _saved(ref) == 1.0
    assert _saved(lts) < 0.6
    open_ = ref.grid.sa[1:-1, 1:-1] > 0
    d = (lts.max_depth() - ref.max_depth())[open_]
    assert np.abs(d).max() < 0.01
    assert np.sqrt(np.mean(d ** 2)) < 0.0015
    t_ref, t_lts = ref.time_to_mark()[open_], lts.time_to_mark()[open_]
    both = np.isfinite(t_ref) & np.isfinite(t_lts)
    assert both.sum() > 200
    late = np.abs(t_ref - t_lts)[both]
    assert np.median(late) < 10.0 and np.percentile(late, 95) < 60.0
    assert (np.isfinite(t_ref) != np.isfinite(t_lts)).sum() <= 0.03 * both.sum()
    assert lts.balance.relative_error < 1e-12
    assert (lts.depth() >= 0).all()


def test_lts_lake_at_rest_stays_at_rest():
    """A still lake for an hour over a rough shelf (islands, 0-0.3 m deep) with a 1.8 m hole (several levels)."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:48, 0:64].astype(float)
    z = rng.uniform(0.7, 1.1, (48, 64)) - 1.5 * np.exp(-((xx - 20) ** 2 + (yy - 24) ** 2) / 20.0)
    h0 = np.maximum(1.0 - z, 0.0)
    s = _solver(z, local_levels=3, lts_block=8)
    s.set_depth(h0)
    s.advance(3600.0)
    assert _saved(s) < 0.7
    assert s.speed().max() < 1e-6
    assert np.abs(s.depth() - h0).max() < 1e-9
    assert s.balance.relative_error < 1e-12


def test_lts_balances_rain_losses_and_outflow():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    z = rng.uniform(0.0, 0.5, (40, 50)) - 2.0 * np.exp(-((xx - 10) ** 2 + (yy - 10) ** 2) / 30.0)
    s = _solver(z, open_boundary=True, drainage=5e-6, infiltration=2e-6, local_levels=4, lts_block=8)
    s.set_depth(np.where(z < -1.0, -1.0 - z, 0.0))
    assert_rain_losses_and_outflow_balance(s)
    assert _saved(s) < 0.9


def test_lts_bowl_settles_at_the_static_level():
    """The bowl of test_flood_solver with local steps: a released column comes to rest at the analytic level."""
    s = _solver(bowl(), h_min=1e-4, local_levels=2, lts_block=8)
    assert_bowl_settles_at_the_static_level(s)
    assert s.balance.relative_error < 1e-12


def test_lts_gives_the_same_bits_on_one_or_two_threads(town):
    z, phi, pond = town
    runs = []
    for threads in (1, 2):
        s = _solver(z, phi, open_boundary=True, local_levels=3, lts_block=8, threads=threads)
        s.set_depth(pond)
        s.advance(120.0, rain_rate=1e-4 / 3.6)
        runs.append((s.depth().copy(), s.state.qx.copy()))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])


def test_lts_with_every_block_at_the_finest_level_is_the_global_step():
    """A sheet deep enough everywhere that no block may step longer: every cell fires every finest step with the
    global step, so the run equals the reference to rounding (the sums are ordered differently)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:40, 0:56].astype(float)
    z = rng.uniform(0.0, 0.05, xx.shape)
    h0 = 0.4 + 0.1 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    runs = []
    for kw in ({}, {"local_levels": 3, "lts_block": 8}):
        s = _solver(z, **kw)
        s.set_depth(h0)
        s.advance(20.0, rain_rate=50 / 3.6e6)
        runs.append(s)
    ref, lts = runs
    assert lts._lts["lvb"].max() == 0 and lts.state.steps == ref.state.steps
    assert _saved(lts) == pytest.approx(1.0)
    assert np.abs(lts.depth() - ref.depth()).max() < 1e-12
    assert np.abs(lts.state.qx - ref.state.qx).max() < 1e-12
    assert np.abs(ref.depth() - h0).max() > 0.01  # the water moved


def test_lts_levels_count_the_flow_speed_not_only_the_depth():
    """A 5 cm sheet running at 2 m/s beside a 1.6 m pond: by depth alone its blocks could step 4x longer
    (sqrt(1.6 / 0.05) = 5.7), but its fastest signal (|u| + sqrt(g h) = 2.7 m/s) is as fast as the pond's wave
    (4.0 m/s) within a factor 2, so it keeps the finest level; the still sheet beside it steps 4x longer."""
    n = 64
    z = np.zeros((n, n))
    h0 = np.full((n, n), 0.05)
    h0[:16, :16] = 1.6
    s = _solver(z, local_levels=3, lts_block=16)
    s.set_depth(h0)
    s.state.qx[1:-1, 33:-2] = 0.05 * 2.0  # rows of the lower half, columns 32-63: 2 m/s eastwards
    s.state.qx[1:33, :] = 0.0
    s.advance(1e9, max_steps=1)
    lvb = s._lts["lvb"]
    assert lvb[0, 0] == 0
    assert lvb[3, 3] == 0 and lvb[2, 3] == 0  # the running sheet
    assert lvb[0, 3] == 2  # still sheet, 3 blocks from the pond (one level more per block from it)
