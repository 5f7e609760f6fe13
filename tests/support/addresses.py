"""Shared builders for the standard-address tests: the committed sample city's standard addresses, its messy
registry (with ground truth) and a store holding both."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pyogrio

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample_city"
DIVISION_LAYERS = ("streets", "communities")


def sample_divisions() -> list[tuple[str, str, Any]]:
    """(code, name, lon/lat polygon) of the sample city's towns (街道) and communities."""
    rows: list[tuple[str, str, Any]] = []
    for name in DIVISION_LAYERS:
        g = pyogrio.read_dataframe(SAMPLE / f"{name}.gpkg").to_crs(4490)
        rows += list(zip(g["code"], g["name"], g.geometry.values, strict=True))
    return rows


def write_sample_registry(out: Path) -> dict[str, Any]:
    """The sample city's standard addresses and messy registry, written by the generator into `out`."""
    from cim.sample.addresses import write_registry

    out.mkdir(parents=True, exist_ok=True)
    return write_registry(out, pyogrio.read_dataframe(SAMPLE / "buildings.gpkg"), sample_divisions(), seed=7)


def read_registry(root: Path) -> list[dict[str, str]]:
    """Every registry record with its ground truth: registry, record_id, address, building_code, kinds..."""
    from cim.sample.addresses import REGISTRY_FILES, TRUTH_FILE

    truth = {(r["registry"], r["record_id"]): r for r in csv.DictReader((root / TRUTH_FILE).open(encoding="utf-8"))}
    out = []
    for registry, fname in REGISTRY_FILES.items():
        for row in csv.DictReader((root / fname).open(encoding="utf-8")):
            rid = next(iter(row.values()))
            out.append({**truth[(registry, rid)], "address": row["address"]})
    return out


def build_address_store(path: Path, registry: Path) -> Path:
    """A store with the sample's buildings (internal), towns and communities (public), the standard addresses
    built from the buildings (public) and the three registries linked (population confidential, the others
    internal)."""
    from cim.sample.addresses import REGISTRY_FILES
    from layers import LayerStore
    from layers.addresses import Geocoder, build_address_layer, link_registry

    with LayerStore(path) as store:
        store.import_file(SAMPLE / "buildings.gpkg", "buildings", "时空基础/三维模型/建筑", security="internal")
        for name in DIVISION_LAYERS:
            store.import_file(SAMPLE / f"{name}.gpkg", name, "时空基础/行政区划", security="public")
        built = build_address_layer(store, "buildings")
        assert built.addresses == 2500 and not built.skipped and built.version == 1
        gc = Geocoder.from_store(store)
        for kind, fname in REGISTRY_FILES.items():
            link_registry(store, registry / fname, kind, geocoder=gc)
    return path
