"""Benchmark of the "one map" viewer in headless Chromium (software WebGL), on loopback.

    .venv/bin/python bench/bench_viewer.py [--sizes 13,500,2372] [--frames 40] [--rounds 2] [--markdown]

1. **Page open** with 13 (the demo's store), 500 and 2,372 layers (generated, tests/support/many_layers.py) beside
   the demo's level-2 model and orthophoto: seconds from navigation to the layer tree on screen ("tree") and to every
   visible layer loaded ("loaded"), the JS heap (CDP `Performance.getMetrics`, JSHeapUsedSize) and the page's HTML
   size, on a first visit (new browser context, empty cache) and on a repeat visit in the same context. The floor is the same page with no store layer (models and maps only), measured in the same run; the ratio
   is size N against it. Best of `--rounds`.
2. **Panning over the 3D city**: the camera moves in 3D (pitch 55) one step per frame over the city for `--frames`
   frames; the mean frame time (deck.gl's `onAfterRender` to `onAfterRender`) with the 3D model on, against the same
   page and path with the 3D model off (orthophoto and vector layers only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.http import free_port  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402

SERVE = """
import sys, uvicorn
sys.path.insert(0, {repo!r})
from tiles.server import create_app
from tiles.server.settings import ServerSettings
settings = ServerSettings.model_validate_json({settings!r})
uvicorn.run(create_app(settings), host="127.0.0.1", port={port}, log_level="warning")
"""


def serve(settings: object, port: int) -> subprocess.Popen[bytes]:
    import httpx

    code = SERVE.format(repo=str(REPO), settings=settings.model_dump_json(), port=port)  # type: ignore[attr-defined]
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start")


def open_page(pw_browser: object, url: str) -> dict[str, float]:
    """A first visit (a new browser context: empty HTTP cache), then a repeat visit in the same context (the
    scripts from the HTTP cache, as a planner opening the one map again sees it)."""
    page = pw_browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    out: dict[str, float] = {}
    for visit in ("", "repeat_"):
        t0 = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function("document.querySelector('#panel .tree')", timeout=180_000, polling=20)
        out[f"{visit}tree_s"] = time.perf_counter() - t0
        page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=180_000, polling=50)
        out[f"{visit}loaded_s"] = time.perf_counter() - t0
        if not visit:
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            out["heap_mb"] = metrics["JSHeapUsedSize"] / 1e6
            out["rows"] = page.evaluate("document.querySelectorAll('.layer').length")
    page.close()
    return out


PAN = """async ([frames, threeD]) => {
  const v = cimViewer.cim.viewer;
  for (const id of v.order) if (id.startsWith('model:') && !id.endsWith(':terrain')) v.setVisible(id, threeD);
  v.goHome();
  const home = v.viewState;
  v.setViewState({zoom: home.zoom + 1.5, pitch: 55, bearing: -20});
  await new Promise(r => { const t = setInterval(() => { if (cimViewer.loaded()) { clearInterval(t); r(); } }, 100); });
  const times = [];
  let last = null;
  await new Promise(resolve => {
    let i = 0;
    const off = cimViewer.cim.on('render', () => {
      const now = performance.now();
      if (last !== null) times.push(now - last);
      last = now;
      if (++i > frames) { cimViewer.cim.off('render', off); resolve(); return; }
      const s = v.viewState;
      v.setViewState({longitude: s.longitude + (home.zoom > 0 ? 0.00025 : 0), latitude: s.latitude + 0.0001});
    });
    v.setViewState({longitude: v.viewState.longitude + 0.0001});
  });
  times.sort((a, b) => a - b);
  return {mean_ms: times.reduce((a, b) => a + b, 0) / times.length, p50_ms: times[Math.floor(times.length / 2)]};
}"""


def pan(pw_browser: object, url: str, frames: int, three_d: bool) -> dict[str, float]:
    page = pw_browser.new_page(viewport={"width": 1200, "height": 800})  # type: ignore[attr-defined]
    page.goto(url)
    page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=180_000)
    out = page.evaluate(PAN, [frames, three_d])
    page.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="13,500,2372")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cim-bench-viewer")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from cim.demo import prepare_demo
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
    from tests.support.many_layers import write_many_layers_store

    args.work.mkdir(parents=True, exist_ok=True)
    demo = prepare_demo(args.work / "demo", levels=(2,))
    stores: dict[int, Path | None] = {0: None}
    for n in (int(x) for x in args.sizes.split(",")):
        if n == 13:
            stores[n] = demo.store
            continue
        path = args.work / f"layers-{n}.duckdb"
        if not path.is_file():
            write_many_layers_store(path, n_layers=n)
        stores[n] = path
    load = os.getloadavg()
    results: dict[str, object] = {"load_average": [round(x, 2) for x in load], "open": {}, "pan": {}}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            for n, store in stores.items():
                settings = demo.settings(log_requests=False)
                settings = settings.model_copy(update={"store": store or (args.work / "none.duckdb")})
                if store is None:
                    from layers.store import LayerStore

                    with LayerStore(args.work / "none.duckdb"):
                        pass
                port = free_port()
                proc = serve(settings, port)
                try:
                    from tiles.server.auth import AccessStore, access_path

                    with AccessStore(access_path(settings.store)) as access:
                        key = access.create("confidential").key
                    url = f"http://127.0.0.1:{port}/?api_key={key}"
                    open_page(browser, url)  # warm: the server's layer index and caches
                    runs = [open_page(browser, url) for _ in range(args.rounds)]
                    best = min(runs, key=lambda r: r["loaded_s"])
                    import httpx

                    best["html_kb"] = len(httpx.get(url, headers={"Accept": "text/html"}, timeout=60).content) / 1e3
                    results["open"][n] = best  # type: ignore[index]
                    if n == 13:
                        results["pan"] = {"3d": pan(browser, url, args.frames, True),
                                          "flat": pan(browser, url, args.frames, False)}
                finally:
                    stop_process(proc, timeout=10)
        finally:
            browser.close()
    floor = results["open"][0]  # type: ignore[index]
    for n, r in results["open"].items():  # type: ignore[attr-defined]
        r["ratio_loaded"] = round(r["loaded_s"] / floor["loaded_s"], 2)
        r["ratio_tree"] = round(r["tree_s"] / floor["tree_s"], 2)
    p = results["pan"]
    if p:
        p["ratio"] = round(p["3d"]["mean_ms"] / p["flat"]["mean_ms"], 2)  # type: ignore[index]
    if args.markdown:
        print(f"load average at start: {results['load_average']}\n")
        print("| store layers | tree on screen (s) | all visible loaded (s) | ratio to 0 layers (tree / loaded) | "
              "repeat visit: tree (s) | repeat visit: loaded (s) | JS heap (MB) | HTML (kB) | tree rows |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n, r in results["open"].items():  # type: ignore[attr-defined]
            print(f"| {n} | {r['tree_s']:.2f} | {r['loaded_s']:.2f} | {r['ratio_tree']} / {r['ratio_loaded']} | "
                  f"{r['repeat_tree_s']:.2f} | {r['repeat_loaded_s']:.2f} | {r['heap_mb']:.1f} | "
                  f"{r['html_kb']:.0f} | {r['rows']} |")
        if p:
            print(f"\nPanning in 3D over the city, {args.frames} frames: 3D model on {p['3d']['mean_ms']:.0f} ms/frame "
                  f"(p50 {p['3d']['p50_ms']:.0f}), off {p['flat']['mean_ms']:.0f} ms/frame "
                  f"(p50 {p['flat']['p50_ms']:.0f}): ratio {p['ratio']}")
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
