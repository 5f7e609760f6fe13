"""The hostile suite's fixtures: a server with the default per-request budget whose log is captured.

Everything a test attacks is generated here or in `corpus.py`; nothing is read from ../shared. Helpers live in
`support.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.hostile.support import HostileServer, LogCapture


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/hostile/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.hostile)


@pytest.fixture(scope="session")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileServer]:
    """The server with its defaults (a 1 s request budget, request logging on), its log captured."""
    from tests.support.fixtures import write_box_tileset
    from tests.tiles.server_support import build_store, running_server, write_dem_cog, write_ortho_cog
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path

    root = tmp_path_factory.mktemp("hostile")
    store = build_store(root / "city.duckdb", root / "src")
    model = write_box_tileset(root / "box").root
    with AccessStore(access_path(store)) as acc:
        keys = {"internal": acc.create("internal", "desk").key, "confidential": acc.create("confidential").key}
    settings_ = ServerSettings(store=store, models={"box": model},
                               maps={"ortho": write_ortho_cog(root / "ortho.tif", size=256),
                                     "dem": write_dem_cog(root / "dem.tif", size=128)},
                               log_requests=True, request_budget=1.0)
    capture = LogCapture()
    loggers = [logging.getLogger(n) for n in ("cim.server", "uvicorn", "uvicorn.error")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.INFO)
    app = create_app(settings_)
    try:
        with running_server(app) as base:
            yield HostileServer(base, root, store, keys, capture, app,
                                secrets=[k.split("_", 2)[2] for k in keys.values()])
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)


