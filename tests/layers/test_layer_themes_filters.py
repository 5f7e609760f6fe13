"""The theme registry and the `--where` filter compiler."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from layers.errors import FilterSyntaxError, LayerInputError, ThemeNotFoundError
from layers.filters import compile_filter
from layers.themes import builtin

ROOT = Path(__file__).resolve().parents[2]


def test_builtin_tree_has_the_six_catalogue_themes_with_levels():
    top = {t.path: (t.zh, t.level) for t in builtin().children()}
    assert top == {
        "spatiotemporal_base": ("时空基础", "base"), "resource_survey": ("资源调查", "theme"),
        "planning_control": ("规划管控", "theme"), "construction_projects": ("工程建设项目", "theme"),
        "public_topics": ("公共专题", "topic"), "iot_sensing": ("物联感知", "theme"),
    }


@pytest.mark.parametrize("path", ["planning_control/control_lines", "规划管控/重要控制线",
                                  "Planning control/key control lines", "/规划管控/control_lines/"])
def test_theme_lookup_by_ids_or_titles(path):
    assert builtin().get(path).path == "planning_control/control_lines"


def test_unknown_theme_names_the_known_siblings():
    with pytest.raises(ThemeNotFoundError, match=r"no theme 'roads' under 'planning_control'.*control_lines"):
        builtin().get("planning_control/roads")


def test_sample_city_manifest_themes_are_standard_themes():
    manifest = json.loads((ROOT / "data" / "sample_city" / "sample.json").read_text(encoding="utf-8"))
    # builtin().get raises ThemeNotFoundError for a theme the standard tree lacks
    themes = {e["theme"]: builtin().get(e["theme"]).path for e in manifest["files"] if e["kind"] == "vector"}
    assert themes["公共专题/应急避难"] == "public_topics/emergency_shelters"
    assert themes["物联感知/水位监测"] == "iot_sensing/water_level"
    assert themes["时空基础/三维模型/建筑"] == "spatiotemporal_base/model_3d/buildings"


def test_new_child_inherits_level_and_validates_id():
    t = builtin().new_child("公共专题/社会", "shelters", "应急避难场所", "Emergency shelters")
    assert (t.path, t.level, t.builtin) == ("public_topics/society/shelters", "topic", False)
    with pytest.raises(LayerInputError, match="not a safe identifier"):
        builtin().new_child("public_topics", "Bad-Id", "x", "x")
    with pytest.raises(LayerInputError, match="exists already"):
        builtin().new_child("public_topics", "society", "x", "x")


FIELDS = ["pop", "name", "名称", "built", "weird name"]


@pytest.mark.parametrize("text, sql, params", [
    ("pop > 1000", '("pop" > ?)', [1000]),
    ("POP >= -2.5e3", '("pop" >= ?)', [-2500.0]),
    ("名称 LIKE '东%' OR name IS NOT NULL", '(("名称" LIKE ?) OR ("name" IS NOT NULL))', ["东%"]),
    ("name NOT IN ('a', 'b''c')", '("name" NOT IN (?, ?))', ["a", "b'c"]),
    ("pop BETWEEN 1 AND 2 AND NOT (name = 'x')", '(("pop" BETWEEN ? AND ?) AND (NOT ("name" = ?)))', [1, 2, "x"]),
    ("built < DATE('2020-01-31')", '("built" < ?)', [dt.date(2020, 1, 31)]),
    ('"weird name" <> TRUE', '("weird name" <> ?)', [True]),
    ("CASEI(name) = CASEI('ABC')", "(lower(\"name\") = lower(?))", ["ABC"]),
])
def test_filters_compile_to_parameterised_sql(text, sql, params):
    compiled = compile_filter(text, FIELDS)
    assert (compiled.sql, compiled.params) == (sql, params)


@pytest.mark.parametrize("text, message", [
    ("pop > 1; DROP TABLE x", r"unexpected ';' at position 8"),
    ("population > 1", r"'population' is not a field"),
    ("pop >", r"expected a field name or a value at position 6, got end of filter"),
    ("pop = 1 pop", r"expected AND, OR or the end"),
    ("pop", r"expected a comparison"),
    ("name = 'unterminated", r"unexpected \"'\""),
    ("", r"empty filter"),
    ("built = DATE('yesterday')", r"not an ISO 8601 value"),
])
def test_bad_filters_are_rejected_with_position(text, message):
    with pytest.raises(FilterSyntaxError, match=message):
        compile_filter(text, FIELDS)


def test_injection_through_a_string_literal_stays_a_value():
    compiled = compile_filter("name = 'x'' OR 1=1 --'", FIELDS)
    assert compiled.sql == '("name" = ?)' and compiled.params == ["x' OR 1=1 --"]
