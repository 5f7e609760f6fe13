"""Fixtures shared by the whole suite; helpers themselves live in tests/support (see docs/testing.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.fixtures import BoxTileset, write_box_tileset

# The server's per-request time budget (1 s by default, `CIM_REQUEST_BUDGET`) is wall time. Functional tests run on
# a shared 2-core machine at load averages of 20 and more, where a request that takes 50 ms when the machine is idle
# can take seconds: they get a generous budget so that they test what the routes answer. tests/hostile sets the
# default budget on its own servers and checks that it holds.
os.environ.setdefault("CIM_REQUEST_BUDGET", "60")


@pytest.fixture
def box_tileset(tmp_path: Path) -> BoxTileset:
    """A valid 3D Tiles 1.1 tileset near 113.30E 40.09N: one glb, two box features with a `code` each."""
    return write_box_tileset(tmp_path / "box_tileset")
