"""Drive headless Chromium (Debian's /usr/bin/chromium, through Playwright) and CesiumJS as a real 3D Tiles client.

`chromium_page()` opens a page that records console errors, page errors and every request URL; name resolution is
turned off for every host but 127.0.0.1, so a request meant for the internet fails at once and shows in the log.
`CesiumClient` serves CesiumJS from `node_modules/cesium/Build/Cesium` plus the folders a test mounts, loads
`cesium_page.html` and offers `load_tileset`, `pick_at` and `screenshot`. WebGL runs in software (SwiftShader):
the page renders on demand and every wait has a generous timeout.
"""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.support.http import Server, serve_mounts

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CIM_TEST_CHROMIUM", "/usr/bin/chromium"))
CESIUM_BUILD = REPO_ROOT / "node_modules" / "cesium" / "Build" / "Cesium"
PAGE_DIR = Path(__file__).resolve().parent
PAGE_NAME = "cesium_page.html"

CHROMIUM_ARGS = [
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    # Only 127.0.0.1 resolves: anything else fails immediately instead of hanging on a closed network.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LOCAL_HOSTS = frozenset({"127.0.0.1"})


@dataclass
class PageLog:
    """What a page did: console errors, uncaught exceptions, requested URLs and failed requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def off_host(self, allowed: frozenset[str] = LOCAL_HOSTS) -> list[str]:
        """Requested URLs (http, https, ws...) whose host is not in `allowed`; data:/blob:/about: are local."""
        out = []
        for url in self.requests:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in ("data", "blob", "about", "chrome-error"):
                continue
            if parts.hostname not in allowed:
                out.append(url)
        return out


@dataclass
class BrowserPage:
    """An open Playwright page and its log."""

    page: Any  # playwright.sync_api.Page
    log: PageLog


def require_chromium() -> None:
    """Skip the calling test when Chromium or Playwright is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (bin/setup does: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]' (never `playwright install`)")


@contextlib.contextmanager
def chromium_page(*, viewport: tuple[int, int] = (800, 600), timeout_s: float = 60.0) -> Iterator[BrowserPage]:
    """A fresh headless Chromium page (new profile) that logs everything it does.

    Args:
        viewport: width, height in CSS pixels.
        timeout_s: default timeout of Playwright actions (navigation, waits).

    Yields:
        The page and its log.
    """
    require_chromium()
    from playwright.sync_api import sync_playwright

    log = PageLog()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            context.set_default_timeout(timeout_s * 1000)
            context.on("request", lambda r: log.requests.append(r.url))
            context.on("requestfailed", lambda r: log.failed_requests.append(f"{r.url}: {r.failure}"))
            page = context.new_page()
            page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log.page_errors.append(str(e)))
            yield BrowserPage(page, log)
        finally:
            browser.close()


# deck.gl's isLoaded counts a tile whose data arrived before its sub-layers were made, so `cimViewer.loaded()` can
# be true while the canvas still shows the frame before: pixels are sampled only after a frame was drawn with every
# visible layer loaded, on `frames` consecutive turns of deck.gl's own loop (a 3D tileset can report loaded for a
# frame before it asks for the children its traversal has just chosen).
_VIEWER_DRAWN_JS = """async ([timeoutMs, frames]) => {
  const decks = () => [cimViewer.deck, ...cimViewer.compare.decks];
  const turn = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  let drewLoaded = false;  // the map drew a frame (deck.gl onAfterRender) with every visible layer loaded
  const onRender = () => { if (cimViewer.loaded()) drewLoaded = true; };
  cimViewer.cim.on('render', onRender);
  const deadline = performance.now() + timeoutMs;
  let quiet = 0;  // turns in a row that ended so
  try {
    while (quiet < frames) {
      if (performance.now() > deadline) {
        const pending = decks().flatMap(d => !d.isInitialized || !d.layerManager ? ['(deck.gl not initialised)']
          : d.layerManager.getLayers().filter(l => !l.parent && l.props.visible && !l.isLoaded).map(l => l.id));
        return {quiet, pending};
      }
      drewLoaded = false;
      await turn();  // deck.gl's loop: layers updated, tiles chosen and requested, drawn if anything changed
      if (cimViewer.loaded()) for (const d of decks()) d.redraw('tests: sample pixels');
      quiet = drewLoaded && cimViewer.loaded() ? quiet + 1 : 0;
    }
  } finally {
    cimViewer.cim.off('render', onRender);
  }
  return {quiet, pending: []};
}"""


