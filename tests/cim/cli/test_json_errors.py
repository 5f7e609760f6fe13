"""`--json` is one JSON document on stdout whatever happens: success, a library error, or a usage error click
reports (unknown option, missing argument, a value of the wrong type); without `--json` usage errors stay click's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cim.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = 0 if exc.code is None else int(exc.code)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, kind, message", [
    (["build", "OUT", "--bogus", "--json"], "NoSuchOption", "No such option: --bogus"),
    (["build", "--json"], "MissingParameter", "Missing argument 'out'"),
    (["build", "OUT", "--level", "abc", "--json"], "BadParameter", "Invalid value for '--level'"),
    (["layers", "export", "x", "o.shp", "--store", "s.duckdb", "--version", "one", "--json"], "BadParameter",
     "Invalid value for '--version'"),
    (["layers", "list", "--clearance", "--json"], "NoSuchOption", "No such option: --clearance"),
])
def test_usage_errors_with_json_are_one_json_document(argv, kind, message, capsys, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv, capsys)
    doc = json.loads(out)  # the whole of stdout is one document
    assert code == 2 and doc["exit_code"] == 2 and doc["type"] == kind and message in doc["error"]
    assert message in " ".join(err.replace("│", " ").split()) and "Usage: " in err  # the human message on stderr
    assert not list(tmp_path.iterdir())  # nothing was started


def test_without_json_usage_errors_are_clicks_alone(capsys) -> None:
    code, out, err = _run(["build", "OUT", "--bogus"], capsys)
    assert code == 2 and out == "" and "No such option: --bogus" in err


def test_library_errors_and_success_with_json(capsys, tmp_path: Path) -> None:
    code, out, err = _run(["layers", "list", "--store", str(tmp_path / "none.duckdb"), "--json"], capsys)
    doc = json.loads(out)
    assert code == 3 == doc["exit_code"] and doc["type"] == "StoreNotFoundError" and "error:" in err
    code, out, _ = _run(["layers", "themes", "--json"], capsys)
    assert code == 0 and isinstance(json.loads(out), (list, dict))


def test_layers_query_with_json_is_geojson_or_a_json_error(capsys, tmp_path: Path) -> None:
    from layers import LayerStore

    src = tmp_path / "points.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": n, "capacity": c},
         "geometry": {"type": "Point", "coordinates": [113.3 + i / 1000, 40.09]}}
        for i, (n, c) in enumerate([("a", 100), ("b", 600), ("c", 900)])]}), encoding="utf-8")
    store = tmp_path / "s.duckdb"
    with LayerStore(store) as s:
        s.import_file(src, "shelters", "公共专题")
    code, out, _ = _run(["layers", "query", "shelters", "--store", str(store), "--where", "capacity >= 500",
                         "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["type"] == "FeatureCollection"
    assert sorted(f["properties"]["name"] for f in doc["features"]) == ["b", "c"]
    code, out, _ = _run(["layers", "query", "shelters", "--store", str(store), "--format", "csv", "--json"], capsys)
    doc = json.loads(out)
    assert code != 0 and doc["exit_code"] == code and "--json prints GeoJSON" in doc["error"]
    code, out, _ = _run(["layers", "query", "nope", "--store", str(store), "--json"], capsys)
    doc = json.loads(out)
    assert code == 8 == doc["exit_code"] and "nope" in doc["error"]
