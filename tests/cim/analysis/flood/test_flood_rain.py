"""Design storms (rainstorm-intensity formula, Chicago hyetograph), rain files and rain gauges."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from affine import Affine
from pydantic import ValidationError
from pyproj import CRS

from cim.analysis.flood.errors import FloodInputError
from cim.analysis.flood.gauges import GaugeRain, GaugeSeries, RecordedGauges
from cim.analysis.flood.rain import ChicagoStorm, RainSeries, StormFormula, read_rain
from cim.analysis.flood.run import FloodParams


def test_formula_matches_the_published_beijing_values():
    """q = 2001 (1 + 0.811 lg P) / (t + 8)^0.711 L/(s ha), evaluated by hand for P = 50 a, t = 60 min."""
    f = StormFormula()
    q = 2001 * (1 + 0.811 * math.log10(50)) / (60 + 8) ** 0.711
    assert f.q(50, 60) == pytest.approx(q, rel=1e-12)
    assert f.depth(50, 60) == pytest.approx(q / 167 * 60, rel=1e-12)
    assert 80 < f.depth(50, 60) < 90  # a 50-year hour in Beijing is about 85 mm


@pytest.mark.parametrize("r", [0.3, 0.4, 0.5])
def test_chicago_storm_holds_the_formula_depth_and_peaks_at_r(r):
    storm = ChicagoStorm(return_period=20, duration_min=120, peak_ratio=r, step_min=1)
    s = storm.series()
    assert s.depth_mm == pytest.approx(storm.formula.depth(20, 120), rel=1e-12)
    peak = int(np.argmax(s.mm_h))
    assert abs((s.edges[peak] + 30) / 60 - r * 120) <= 1.0
    assert (s.mm_h > 0).all()
    # any window around the peak holds the formula's depth for its duration (the Chicago construction)
    for minutes in (10, 30, 60):
        t0 = (r * 120 - r * minutes) * 60
        assert s.depth_between(t0, t0 + minutes * 60) == pytest.approx(storm.formula.depth(20, minutes), rel=1e-9)


def test_storm_parameters_out_of_range_are_refused():
    for bad in ({"return_period": 0.5}, {"duration_min": -5}, {"peak_ratio": 1.2}, {"step_min": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            ChicagoStorm(**bad)
    # the same through the run's parameters, as the CLI builds them: the project's input error
    with pytest.raises(FloodInputError, match="storm: Chicago storm return_period=-2"):
        FloodParams.build(storm={"return_period": -2})


def test_read_rain_minutes_with_intensity(tmp_path):
    p = tmp_path / "rain.csv"
    p.write_text("minutes,mm_h\n0,12\n10,60\n20,6\n", encoding="utf-8")
    s = read_rain(p)
    assert s.edges.tolist() == [0, 600, 1200, 1800]
    assert s.depth_mm == pytest.approx((12 + 60 + 6) / 6)


def test_read_rain_timestamps_with_depths(tmp_path):
    p = tmp_path / "rain.csv"
    p.write_text("time,depth_mm\n2024-07-20T08:00:00Z,2\n2024-07-20T08:05:00Z,8\n2024-07-20T08:10:00Z,1\n")
    s = read_rain(p)
    assert s.edges.tolist() == [0, 300, 600, 900]
    assert s.mm_h.tolist() == pytest.approx([24, 96, 12])
    assert s.depth_mm == pytest.approx(11)


@pytest.mark.parametrize("text, match", [
    ("minutes,mm_h\n0,5\n10,-3\n", "negative"),
    ("minutes,rate\n0,5\n", "needs a time column"),
    ("minutes,mm_h\n10,5\n0,3\n", "increase"),
    ("minutes,mm_h\n0,abc\n", "not a number"),
])
def test_bad_rain_files(tmp_path, text, match):
    p = tmp_path / "rain.csv"
    p.write_text(text)
    with pytest.raises(FloodInputError, match=match):
        read_rain(p)


def test_rain_series_refuses_negative_intensity():
    with pytest.raises(FloodInputError, match="negative"):
        RainSeries(np.array([0.0, 60.0]), np.array([-1.0]), source="test")


def _grid():
    return Affine(10.0, 0, 1000.0, 0, -10.0, 2000.0), (60, 80), CRS.from_epsg(4547)


def _gauge(gid, x, y, rates, t0="2024-07-20T08:00:00", step_min=5):
    times = np.datetime64(t0) + np.arange(len(rates)) * np.timedelta64(step_min * 60, "s")
    return GaugeSeries(gid, x, y, "EPSG:4547", times, np.asarray(rates, float))


def test_gauge_rain_interpolates_between_gauges():
    t, shape, crs = _grid()
    a = _gauge("a", 1005.0, 1995.0, [10, 10, 10])    # the centre of cell (0, 0)
    b = _gauge("b", 1795.0, 1405.0, [50, 50, 50])    # the centre of cell (59, 79)
    rain = GaugeRain([a, b], "2024-07-20T08:00:00Z", 900, t, shape, crs)
    f = rain.field(0.0)
    assert f[0, 0] == pytest.approx(10, abs=1e-3) and f[-1, -1] == pytest.approx(50, abs=1e-3)
    assert 10 < f[30, 40] < 50
    assert rain.edges().tolist() == [0, 300, 600, 900]


def test_gauge_readings_hold_until_the_next_and_expire_after_the_gap():
    t, shape, crs = _grid()
    g = _gauge("a", 1400.0, 1700.0, [20, 0, 30], step_min=10)
    rain = GaugeRain([g], datetime(2024, 7, 20, 8, 0), 3600, t, shape, crs, max_gap_s=900)
    assert rain.rates(300.0)[0] == 20 and rain.rates(900.0)[0] == 0 and rain.rates(1500.0)[0] == 30
    assert np.isnan(rain.rates(2500.0)[0])          # the last reading is 30 min old: no rain is known
    assert rain.field(2500.0).max() == 0.0
    held = GaugeRain([g], datetime(2024, 7, 20, 8, 0), 3600, t, shape, crs, max_gap_s=900, hold_last_s=3600)
    assert held.rates(2500.0)[0] == 30              # a warning run keeps the last rate (persistence)


def test_recorded_gauges_from_csv(tmp_path):
    p = tmp_path / "gauges.csv"
    p.write_text("gauge_id,x,y,time,mm_h\n"
                 "g1,113.30,40.09,2024-07-20T08:00:00Z,12\n"
                 "g1,113.30,40.09,2024-07-20T08:05:00Z,30\n"
                 "g2,113.31,40.10,2024-07-20T08:00:00Z,5\n")
    gauges = RecordedGauges(p).rain_gauges(datetime(2024, 7, 20, 8, 3), datetime(2024, 7, 20, 9, 0))
    by = {g.id: g for g in gauges}
    assert by["g1"].mm_h.tolist() == [12, 30]  # the reading in force at the start is kept
    assert by["g2"].mm_h.tolist() == [5]
    bad = tmp_path / "bad.csv"
    bad.write_text("gauge_id,x,y,time,mm_h\ng1,1,2,2024-07-20T08:00:00Z,-4\n")
    with pytest.raises(FloodInputError, match="not a rain rate"):
        RecordedGauges(bad).rain_gauges(datetime(2024, 7, 20), datetime(2024, 7, 21))
