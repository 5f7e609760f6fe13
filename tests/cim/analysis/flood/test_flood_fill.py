"""The static model: Priority-Flood against pyflwdir on the real Delft DTM, fill-spill-merge against hand-worked
cases, its own mass balance, and agreement with the dynamic solver once the water has settled."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cim.analysis.flood.fill import fill_depressions, fill_spill_merge
from cim.analysis.flood.solver import ShallowWaterSolver, solver_grid
from tests.support.paths import SHARED_DATA

DELFT_DTM = SHARED_DATA / "dem" / "delft_ahn3_dtm_0.5m.tif"


@pytest.fixture(scope="module")
def delft() -> np.ndarray:
    if not DELFT_DTM.exists():
        pytest.skip(f"{DELFT_DTM} is absent (real test data lives in ../shared/data)")
    with rasterio.open(DELFT_DTM) as src:
        return src.read(1).astype(np.float64)


@pytest.mark.realdata
@pytest.mark.parametrize("connectivity", [4, 8])
def test_priority_flood_equals_pyflwdir_on_the_delft_dtm(delft, connectivity):
    """Identical filled surfaces (every cell, bit for bit, both in float64) to pyflwdir's depression filling."""
    pyflwdir_dem = pytest.importorskip("pyflwdir.dem")
    ours = fill_depressions(delft, connectivity=connectivity)
    theirs, _ = pyflwdir_dem.fill_depressions(delft.copy(), connectivity=connectivity, nodata=-9999.0)
    assert theirs.dtype == np.float64
    assert np.array_equal(ours, theirs)
    assert (ours > delft).sum() > 1000  # the DTM really has depressions to fill


@pytest.mark.realdata
def test_fill_spill_merge_with_ample_water_is_the_filled_surface(delft):
    """With more water than every depression holds, fill-spill-merge leaves exactly the Priority-Flood surface."""
    filled = fill_depressions(delft, connectivity=4)
    res = fill_spill_merge(delft, 50.0, cell_area=0.25, connectivity=4)
    level = np.where(res.depth > 0, delft + res.depth, delft)
    assert np.abs(level - filled).max() < 1e-4
    assert res.water_in == pytest.approx(res.stored + res.outflow, rel=1e-12)


def test_three_pits_share_water_by_their_saddles():
    """Hand-worked: a closed row of pits 1, 3 and 2 m deep under a 5 m rim fills as the volumes say."""
    z = np.array([[5, 5, 5, 5, 5, 5, 5], [5, 1, 5, 3, 5, 2, 5], [5, 5, 5, 5, 5, 5, 5.0]])
    half = fill_spill_merge(z, 0.1, cell_area=1.0, open_boundary=False)
    # each pit gets the rain of its own catchment (claimed by the flood from its minimum)
    assert half.stored == pytest.approx(2.1) and half.outflow == 0
    # 10.5 m³ overfills the 9 m³ of pits: all three full, the rest 1.5 m³ spread over 21 cells above the rim
    full = fill_spill_merge(z, 0.5, cell_area=1.0, open_boundary=False)
    assert (z + full.depth)[1] == pytest.approx(np.full(7, 5 + 1.5 / 21))


def test_spill_runs_into_the_neighbour_and_out_at_the_edge():
    """Open edges: a full pit spills over its saddle into its neighbour; rain on the rim leaves the grid."""
    z = np.array([[9, 9, 9, 9, 9, 9, 9, 9], [9, 1, 4, 3, 6, 2, 5, 9], [9, 9, 9, 9, 9, 9, 9, 9.0]])
    res = fill_spill_merge(z, 2.0, cell_area=1.0, open_boundary=True)
    # the 2-cell basin of pit 1 holds 3 m³ below its 4 m saddle and gets 4: 1 m³ spills towards pit 3; the basin
    # of pit 2 (3 cells, 6 m³) holds 5 below its 6 m saddle and spills 1 m³ into the merged 1|3 pond, which then
    # holds 7 m³ at 5 m
    assert (z + res.depth)[1, 1:4] == pytest.approx([5.0, 5.0, 5.0])
    assert (z + res.depth)[1, 5:7] == pytest.approx([6.0, 6.0])
    assert res.outflow == pytest.approx(36.0) and res.stored == pytest.approx(12.0)


