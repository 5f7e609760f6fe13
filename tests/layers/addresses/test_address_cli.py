"""`cim geocode ...` through typer's CliRunner, against exact output, on the sample city's store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app, main
from tests.support.addresses import SAMPLE, write_sample_registry

runner = CliRunner()


def cim(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["geocode", *args], catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from layers import LayerStore

    path = tmp_path_factory.mktemp("geocode-cli") / "city.duckdb"
    with LayerStore(path) as s:
        s.import_file(SAMPLE / "buildings.gpkg", "buildings", "时空基础/三维模型/建筑", security="internal")
        for name in ("streets", "communities"):
            s.import_file(SAMPLE / f"{name}.gpkg", name, "时空基础/行政区划", security="public")
    code, out = cim("build", "--store", str(path))
    assert code == 0 and out == "addresses v1: 2500 standard addresses, 0 footprints skipped\n"
    return path


def test_run_one_address(store: Path) -> None:
    code, out = cim("run", "大同胜利街三十四号2单元501", "--store", str(store))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "normalised 0.95  山西省大同市平城区东街街道胜利大街34号"
    assert lines[2] == "  unit 2  floor 5  room 501"
    doc = json.loads(cim("run", "圣利大街34号", "--json", "--store", str(store))[1])
    assert doc["reason"] == "fuzzy" and doc["matched"] is True


def test_run_a_csv_and_link_a_registry(store: Path, tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    reg = tmp_path / "registry"
    write_sample_registry(reg)
    out = tmp_path / "orgs.csv"
    code, text = cim("run", "--csv", str(reg / "registry_organisations.csv"), "--out", str(out),
                     "--store", str(store))
    assert code == 0 and text.startswith(f"{out}: ") and "matched" in text
    assert pacsv.read_csv(out).num_rows == 861
    with pytest.raises(SystemExit) as exc:
        main(["geocode", "run", "--csv", str(reg / "registry_organisations.csv"), "--out", str(out),
              "--store", str(store)])
    assert exc.value.code == 5  # exists: needs --overwrite
    doc = json.loads(cim("link", str(reg / "registry_houses.csv"), "--kind", "houses", "--json",
                         "--store", str(store))[1])
    assert doc["layer"] == "address_houses" and doc["linked"] >= 0.95 * doc["records"]
    rows = json.loads(cim("counts", "--by", "town", "--json", "--store", str(store))[1])
    assert sum(r["houses"] for r in rows) == doc["linked"]


def test_reverse(store: Path) -> None:
    doc = json.loads(cim("reverse", "113.3098", "40.0943", "--json", "--store", str(store))[1])
    assert doc["building_code"] and doc["town"] == "西街街道" and doc["distance_m"] < 50


def test_errors_become_exit_codes(store: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["geocode", "run", "--store", str(store)])
    assert exc.value.code == 2  # neither a text nor --csv
    with pytest.raises(SystemExit) as exc:
        main(["geocode", "run", "x", "--store", str(tmp_path / "none.duckdb")])
    assert exc.value.code == 3  # no store
    with pytest.raises(SystemExit) as exc:
        main(["geocode", "link", str(SAMPLE / "buildings.gpkg"), "--kind", "pets", "--store", str(store)])
    assert exc.value.code == 2
