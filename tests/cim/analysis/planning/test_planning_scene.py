"""The planning scene's building set: rows by building ID, scenes without some buildings."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from cim.analysis.planning.scene import CityScene
from cim.errors import InputError
from cim.sources.crs import transformer

X0, Y0 = transformer("EPSG:4326", "EPSG:4547").transform(114.0, 40.09)


@pytest.fixture(scope="module")
def three() -> CityScene:
    boxes = [(0, 0, 10, 10), (40, 0, 50, 10), (0, 40, 10, 50)]
    return CityScene.from_frame(gpd.GeoDataFrame(
        {"code": ["a", "b", "c"], "height": [10.0, 20.0, 30.0]},
        geometry=[shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1) for x0, y0, x1, y1 in boxes], crs="EPSG:4547"))


def test_rows_follow_the_ids_given(three: CityScene) -> None:
    bs = three.buildings
    rows = bs.rows(["c", "a"])
    assert rows.dtype == np.int64
    assert bs.ids[rows].tolist() == ["c", "a"]
    assert bs.height[bs.rows(np.array(["b"], dtype=object))].tolist() == [20.0]
    assert bs.rows([]).shape == (0,)


def test_unknown_ids_are_refused_by_name(three: CityScene) -> None:
    with pytest.raises(InputError, match=r"buildings \['x', 'y'\] are not in the model"):
        three.buildings.rows(["a", "x", "y"])
    with pytest.raises(InputError, match=r"\['x'\] are not in the model"):
        three.without(["x"])


def test_without_drops_exactly_the_ids_given(three: CityScene) -> None:
    assert sorted(three.without(["b"]).buildings.ids.tolist()) == ["a", "c"]
    assert len(three.without([]).buildings) == 3
