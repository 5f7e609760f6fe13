"""The CRS helper: CRSs from what the data says, always east/north, float64, centimetre round trips."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pyproj
import pytest

from cim.errors import CRSError
from cim.sources.crs import CRSLabelWarning, from_ecef, parse_crs, to_ecef, transformer
from tests.support.paths import SHARED_DATA as SHARED

# A ContextCapture-style WKT: labelled EPSG:4547 but with its own central meridian and false northing.
MISLABELLED_WKT = """PROJCS["LOCAL0 / 3-degree Gauss-Kruger CM 113.36E",
    GEOGCS["China Geodetic Coordinate System 2000",
        DATUM["China_2000", SPHEROID["CGCS2000",6378137,298.257222101, AUTHORITY["EPSG","1024"]],
            AUTHORITY["EPSG","1043"]],
        PRIMEM["Greenwich",0, AUTHORITY["EPSG","8901"]],
        UNIT["degree",0.0174532925199433, AUTHORITY["EPSG","9122"]], AUTHORITY["EPSG","4490"]],
    PROJECTION["Transverse_Mercator"],
    PARAMETER["latitude_of_origin",0], PARAMETER["central_meridian",113.37], PARAMETER["scale_factor",1],
    PARAMETER["false_easting",500000], PARAMETER["false_northing",90],
    UNIT["metre",1, AUTHORITY["EPSG","9001"]], AUTHORITY["EPSG","4547"]]"""


@pytest.mark.parametrize("value", [4547, "4547", "EPSG:4547", "epsg:4547", pyproj.CRS.from_epsg(4547)])
def test_epsg_forms(value):
    assert parse_crs(value).to_epsg() == 4547


def test_prj_file_and_projjson(tmp_path):
    prj = tmp_path / "x.prj"
    prj.write_text(pyproj.CRS.from_epsg(32650).to_wkt("WKT1_ESRI"))
    assert parse_crs(prj).equals(pyproj.CRS.from_epsg(32650))
    assert parse_crs(pyproj.CRS.from_epsg(28992).to_json()).equals(pyproj.CRS.from_epsg(28992))


@pytest.mark.parametrize("code", range(4513, 4555))
def test_every_gauss_kruger_zone_is_east_north(code):
    crs = parse_crs(code)
    cm = next(p.value for p in crs.coordinate_operation.params if p.name == "Longitude of natural origin")
    # a point 10 km east of the central meridian at 30N: x/y out must be east/north whatever the axis order
    t = transformer(crs, "EPSG:4490")
    lon, lat = t.transform(*transformer("EPSG:4490", crs).transform(cm + 0.1, 30.0))
    assert lon == pytest.approx(cm + 0.1, abs=1e-9) and lat == pytest.approx(30.0, abs=1e-9)
    x, y = transformer("EPSG:4490", crs).transform(cm + 0.1, 30.0)
    assert 509_000 < x % 1_000_000 < 510_000 and 3_300_000 < y < 3_330_000  # easting (with zone prefix), northing


def test_geographic_cgcs2000_is_lon_lat_order():
    # EPSG:4490 is declared latitude-first; our transformers still take and give lon/lat
    x, y = transformer("EPSG:4490", "EPSG:4547").transform(113.30, 40.09)
    assert 400_000 < x < 500_000 and 4_400_000 < y < 4_500_000


def test_misleading_authority_label_is_dropped_and_parameters_win():
    with pytest.warns(CRSLabelWarning, match="says EPSG:4547 but its parameters define another CRS"):
        crs = parse_crs(MISLABELLED_WKT)
    assert crs.to_epsg() is None
    lon, lat = transformer(crs, "EPSG:4490").transform(501027.524, 2488718.808)
    assert lon == pytest.approx(113.38, abs=0.001)  # EPSG:4547 (CM 114) would give 113.4 only by accident
    wrong = pyproj.Transformer.from_crs("EPSG:4547", "EPSG:4490", always_xy=True).transform(501027.524, 2488718.808)
    assert abs(wrong[0] - lon) > 0.5


def test_consistent_label_is_kept_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crs = parse_crs(pyproj.CRS.from_epsg(4547).to_wkt("WKT1_GDAL"))
    assert crs.to_epsg() == 4547


@pytest.mark.parametrize("bad", ["", "EPSG:999999", "not a crs", "PROJCS[broken"])
def test_bad_values_name_the_value_and_the_fix(bad):
    with pytest.raises(CRSError, match="--crs|EPSG:n|empty CRS") as info:
        parse_crs(bad, what="--crs")
    assert "--crs" in str(info.value)


def test_missing_prj_file(tmp_path):
    with pytest.raises(CRSError, match="does not exist"):
        parse_crs(tmp_path / "none.prj")


@pytest.mark.parametrize("code,x,y,z", [(4547, 440_000.0, 4_440_000.0, 1050.0), (32650, 500_000.0, 4_400_000.0, 30.0),
                                        (28992, 85_000.0, 447_500.0, 2.0)])
def test_ecef_round_trip_under_a_millimetre(code, x, y, z):
    rng = np.random.default_rng(code)
    xs, ys = x + rng.uniform(-2000, 2000, 500), y + rng.uniform(-2000, 2000, 500)
    zs = z + rng.uniform(-50, 200, 500)
    ecef = to_ecef(code, xs, ys, zs)
    assert ecef.dtype == np.float64 and np.all(np.linalg.norm(ecef, axis=1) > 6.3e6)
    back = from_ecef(code, ecef)
    assert np.abs(back - np.column_stack([xs, ys, zs])).max() < 1e-3


@pytest.mark.realdata
def test_real_contextcapture_metadata_is_read_by_its_parameters():
    meta = SHARED / "oblique_osgb" / "zhongshan" / "metadata.xml"
    if not meta.is_file():
        pytest.skip(f"real test data not found at {meta}")
    wkt = re.search(r"<SRS>(.*)</SRS>", meta.read_text(), re.S).group(1)
    with pytest.warns(CRSLabelWarning):
        crs = parse_crs(wkt, what=str(meta))
    lon, lat = transformer(crs, "EPSG:4490").transform(501027.524, 2488718.808 + 12_000)
    assert 113.37 < lon < 113.39 and 22.5 < lat < 22.7


@pytest.mark.parametrize("crs, lon, lat, want", [
    (4490, 113.3, 40.1, 4547),      # CGCS2000 at the sample city: Gauss-Krüger CM 114E
    (4326, 113.3, 40.1, 32649),     # WGS 84 data in China: its own datum's UTM zone (no datum shift)
    (4490, 115.49, 30.0, 4547),     # zones meet at CM +- 1.5 degrees; the edge belongs to the eastern zone
    (4490, 115.5, 30.0, 4548),
    (4490, 74.0, 39.5, 4534),       # the westernmost zone (CM 75E) takes Kashgar's west
    (4326, 4.36, 52.01, 32631),     # Delft: UTM 31N
    (4326, -70.65, -33.45, 32719),  # Santiago: UTM 19S
    (4258, 4.36, 52.01, 25831),     # ETRS89 data keeps its datum: ETRS89 / UTM zone 31N
])
def test_local_projected_crs_is_the_gauss_krueger_zone_for_cgcs2000_and_utm_otherwise(crs, lon, lat, want):
    from cim.sources.crs import local_projected_crs

    got = local_projected_crs(lon, lat, like=crs)
    assert got.to_epsg() == want
    # checked with pyproj: the place lies within its zone (easting within 1.5 or 3 degrees of the meridian)
    x, _ = pyproj.Transformer.from_crs(pyproj.CRS.from_epsg(crs), got, always_xy=True).transform(lon, lat)
    half_width = (1.5 if want < 5000 else 3.0) * 111_320 * np.cos(np.radians(lat))
    assert abs(x - 500_000) <= half_width * 1.01  # (a spherical estimate of the width)


def test_3d_form_is_pyprojs_and_remembered_per_crs_object():
    from pyproj import CRS

    from cim.sources.crs import to_3d

    by_code = CRS.from_epsg(4547)
    by_wkt = CRS.from_wkt(by_code.to_wkt())  # the same WKT, a 3D form without the conversion's identifier
    for crs in (by_code, by_wkt, CRS.from_epsg(32650)):
        assert to_3d(crs).to_wkt() == crs.to_3d().to_wkt()
        assert to_3d(crs) is to_3d(crs)
    assert to_3d(by_code).to_wkt() != to_3d(by_wkt).to_wkt()
    assert to_3d(CRS.from_epsg(4978)).is_geocentric and len(to_3d("EPSG:4979").axis_info) == 3


def test_transformers_are_the_wkt_cached_ones_for_crs_objects_too():
    from pyproj import CRS

    from cim.sources import crs as crsmod

    a, b = CRS.from_epsg(4547), crsmod.ECEF
    first = transformer(a, b)
    assert transformer(a, b) is first  # remembered for the objects
    assert transformer(CRS.from_epsg(4547), b) is first  # an equal CRS: the same WKT, the same transformer
    assert transformer("EPSG:4547", b) is first
    assert transformer(b, a) is not first


def test_remembered_by_object_keeps_the_last_entries_and_answers_only_for_the_same_objects():
    import threading

    from cim.sources.crs import _ByObject

    memo = _ByObject(size=4)
    keys = [object() for _ in range(6)]
    for i, k in enumerate(keys):
        memo.put(i, k, keys[0])
    assert [memo.get(k, keys[0]) for k in keys] == [None, None, 2, 3, 4, 5]  # the oldest two went
    assert memo.get(keys[5], keys[1]) is None and memo.get(keys[0], keys[5]) is None  # another pair: nothing
    held = [object() for _ in range(400)]
    threads = [threading.Thread(target=lambda j=j: [memo.put(j, o) for o in held[j::4]]) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(memo._items) == 4 and all(memo.get(*objs) == v for objs, v in memo._items.values())
