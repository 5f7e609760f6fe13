"""The notebooks under notebooks/ run top to bottom on a small sample city (what an analyst runs first)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(path, as_version=4)
    # Unix sockets in the test's folder, not TCP ports: kernels started at once by parallel test workers picked the
    # same free port ("Address already in use"); a kernel on a loaded machine may take over nbclient's default 60 s
    # to answer its first message
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "k"))
    client = nbclient.NotebookClient(nb, km=km, timeout=300, startup_timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # the notebooks keep their work folders (tempfile.mkdtemp) for the analyst to open: here they go to tmp_path
    (tmp_path / "tmp").mkdir()
    client.execute(env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    last = nb.cells[-1] if nb.cells[-1].cell_type == "code" else nb.cells[-2]
    assert last.get("execution_count") is not None
