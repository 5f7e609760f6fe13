from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.addresses import build_address_store, sample_divisions, write_sample_registry


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample city's standard addresses and messy registry with ground truth (generated once)."""
    root = tmp_path_factory.mktemp("registry")
    write_sample_registry(root)
    return root


@pytest.fixture(scope="session")
def gazetteer():
    from layers.addresses import Gazetteer

    return Gazetteer.from_divisions(sample_divisions())


@pytest.fixture(scope="session")
def geocoder(gazetteer):
    import pyogrio

    from layers.addresses import Geocoder, addresses_from_footprints
    from tests.support.addresses import SAMPLE

    table, skipped = addresses_from_footprints(pyogrio.read_dataframe(SAMPLE / "buildings.gpkg"), gazetteer)
    assert not skipped
    return Geocoder(table, gazetteer)


@pytest.fixture(scope="session")
def address_store(tmp_path_factory: pytest.TempPathFactory, registry_dir: Path) -> Iterator[Path]:
    """A store file with the sample's buildings, divisions, standard addresses and linked registries."""
    root = tmp_path_factory.mktemp("address-store")
    yield build_address_store(root / "city.duckdb", registry_dir)
