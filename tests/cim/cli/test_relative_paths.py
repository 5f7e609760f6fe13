"""Every command with relative paths only, run from a working directory of its own whose path, like every input and
output, has spaces and Chinese characters; once with osgconv on PATH and once with it hidden.

`cim sample mycity` used to fail: the relative output path reached osgconv, which runs in another directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from cim.sources.osgb import has_osgconv
from tests.support.http import free_port
from tiles.check import check_tileset

pytestmark = pytest.mark.slow

CIM = Path(sys.executable).with_name("cim")
CITY = "样例 城市"


class Workdir(NamedTuple):
    cwd: Path
    env: dict[str, str]
    osgconv: bool


def cim(args: list[str], w: Workdir, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(CIM), *args], cwd=w.cwd, env=w.env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"cim {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module", params=["osgconv", "no osgconv"])
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """A sample city written by `cim sample` into a relative folder of a fresh working directory."""
    with_osgconv = request.param == "osgconv"
    if with_osgconv and not has_osgconv():
        pytest.skip("osgconv missing: apt-get install -y openscenegraph")
    cwd = tmp_path_factory.mktemp("relative") / "工作 目录"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CIM_OSGCONV"}
    if not with_osgconv:
        env["PATH"] = str(CIM.parent)  # this interpreter's bin folder only: no osgconv
    w = Workdir(cwd, env, with_osgconv)
    cim(["sample", CITY, "--buildings", "40"], w)
    return w


def test_sample_writes_the_city_and_its_oblique_production_where_asked(workdir: Workdir) -> None:
    city = workdir.cwd / CITY
    manifest = json.loads((city / "sample.json").read_text(encoding="utf-8"))
    assert manifest["n_buildings"] == 40
    tiles = sorted((city / "oblique" / "Data").glob("Tile_*/*.*"))
    assert tiles, "no oblique production written"
    assert {p.suffix for p in tiles if p.suffix in (".osgb", ".obj")} == {".osgb" if workdir.osgconv else ".obj"}
    assert sorted(p.name for p in workdir.cwd.iterdir()) == [CITY]  # no temporary folder left behind


@pytest.mark.parametrize(("out", "args"), [
    ("模型 二级", ["--level", "2", "--dem", f"{CITY}/dem.tif", "--ortho", f"{CITY}/ortho.tif",
                  "--buildings", f"{CITY}/buildings.gpkg"]),
    ("模型 三级 屋顶", ["--level", "3", "--dem", f"{CITY}/dem.tif", "--dsm", f"{CITY}/dsm.tif",
                      "--buildings", f"{CITY}/buildings.gpkg"]),
    ("模型 三级 倾斜", ["--level", "3", "--oblique", f"{CITY}/oblique", "--dem", f"{CITY}/dem.tif",
                      "--buildings", f"{CITY}/buildings.gpkg"]),
])
def test_build_at_each_level_and_input_kind(workdir: Workdir, out: str, args: list[str]) -> None:
    proc = cim(["build", out, *args, "--json"], workdir)
    report = json.loads(proc.stdout)
    tileset = workdir.cwd / out / "tileset.json"
    assert tileset.is_file()
    check = check_tileset(tileset)
    assert check.ok, check.problems[:5]
    assert report  # one JSON document


@pytest.fixture(scope="module")
def store(workdir: Workdir) -> str:
    name = "图层 库.duckdb"
    cim(["layers", "import", f"{CITY}/shelters.gpkg", "--name", "shelters", "--theme", "公共专题/应急避难",
         "--security", "public", "--store", name], workdir)
    return name


def test_layers_import_and_export(workdir: Workdir, store: str) -> None:
    (workdir.cwd / "导出 目录").mkdir()
    cim(["layers", "export", "shelters", "导出 目录/避难 场所.gpkg", "--store", store], workdir)
    assert (workdir.cwd / "导出 目录" / "避难 场所.gpkg").stat().st_size > 0
    assert (workdir.cwd / store).is_file()


@pytest.fixture(scope="module")
def server(workdir: Workdir, store: str) -> Iterator[str]:
    """`cim serve` of a model, a map and the store, all given as relative paths."""
    if not (workdir.cwd / "模型 二级" / "tileset.json").is_file():
        cim(["build", "模型 二级", "--level", "2", "--dem", f"{CITY}/dem.tif", "--buildings",
             f"{CITY}/buildings.gpkg"], workdir)
    port = free_port()
    proc = subprocess.Popen([str(CIM), "serve", "--models", "city=模型 二级", "--map", f"ortho={CITY}/ortho.tif",
                             "--store", store, "--port", str(port)], cwd=workdir.cwd, env=workdir.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield _wait_for(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _wait_for(base: str, proc: subprocess.Popen[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if r.status == 200:
                    return base
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{base}/health did not answer within {timeout} s")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200, url
        return r.read()


def test_serve_publishes_models_maps_and_layers_given_as_relative_paths(server: str) -> None:
    health = json.loads(_get(server + "/health"))
    assert (health["models"], health["layers"]) == (1, 1)
    assert health["maps"] >= 1
    assert json.loads(_get(server + "/3dtiles/city/tileset.json"))["asset"]["version"] == "1.1"
    assert json.loads(_get(server + "/collections/shelters/items?limit=1"))["numberMatched"] > 0
    assert json.loads(_get(server + "/maps/ortho/tilejson.json"))["tiles"]


def test_view_writes_the_page_where_asked(workdir: Workdir, server: str) -> None:
    (workdir.cwd / "页面 目录").mkdir()
    cim(["view", "--html", "页面 目录/一张图.html", "--server", server], workdir)
    assert "cim-config" in (workdir.cwd / "页面 目录" / "一张图.html").read_text(encoding="utf-8")


def test_demo_runs_in_a_relative_folder(workdir: Workdir) -> None:
    if workdir.osgconv:
        pytest.skip("the demo does not use osgconv; once is enough")
    port = free_port()
    proc = subprocess.Popen([str(CIM), "demo", "--dir", "演示 目录", "--buildings", "40", "--no-browser",
                             "--port", str(port)], cwd=workdir.cwd, env=workdir.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = _wait_for(f"http://127.0.0.1:{port}", proc, timeout=900)
        assert json.loads(_get(base + "/health"))["models"] >= 1
        assert (workdir.cwd / "演示 目录").is_dir()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
