"""layers.values.json_value: the one rule for a property value written as JSON (store features, query exports, the
viewer's identify, WMS GetFeatureInfo; each path has its own test beside its module's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from layers.values import json_value
from tests.support.values import CASES


@pytest.mark.parametrize("value, want", [(v, w) for _, v, w in CASES], ids=[name for name, _, _ in CASES])
def test_each_kind_of_value_becomes_its_json_value(value: Any, want: Any) -> None:
    got = json_value(value)
    assert got == want and type(got) is type(want)
    assert json.loads(json.dumps(got, allow_nan=False)) == want