def wait_viewer_drawn(page: Any, *, timeout_s: float = 60.0, frames: int = 3) -> None:
    """Wait until the viewer's map (and every screen of a comparison) drew `frames` consecutive frames with every
    visible layer loaded: the moment its pixels show the city rather than the frame before.

    Raises:
        AssertionError: naming the layers still loading, when that did not happen within `timeout_s`.
    """
    page.wait_for_function("window.cimViewer && cimViewer.cim", timeout=timeout_s * 1000)
    out = page.evaluate(_VIEWER_DRAWN_JS, [timeout_s * 1000, frames])
    if out["quiet"] < frames:
        raise AssertionError(f"the viewer drew no {frames} frames in a row with every visible layer loaded within "
                             f"{timeout_s:g} s; still loading: {', '.join(out['pending']) or '(none at the end)'}")


def require_cesium() -> None:
    """Skip the calling test when the CesiumJS build is missing."""
    if not (CESIUM_BUILD / "Cesium.js").is_file():
        pytest.skip(f"{CESIUM_BUILD} is missing: run `npm install` in the repository root")


class BoundingSphere(NamedTuple):
    """A tileset's root bounding sphere: ECEF centre (m), radius (m) and the centre as lon/lat (deg)/height (m)."""

    center: tuple[float, float, float]
    radius: float
    lon_lat_height: tuple[float, float, float] | None


class TilesetInfo(NamedTuple):
    """What CesiumJS reported after loading a tileset and rendering until nothing was pending."""

    all_loaded: bool  # tileset.tilesLoaded (and the globe's) became true before the timeout
    tiles_loaded: int  # tileLoad events (tiles whose content loaded)
    bounding_sphere: BoundingSphere
    failures: list[dict[str, str]]  # tileFailed events: url, message
    errors: list[str]  # scene render errors


