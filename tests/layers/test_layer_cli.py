"""`cim layers ...` through typer's CliRunner (and `main` for exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app, main

runner = CliRunner()
ADMIN = "spatiotemporal_base/admin_division"


def cim(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["layers", *args], catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture
def store_path(tmp_path: Path, communities_geojson: Path) -> Path:
    path = tmp_path / "c.duckdb"
    code, out = cim("import", str(communities_geojson), "--name", "communities", "--theme", "时空基础/行政区",
                    "--title", "社区", "--security", "public", "--store", str(path))
    assert code == 0
    assert out == ("imported communities v1: 6 features (Polygon, from EPSG:4490), 0 repaired, 0 rejected\n")
    return path


def test_list_and_info(store_path):
    code, out = cim("list", "--store", str(store_path))
    assert code == 0
    assert out.split() == ["communities", "v1", "6", "Polygon", "public", ADMIN, "社区"]
    info = json.loads(cim("info", "communities", "--json", "--store", str(store_path))[1])
    assert info["theme_title"] == "行政区 / Administrative divisions" and info["crs"] == "EPSG:4490"
    assert info["fields"] == [{"name": "name", "type": "VARCHAR"}, {"name": "code", "type": "VARCHAR"}]


def test_query_geojson_when_piped_and_csv(store_path):
    code, out = cim("query", "communities", "--where", "code = 'C10'", "--fields", "code", "--store", str(store_path))
    assert code == 0
    fc = json.loads(out)
    assert [f["properties"] for f in fc["features"]] == [{"code": "C10"}]
    assert fc["features"][0]["id"] == 1 and fc["features"][0]["geometry"]["type"] == "Polygon"
    code, out = cim("query", "communities", "--bbox", "116.30,39.90,116.305,39.905", "--fields", "name",
                    "--format", "csv", "--store", str(store_path))
    assert out.splitlines() == ["fid,name,wkt", "0,社区00,\"POLYGON ((116.31 39.9, 116.31 39.91, 116.3 39.91, "
                                "116.3 39.9, 116.31 39.9))\""]


def test_stats_history_diff_rollback_drop(store_path, communities_geojson, shelters_4490, tmp_path):
    pts = tmp_path / "s.geojson"
    shelters_4490.to_file(pts)
    cim("import", str(pts), "--name", "shelters", "--theme", "public_topics", "--store", str(store_path))
    stats = json.loads(cim("stats", "shelters", "--by", "communities", "--json", "--store", str(store_path))[1])
    assert sum(r["count"] for r in stats["rows"]) == 60 and stats["label_field"] == "name"
    cim("import", str(communities_geojson), "--name", "communities", "--new-version", "--store", str(store_path))
    code, out = cim("diff", "communities", "1", "2", "--store", str(store_path))
    assert out == "communities v1 -> v2 (by fid): 0 added, 0 removed, 0 changed\n"
    code, out = cim("rollback", "communities", "--to", "1", "--store", str(store_path))
    assert out == "communities is now v3 (rollback to version 1, 6 features)\n"
    code, out = cim("drop", "communities", "--store", str(store_path))
    assert out == "dropped communities (history of 3 versions kept; --purge deletes it)\n"
    history = json.loads(cim("history", "communities", "--json", "--store", str(store_path))[1])
    assert [h["operation"] for h in history] == ["import", "import", "rollback"]


def test_errors_map_to_exit_codes(store_path, communities_geojson, capsys):
    cases = [
        (["import", str(communities_geojson), "--name", "communities", "--theme", ADMIN], 5, "exists (version 1)"),
        (["import", str(communities_geojson), "--name", "Bad-Name", "--theme", ADMIN], 2, "not a safe identifier"),
        (["query", "nope"], 8, "no layer 'nope'"),
        (["query", "communities", "--where", "code = 1 OR"], 2, "expected a field name or a value"),
        (["import", "/no/such.gpkg", "--name", "x", "--theme", ADMIN], 3, "no such file"),
        (["query", "communities", "--bbox", "39.9,116.3,39.92,116.32"], 2,
         "latitude first? the order is minlon,minlat,maxlon,maxlat: 116.3,39.9,116.32,39.92"),
    ]
    for args, code, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["layers", *args, "--store", str(store_path)])
        err = capsys.readouterr().err
        assert exc.value.code == code, (args, err)
        assert message in " ".join(err.split()), (args, err)


def test_themes_without_a_store(tmp_path):
    code, out = cim("themes", "--store", str(tmp_path / "none.duckdb"))
    assert code == 0 and out.splitlines()[0].split() == ["construction_projects", "工程建设项目", "/", "Construction",
                                                         "projects", "[theme]"]
    assert not (tmp_path / "none.duckdb").exists()
