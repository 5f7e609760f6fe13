"""The test harness itself: it must pass valid content and be able to fail broken content."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support import gltf_validator
from tests.support.browser import CesiumClient, chromium_page
from tests.support.feature_metadata import check_feature_metadata
from tests.support.fixtures import BoxTileset, box_gltf, glb_bytes
from tests.support.http import serve_directory, serve_mounts


def _write_glb(path: Path, gltf: dict[str, Any], bin_chunk: bytes) -> Path:
    path.write_bytes(glb_bytes(gltf, bin_chunk))
    return path


def _feature_ids(gltf: dict[str, Any]) -> dict[str, Any]:
    return gltf["meshes"][0]["primitives"][0]["extensions"]["EXT_mesh_features"]["featureIds"][0]


def _metadata(gltf: dict[str, Any]) -> dict[str, Any]:
    return gltf["extensions"]["EXT_structural_metadata"]


# --- Khronos glTF validator ------------------------------------------------------------------------------------


def test_box_tileset_is_valid_gltf(box_tileset: BoxTileset) -> None:
    (report,) = gltf_validator.assert_valid(box_tileset.root, allow_warnings=False)
    assert report.path == box_tileset.content_path
    assert report.num_errors == 0 and report.metadata_errors == ()
    assert set(report.extensions_used) == {"EXT_mesh_features", "EXT_structural_metadata"}
    # The Khronos validator cannot look inside these extensions; feature_metadata does that instead.
    unsupported = {m.pointer for m in report.messages if m.code == "UNSUPPORTED_EXTENSION"}
    assert unsupported == {"/extensionsUsed/0", "/extensionsUsed/1"}


def test_validator_reports_errors_in_broken_glb(tmp_path: Path) -> None:
    gltf, bin_chunk = box_gltf()
    indices = np.frombuffer(bin_chunk, np.uint16).copy()
    view = gltf["bufferViews"][gltf["accessors"][3]["bufferView"]]
    start = view["byteOffset"] // 2
    indices[start] = 500  # past the 48 vertices
    broken = _write_glb(tmp_path / "broken.glb", gltf, indices.tobytes())

    (report,) = gltf_validator.validate(broken)
    assert not report.ok
    assert "ACCESSOR_INDEX_OOB" in report.codes(gltf_validator.ERROR)
    with pytest.raises(pytest.fail.Exception, match="ACCESSOR_INDEX_OOB"):
        gltf_validator.assert_valid(broken)
    proc = subprocess.run(["node", str(gltf_validator.SCRIPT), str(broken)], capture_output=True, check=False)
    assert proc.returncode == 1


def test_validator_checks_many_files_and_external_buffers(tmp_path: Path) -> None:
    gltf, bin_chunk = box_gltf()
    good = tmp_path / "a" / "nested"
    good.mkdir(parents=True)
    _write_glb(good / "one.glb", gltf, bin_chunk)
    external = copy.deepcopy(gltf)
    external["buffers"][0]["uri"] = "two%20data.bin"
    (good / "two.gltf").write_text(json.dumps(external), encoding="utf-8")
    (good / "two data.bin").write_bytes(bin_chunk)
    missing = copy.deepcopy(external)
    missing["buffers"][0]["uri"] = "absent.bin"
    (tmp_path / "three.gltf").write_text(json.dumps(missing), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    (tmp_path / "junk.glb").write_bytes(b"definitely not a glb")

    reports = {r.path.name: r for r in gltf_validator.validate(tmp_path)}
    assert set(reports) == {"one.glb", "two.gltf", "three.gltf", "junk.glb"}
    assert reports["one.glb"].ok and reports["two.gltf"].ok
    assert reports["two.gltf"].metadata_errors == ()  # property tables read from the external buffer
    assert "IO_ERROR" in reports["three.gltf"].codes(gltf_validator.ERROR)
    assert not reports["junk.glb"].ok


# --- EXT_mesh_features / EXT_structural_metadata checks ------------------------------------------------------


def _break_feature_id_range(g: dict[str, Any], b: bytearray) -> None:
    _metadata(g)["propertyTables"][0]["count"] = 1


def _break_feature_count(g: dict[str, Any], b: bytearray) -> None:
    _feature_ids(g)["featureCount"] = 3


def _break_attribute(g: dict[str, Any], b: bytearray) -> None:
    _feature_ids(g)["attribute"] = 1


def _break_string_offsets(g: dict[str, Any], b: bytearray) -> None:
    view = g["bufferViews"][_metadata(g)["propertyTables"][0]["properties"]["code"]["stringOffsets"]]
    b[view["byteOffset"] + 8 : view["byteOffset"] + 12] = (999).to_bytes(4, "little")


def _break_values_length(g: dict[str, Any], b: bytearray) -> None:
    g["bufferViews"][_metadata(g)["propertyTables"][0]["properties"]["code"]["values"]]["byteLength"] += 1


def _break_utf8(g: dict[str, Any], b: bytearray) -> None:
    view = g["bufferViews"][_metadata(g)["propertyTables"][0]["properties"]["code"]["values"]]
    b[view["byteOffset"]] = 0xFF


def _break_required(g: dict[str, Any], b: bytearray) -> None:
    del _metadata(g)["propertyTables"][0]["properties"]["code"]


def _break_alignment(g: dict[str, Any], b: bytearray) -> None:
    view = g["bufferViews"][_metadata(g)["propertyTables"][0]["properties"]["height"]["values"]]
    view["byteOffset"] += 4
    view["byteLength"] -= 4


def _break_nan(g: dict[str, Any], b: bytearray) -> None:
    view = g["bufferViews"][_metadata(g)["propertyTables"][0]["properties"]["height"]["values"]]
    b[view["byteOffset"] : view["byteOffset"] + 8] = np.array([np.nan]).tobytes()


def _break_class(g: dict[str, Any], b: bytearray) -> None:
    _metadata(g)["propertyTables"][0]["class"] = "building"


@pytest.mark.parametrize(("corrupt", "expected"), [
    (_break_feature_id_range, "outside property table 0 (1 rows)"),
    (_break_feature_count, "featureCount is 3 but the ids hold 2"),
    (_break_attribute, "no _FEATURE_ID_1 attribute"),
    (_break_string_offsets, "past the end of the values"),
    (_break_values_length, "the last string offset says"),
    (_break_utf8, "string 0 is not UTF-8"),
    (_break_required, "required property 'code' is missing"),
    (_break_alignment, "not a multiple of 8"),
    (_break_nan, "NaN or infinite"),
    (_break_class, "class 'building' is not in the schema"),
])
def test_feature_metadata_check_finds(tmp_path: Path, corrupt: Any, expected: str) -> None:
    gltf, bin_chunk = box_gltf()
    assert check_feature_metadata(_write_glb(tmp_path / "ok.glb", gltf, bin_chunk)) == []
    data = bytearray(bin_chunk)
    corrupt(gltf, data)
    problems = check_feature_metadata(_write_glb(tmp_path / "broken.glb", gltf, bytes(data)))
    assert any(expected in p for p in problems), problems


# --- local HTTP server ---------------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], b""


def test_serve_directory_content_types_and_log(tmp_path: Path) -> None:
    files = {"m.glb": "model/gltf-binary", "tileset.json": "application/json", "a.js": "text/javascript",
             "w.wasm": "application/wasm"}
    for name in files:
        (tmp_path / name).write_bytes(b"x" + name.encode())
    (tmp_path.parent / "secret.txt").write_text("outside", encoding="utf-8")
    with serve_directory(tmp_path) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        for name, content_type in files.items():
            status, got_type, body = _get(f"{base_url}/{name}")
            assert (status, got_type, body) == (200, content_type, b"x" + name.encode())
        assert _get(f"{base_url}/missing.glb")[0] == 404
        assert _get(f"{base_url}/../secret.txt")[0] == 404
        assert _get(f"{base_url}/%2e%2e/secret.txt")[0] == 404
        log = list(base_url.requests)
    assert [(r.path, r.status) for r in log[:4]] == [(f"/{n}", 200) for n in files]
    assert [r.status for r in log[4:]] == [404, 404, 404]


def test_serve_mounts_longest_prefix_wins(tmp_path: Path) -> None:
    for sub in ("site", "tiles", "tiles_deep"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "which.json").write_text(json.dumps(sub), encoding="utf-8")
    mounts = {"/": tmp_path / "site", "/tiles": tmp_path / "tiles", "/tiles/deep": tmp_path / "tiles_deep"}
    with serve_mounts(mounts) as server:
        assert json.loads(_get(server.url("/which.json"))[2]) == "site"
        assert json.loads(_get(server.url("/tiles/which.json"))[2]) == "tiles"
        assert json.loads(_get(server.url("/tiles/deep/which.json"))[2]) == "tiles_deep"
        assert _get(server.url("/tilesx/which.json"))[0] == 404


# --- browser and CesiumJS ------------------------------------------------------------------------------------


@pytest.mark.browser
def test_chromium_page_logs_requests_that_leave_the_host(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        "<!doctype html><link rel='icon' href='data:,'><script>"
        "fetch('http://tiles.example.com/tileset.json')"
        ".catch(() => { console.error('offline'); window.done = true; });"
        "throw new Error('boom');</script>", encoding="utf-8")
    with serve_directory(tmp_path) as base_url, chromium_page() as browser:
        browser.page.goto(f"{base_url}/index.html")
        browser.page.wait_for_function("() => window.done === true")
        log = browser.log
    assert log.off_host() == ["http://tiles.example.com/tileset.json"]
    assert any("boom" in e for e in log.page_errors)
    assert log.console_errors


# A page with the viewer's interface that wait_viewer_drawn uses (cimViewer.loaded, .deck, .compare.decks, cim.on/off
# 'render'): a layer that loads when the page says so, a deck that emits 'render' when it draws (or never draws).
_VIEWER_FACE = """<!doctype html><link rel='icon' href='data:,'><script>
const listeners = [];
const layer = {id: 'model:city:buildings', parent: null, props: {visible: true}, isLoaded: %(loaded)s};
const deck = {isInitialized: true, layerManager: {getLayers: () => [layer]},
  redraw() { if (%(draws)s) for (const fn of listeners.slice()) fn(); }};
