"""Standard addresses as a versioned layer family of the store, the 一标三实 links and their security."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from layers import LayerStore
from layers.addresses import (
    AddressesNotFoundError,
    AddressInputError,
    Geocoder,
    building_links,
    geocode_file,
    link_counts,
    load_addresses,
    read_address_file,
    save_addresses,
)
from tests.support.addresses import read_registry


def test_addresses_built_from_the_footprints_are_the_footprints_addresses(address_store: Path) -> None:
    with LayerStore(address_store, read_only=True) as store:
        table = load_addresses(store)
        b = store.query_arrow("buildings", fields=["code", "address"])
        info = store.info("addresses")
    by_code = dict(zip(b.column("code").to_pylist(), b.column("address").to_pylist(), strict=True))
    assert len(table) == len(by_code) == 2500
    for code, addr in zip(table.column("building_code"), table.column("address"), strict=True):
        assert by_code[code] == addr
    codes = table.column("code")
    assert len(set(codes)) == len(codes) and all(len(c) == 18 and c.isdigit() for c in codes)
    assert all(c.startswith(cc) for c, cc in zip(codes, table.column("community_code"), strict=True))
    assert info.theme == "public_topics/place_names" and info.security == "public"
    assert info.geometry_type == "Point"


def test_counts_per_building_community_and_town_add_up(address_store: Path, registry_dir: Path) -> None:
    with LayerStore(address_store, read_only=True) as store:
        by_b = link_counts(store, "building")
        by_c = link_counts(store, "community")
        by_t = link_counts(store, "town")
        n_pop = store.info("address_population").feature_count
    for t in (by_b, by_c, by_t):
        assert sum(t.column("population").to_pylist()) == n_pop
    truth = [r for r in read_registry(registry_dir) if r["registry"] == "population" and r["building_code"]]
    assert n_pop >= 0.95 * len(truth)
    # records land on the building the ground truth names (the geocoder's precision, seen through the store)
    with LayerStore(address_store, read_only=True) as store:
        t = store.query_arrow("address_population", fields=["person_id", "building_code"])
    got = dict(zip(t.column("person_id").to_pylist(), t.column("building_code").to_pylist(), strict=True))
    want = {r["record_id"]: r["building_code"] for r in truth}
    agree = sum(1 for pid, b in got.items() if want.get(pid) == b)
    assert agree >= 0.99 * len(got)


def test_personal_data_needs_confidential_clearance(address_store: Path) -> None:
    code = None
    with LayerStore(address_store, read_only=True) as store:
        assert store.info("address_population").security == "confidential"
        t = store.query_arrow("address_population", fields=["building_code"], limit=1)
        code = t.column("building_code")[0].as_py()
        full = building_links(store, code, records=True)
    assert full["counts"]["population"] >= 1 and full["records"]["population"][0]["id_number"]
    for clearance in ("public", "internal"):
        with LayerStore(address_store, read_only=True, clearance=clearance) as store:
            seen = building_links(store, code, records=True)
            assert "population" not in seen["counts"] and "population" not in seen["records"]
            assert "population" not in link_counts(store, "community").column_names
            text = repr(seen)
            assert not any(r["id_number"] in text for r in full["records"]["population"])
            if clearance == "public":
                assert seen["counts"] == {}


def test_a_new_version_of_the_addresses(address_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(address_store.read_bytes())
    with LayerStore(copy) as store:
        table = load_addresses(store)
        keep = [i % 10 != 0 for i in range(len(table))]
        from layers.addresses.model import select

        report = save_addresses(store, select(table, keep), new_version=True)
        assert report.version == 2
        diff = store.diff("addresses", 1, 2)
        assert len(diff.removed) == 250 and not diff.added
        assert len(Geocoder.from_store(store)) == 2250
        assert len(Geocoder.from_store(store, version=1)) == 2500


def test_no_addresses_layer_says_how_to_make_one(tmp_path: Path) -> None:
    with LayerStore(tmp_path / "empty.duckdb") as store, pytest.raises(AddressesNotFoundError, match="geocode build"):
        load_addresses(store)


def test_import_a_registry_file_with_chinese_headers(gazetteer, tmp_path: Path) -> None:
    f = tmp_path / "std.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["地址编码", "区县", "街路巷", "门牌号", "楼栋", "经度", "纬度"])
        w.writerow(["140213001001000001", "平城区", "胜利大街", "34号", "", "113.2905", "40.0961"])
        w.writerow(["", "平城区", "友谊街", "108", "2号楼", "113.2950", "40.0950"])
        w.writerow(["", "", "", "", "", "113.29", "40.09"])
    table = read_address_file(f, gazetteer)
    rows = table.table.to_pylist()
    assert rows[0]["code"] == "140213001001000001" and rows[0]["number"] == "34" and rows[0]["town"] == "东街街道"
    assert rows[1]["building"] == "2" and rows[1]["address"].endswith("友谊街108号2号楼") and len(rows[1]["code"]) == 18
    assert rows[0]["province"] == "山西省" and rows[0]["city"] == "大同市"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,lon,lat\nx,113.29,40.09\n", encoding="utf-8")
    with pytest.raises(AddressInputError, match="no address components"):
        read_address_file(bad, gazetteer)


def test_geocode_file_writes_csv_and_geoparquet(geocoder: Geocoder, registry_dir: Path, tmp_path: Path) -> None:
    import geopandas as gpd
    import pyarrow.csv as pacsv

    from cim.errors import OutputExistsError

    src = registry_dir / "registry_organisations.csv"
    out = tmp_path / "orgs.csv"
    report = geocode_file(geocoder, src, out)
    t = pacsv.read_csv(out)
    assert t.num_rows == report.rows > 500 and report.matched >= 0.95 * report.rows
    assert {"org_id", "address", "match_reason", "building_code", "c_road", "c_number"} <= set(t.column_names)
    assert sum(report.by_reason.values()) == report.rows
    assert all(u.reason in ("partial", "none") for u in report.unmatched)
    with pytest.raises(OutputExistsError):
        geocode_file(geocoder, src, out)
    pq = geocode_file(geocoder, src, tmp_path / "orgs.parquet")
    gdf = gpd.read_parquet(tmp_path / "orgs.parquet")
    assert gdf.crs.to_epsg() == 4490 and gdf.geometry.notna().sum() >= pq.matched
    with pytest.raises(AddressInputError, match="no column"):
        geocode_file(geocoder, src, tmp_path / "x.csv", column="addr")