class CesiumClient:
    """CesiumJS in headless Chromium, as a 3D Tiles client for tests.

    Use as a context manager; everything it needs is served from 127.0.0.1:

        with CesiumClient({"/tiles": out_dir}) as client:
            info = client.load_tileset("/tiles/tileset.json")
            props = client.pick_at(113.3, 40.09, 10.0)

    Args:
        mounts: extra URL prefix -> folder mappings served next to CesiumJS (`/cesium`) and the page (`/harness`).
        viewport: canvas size in CSS pixels (small is faster in software rendering).
        timeout_s: the longest any single wait (page start, tile loading) may take.
    """

    def __init__(self, mounts: Mapping[str, str | os.PathLike[str]] | None = None, *,
                 viewport: tuple[int, int] = (640, 480), timeout_s: float = 45.0) -> None:
        self.mounts = dict(mounts or {})
        self.viewport = viewport
        self.timeout_s = timeout_s
        self._stack: contextlib.ExitStack | None = None
        self.server: Server | None = None
        self.browser: BrowserPage | None = None

    def __enter__(self) -> CesiumClient:
        require_chromium()
        require_cesium()
        with contextlib.ExitStack() as stack:
            self.server = stack.enter_context(
                serve_mounts({**self.mounts, "/cesium": CESIUM_BUILD, "/harness": PAGE_DIR}))
            self.browser = stack.enter_context(chromium_page(viewport=self.viewport, timeout_s=self.timeout_s))
            page = self.browser.page
            page.goto(self.server.url(f"/harness/{PAGE_NAME}"), wait_until="load")
            page.wait_for_function("() => window.harness && window.harness.ready === true")
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    @property
    def page(self) -> Any:
        """The Playwright page (for tests that need more than this class offers)."""
        assert self.browser is not None, "use CesiumClient as a context manager"
        return self.browser.page

    @property
    def log(self) -> PageLog:
        """Console errors, page errors and requests of the page so far."""
        assert self.browser is not None, "use CesiumClient as a context manager"
        return self.browser.log

    def off_host_requests(self) -> list[str]:
        """Requests that went to any host but 127.0.0.1 (should be empty)."""
        return self.log.off_host()

    def url(self, path_or_url: str) -> str:
        """An absolute URL: served paths (`/tiles/tileset.json`) are resolved against the local server."""
        assert self.server is not None, "use CesiumClient as a context manager"
        return path_or_url if "://" in path_or_url else self.server.url(path_or_url)

    def load_tileset(self, url: str) -> TilesetInfo:
        """Load a tileset with `Cesium3DTileset.fromUrl`, look at its bounding sphere, render until loaded.

        Args:
            url: absolute URL or a path on the local server (`/tiles/tileset.json`).
        """
        raw = self.page.evaluate("([u, t]) => harness.loadTileset(u, t)", [self.url(url), self.timeout_s * 1000])
        bs = raw["boundingSphere"]
        sphere = BoundingSphere(tuple(bs["center"]), bs["radius"],
                                tuple(bs["lonLatHeight"]) if bs["lonLatHeight"] else None)
        return TilesetInfo(raw["allLoaded"], raw["tilesLoaded"], sphere, raw["failures"], raw["errors"])

    def pick_at(self, lon: float, lat: float, height: float, *, range_m: float = 150.0,
                pitch_deg: float = -60.0) -> dict[str, Any] | None:
        """Look at a WGS 84 point, project it to the window and pick there.

        Args:
            lon, lat: degrees; height: metres above the ellipsoid.
            range_m: camera distance from the point.
            pitch_deg: camera pitch (-90 looks straight down).

        Returns:
            The picked `Cesium3DTileFeature`'s properties (id -> value, from `getPropertyIds`/`getProperty`), or None
            when the point is off screen or something else (or nothing) is there.
        """
        raw = self.pick_details(lon, lat, height, range_m=range_m, pitch_deg=pitch_deg)
        return raw["feature"]["properties"] if raw["feature"] else None

    def pick_details(self, lon: float, lat: float, height: float, *, range_m: float = 150.0,
                     pitch_deg: float = -60.0) -> dict[str, Any]:
        """Like `pick_at`, with everything the page saw: `window` (x, y), `feature` ({featureId, properties}),
        `picked` (the class name of a non-feature pick) and `allLoaded`."""
        args = [lon, lat, height, range_m, pitch_deg, self.timeout_s * 1000]
        return self.page.evaluate("(a) => harness.pickAt(...a)", args)

    def use_terrain(self, url: str) -> dict[str, Any]:
        """Make a quantized-mesh terrain the globe's terrain (CesiumTerrainProvider); `url`: the folder of layer.json."""
        return self.page.evaluate("(u) => harness.useTerrain(u)", self.url(url))

    def sample_heights(self, points: list[tuple[float, float]]) -> list[float]:
        """Heights of the terrain's most detailed tiles at (lon, lat) degrees (Cesium.sampleTerrainMostDetailed)."""
        return self.page.evaluate("(p) => harness.sampleHeights(p)", [list(p) for p in points])

    def clear(self) -> None:
        """Remove every loaded tileset from the scene (to load another one in the same page)."""
        self.page.evaluate("() => harness.clear()")

    def screenshot(self, path: str | os.PathLike[str]) -> Path:
        """Render until every tileset and the globe have loaded what the view needs (tilesLoaded on 5 frames in a
        row), then save the page as PNG.

        Raises:
            AssertionError: they were still loading after `timeout_s`: the picture would show them half drawn.
        """
        if not self.page.evaluate("(t) => harness.settle(t)", self.timeout_s * 1000):
            raise AssertionError(f"CesiumJS was still loading tiles after {self.timeout_s:g} s (tilesets: "
                                 f"{self.page.evaluate('harness.loading()')}); no screenshot of a half-drawn view")
        self.page.evaluate("() => harness.frame()")
        self.page.screenshot(path=str(path))
        return Path(path)