def test_mass_balance_on_random_terrain():
    rng = np.random.default_rng(5)
    z = rng.uniform(0, 10, (60, 70)).round(1)
    for water in (0.05, 0.5, 3.0):
        for open_boundary in (True, False):
            for connectivity in (4, 8):
                r = fill_spill_merge(z, water, cell_area=2.0, open_boundary=open_boundary, connectivity=connectivity)
                assert r.water_in == pytest.approx(r.stored + r.outflow, rel=1e-12)
                assert (r.depth >= 0).all()
                if not open_boundary:
                    assert r.outflow == 0


def test_walls_are_not_water_and_enclosed_courtyards_keep_their_rain():
    z = np.zeros((7, 7))
    walls = np.zeros((7, 7), bool)
    walls[1:6, 1] = walls[1:6, 5] = walls[1, 1:6] = walls[5, 1:6] = True  # a courtyard of 3 x 3 cells
    r = fill_spill_merge(z, 0.1, cell_area=1.0, walls=walls, open_boundary=True)
    assert (r.depth[walls] == 0).all()
    assert r.depth[2:5, 2:5] == pytest.approx(0.1)
    assert r.stored == pytest.approx(0.9) and r.outflow == pytest.approx(0.1 * (49 - 16 - 9))


@pytest.fixture(scope="module")
def three_pits() -> np.ndarray:
    """A trough (gentle 10 % slopes) with pits at 0, 0.3 and 0.6 m, ridges between them, sloping to its middle row."""
    x = np.arange(60)
    prof = np.minimum.reduce([np.abs(x - 10) * 0.1, np.abs(x - 30) * 0.1 + 0.3, np.abs(x - 50) * 0.1 + 0.6])
    return prof[None, :] + 0.1 * np.abs(np.arange(9) - 4)[:, None]


def _fill_slowly(z: np.ndarray, volume: float, settle_s: float) -> np.ndarray:
    """Dynamic: pour `volume` into the first pit's bottom over 4000 s (no waves), then let it settle `settle_s`."""
    s = ShallowWaterSolver(solver_grid(z, np.ones_like(z), 1.0, 1.0, manning=0.03, open_boundary=False),
                           threads=1, h_min=1e-4)
    cell = 4 * z.shape[1] + 10
    s.set_inflows(np.array([cell]), np.array([volume / 4000.0]))
    s.advance(4000.0)
    s.set_inflows(np.array([cell]), np.array([0.0]))
    s.advance(4000.0 + settle_s)
    assert s.balance.relative_error < 1e-12
    return s.depth()


@pytest.mark.parametrize("volume", [120.0, 200.0])
def test_static_and_dynamic_agree_at_equilibrium(three_pits, volume):
    """Water poured into the first pit: 120 m³ fills it and merges it with the second across their saddle;
    200 m³ also spills over the next saddle into the third. The settled dynamic levels are fill-spill-merge's.

    Where water spills over a saddle the dynamic pond drains towards it ever more slowly (flow over a weir
    vanishes with its head): 30000 s after the pouring it is still 2 mm above the saddle and the third pit has
    received 85 % of the spill.
    """
    z = three_pits
    water = np.zeros_like(z)
    water[4, 10] = volume
    static = fill_spill_merge(z, water, cell_area=1.0, open_boundary=False)
    d = _fill_slowly(z, volume, 3600.0 if volume < 150 else 30000.0)
    level = np.where(d > 0.01, z + d, np.nan)
    merged = static.level[4, 10]
    assert np.nanmax(static.level[4, :40]) == pytest.approx(merged)  # one pond over the first two pits
    assert np.nanmax(level[:, :40]) - np.nanmin(level[:, :40]) < 1e-3
    assert np.nanmean(level[:, :40]) == pytest.approx(merged, abs=1e-6 if volume < 150 else 3e-3)
    if volume < 150:
        assert np.isnan(static.level[4, 50]) and np.isnan(level[4, 50])
    else:
        assert merged == pytest.approx(1.4)  # full to its saddle with the third pit
        held = (d[:, 42:] * (d[:, 42:] > 0.01)).sum()
        # the rest (0.5 m³ of 200) is still on its way: above the saddle and in films on the slopes
        assert held == pytest.approx(static.depth[:, 42:].sum(), rel=0.15)
