"""Attribute names as real data has them: height and floor columns found case-insensitively, in Chinese and in
pinyin initials; numbers read from text such as "12层"; columns that look like heights but were not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cim.sources.attributes import FLOOR_NAMES, HEIGHT_NAMES, find_field, likely_fields, normalise, numeric_values


@pytest.mark.parametrize(("columns", "height", "floors"), [
    (["OBJECTID", "HEIGHT", "Floors"], "HEIGHT", "Floors"),               # shapefile upper case
    (["id", "measuredHeight", "storeysAboveGround"], "measuredHeight", "storeysAboveGround"),  # CityGML/CityJSON
    (["osm_id", "building:levels", "height"], "height", "building:levels"),  # OpenStreetMap
    (["编号", "建筑高度", "层数"], "建筑高度", "层数"),                        # Chinese survey data
    (["BSM", "JZGD", "CS"], "JZGD", "CS"),                                 # pinyin initials (建筑高度, 层数)
    (["bsm", "jzgd", "zcs"], "jzgd", "zcs"),                               # ... in lower case
    (["name", "Building_Height", "num floors"], "Building_Height", "num floors"),
    (["name", "area"], None, None),
])
def test_height_and_floor_columns_are_found_as_real_data_names_them(columns, height, floors):
    assert find_field(columns, HEIGHT_NAMES) == height
    assert find_field(columns, FLOOR_NAMES) == floors


def test_the_most_specific_name_wins_and_a_column_keeps_its_spelling():
    # 建筑高度 (building height) before 高度 (any height); the column's own spelling is returned
    assert find_field(["高度", "建筑高度"], HEIGHT_NAMES) == "建筑高度"
    assert find_field(["Height_M"], ["height_m"]) == "Height_M"
    assert normalise(" Building-Height: ") == "buildingheight"


def test_numbers_are_read_from_text_and_nonsense_is_nan():
    values = pd.Series(["12层", "25.5 m", "25,5", "7", None, "unknown", "-3", "0", 18, "inf"], dtype=object)
    got = numeric_values(values)
    expected = [12.0, 25.5, 25.5, 7.0, np.nan, np.nan, np.nan, np.nan, 18.0, np.nan]
    np.testing.assert_array_equal(got, np.array(expected))
    np.testing.assert_array_equal(numeric_values(pd.Series([3, 0, -1, np.nan])), [3.0, np.nan, np.nan, np.nan])


def test_columns_that_look_like_heights_are_reported():
    cols = ["code", "高度(米)", "roof_hgt", "Gebaeudehoehe", "n_levels", "area", "height"]
    assert likely_fields(cols, used=("height",)) == ["高度(米)", "Gebaeudehoehe", "n_levels"]
