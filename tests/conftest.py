"""Fixtures shared by the whole suite; helpers themselves live in tests/support (see docs/testing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fixtures import BoxTileset, write_box_tileset


@pytest.fixture
def box_tileset(tmp_path: Path) -> BoxTileset:
    """A valid 3D Tiles 1.1 tileset near 113.30E 40.09N: one glb, two box features with a `code` each."""
    return write_box_tileset(tmp_path / "box_tileset")