window.cimViewer = {deck, compare: {decks: []}, loaded: () => layer.isLoaded,
  cim: {on: (e, fn) => listeners.push(fn), off: (e, fn) => listeners.splice(listeners.indexOf(fn), 1)}};
</script>"""


@pytest.mark.browser
@pytest.mark.parametrize(("loaded", "draws", "message"), [
    ("true", "true", None),
    ("false", "true", "still loading: model:city:buildings"),
    ("true", "false", "still loading: (none at the end)"),  # loaded but never drawn: what the old wait took
])
def test_wait_viewer_drawn_needs_a_frame_drawn_with_every_layer_loaded(tmp_path: Path, loaded: str, draws: str,
                                                                      message: str | None) -> None:
    from tests.support.browser import wait_viewer_drawn

    (tmp_path / "index.html").write_text(_VIEWER_FACE % {"loaded": loaded, "draws": draws}, encoding="utf-8")
    with serve_directory(tmp_path) as base_url, chromium_page() as browser:
        browser.page.goto(f"{base_url}/index.html")
        if message is None:
            wait_viewer_drawn(browser.page, timeout_s=5)
        else:
            with pytest.raises(AssertionError, match=re.escape(message)):
                wait_viewer_drawn(browser.page, timeout_s=1)
        assert browser.page.evaluate("listeners.length") == 0  # its 'render' listener removed either way


@pytest.mark.browser
def test_cesium_loads_box_tileset_and_picks_each_feature(box_tileset: BoxTileset, tmp_path: Path) -> None:
    with CesiumClient({"/tiles": box_tileset.root}) as client:
        info = client.load_tileset("/tiles/tileset.json")
        picks = {b.box.code: client.pick_at(b.lon, b.lat, b.mid_height) for b in box_tileset.boxes}
        shot = client.screenshot(tmp_path / "boxes.png")  # looking at the last box
        north_of_boxes = box_tileset.boxes[0]
        empty = client.pick_at(north_of_boxes.lon, north_of_boxes.lat + 0.0009, 0.0)  # 100 m north: bare globe
        log = client.log
        served = [r.path for r in client.server.requests]

    assert info.all_loaded and info.tiles_loaded == 1
    assert info.failures == [] and info.errors == []
    lon, lat, _ = info.bounding_sphere.lon_lat_height
    assert lon == pytest.approx(113.30, abs=1e-6) and lat == pytest.approx(40.09, abs=1e-6)
    assert picks == {b.box.code: {"code": b.box.code, "height": b.box.height} for b in box_tileset.boxes}
    assert empty is None
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (640, 480)
        globe, centre = rgb.getpixel((5, 5)), rgb.getpixel((320, 240))
    assert globe == (47, 79, 79)  # Cesium.Color.DARKSLATEGRAY: no imagery was drawn
    assert centre != globe  # the box is drawn where it was picked
    assert log.console_errors == [] and log.page_errors == []
    assert log.off_host() == [], log.off_host()
    assert "/tiles/boxes.glb" in served


@pytest.mark.browser
def test_cesium_reports_tiles_that_fail(box_tileset: BoxTileset) -> None:
    tileset = json.loads(box_tileset.tileset_path.read_text(encoding="utf-8"))
    tileset["root"]["content"]["uri"] = "missing.glb"
    (box_tileset.root / "broken.json").write_text(json.dumps(tileset), encoding="utf-8")
    with CesiumClient({"/tiles": box_tileset.root}) as client:
        info = client.load_tileset("/tiles/broken.json")
    assert info.tiles_loaded == 0
    assert [f["url"].rsplit("/", 1)[-1] for f in info.failures] == ["missing.glb"]


@pytest.mark.browser
def test_cesium_screenshot_waits_for_the_tiles_and_refuses_a_view_still_loading(box_tileset: BoxTileset,
                                                                              tmp_path: Path) -> None:
    with CesiumClient({"/tiles": box_tileset.root}) as client:
        client.load_tileset("/tiles/tileset.json")
        assert client.page.evaluate("harness.loading()") == {"tilesets": [False], "globe": False}
        client.screenshot(tmp_path / "settled.png")
        client.page.evaluate("harness.settle = async () => false")  # as if a tile never arrived
        with pytest.raises(AssertionError, match="still loading tiles"):
            client.screenshot(tmp_path / "loading.png")
    assert (tmp_path / "settled.png").is_file() and not (tmp_path / "loading.png").exists()


# --- child processes ----------------------------------------------------------------------------------------------


def test_stop_process_terminates_and_kills_what_ignores_sigterm() -> None:
    import signal
    import sys

    from tests.support.processes import stop_process

    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(polite, timeout=20) == -signal.SIGTERM
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)")
    stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    assert stop_process(stubborn, timeout=0.5) == -signal.SIGKILL
    assert stop_process(stubborn) == -signal.SIGKILL  # an ended process: its status again
