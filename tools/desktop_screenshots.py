"""Serve the demo city and photograph QGIS adding it (docs/img/desktop-qgis-*.png); report which WMTS zooms QGIS
asked for when it drew the whole city on each tile matrix set.

    .venv/bin/python tools/desktop_screenshots.py [--demo /tmp/cim-demo] [--out docs/img]

Needs Debian's python3-qgis (bin/setup installs it). Uses `cim.demo.prepare_demo` (the sample city, its layer
store and a demo key; no 3D models) and `tools/qgis_screenshots.py` under /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", type=Path, default=Path(tempfile.gettempdir()) / "cim-desktop-demo")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = ap.parse_args()
    from cim.demo import prepare_demo
    from tests.tiles.server_support import running_server
    from tiles.server import ServerSettings, create_app

    site = prepare_demo(args.demo, levels=(), echo=print)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("cim.server")
    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    app = create_app(ServerSettings(store=site.store, maps={"city_ortho": site.city.ortho},
                                    security={"city_ortho": "public"}, log_requests=True))
    import duckdb  # noqa: F401 (the store opens here, read-only)

    from layers import LayerStore

    with LayerStore(site.store, read_only=True) as s:
        boxes = [s.info(n).extent for n in ("buildings", "roads")]
    extent = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    args.out.mkdir(parents=True, exist_ok=True)
    with running_server(app) as base:
        job = {"base": base, "key": site.key, "out": str(args.out), "extent": extent,
               "layers": ["communities", "river", "roads", "buildings", "hazards"]}
        r = subprocess.run(["/usr/bin/python3", str(REPO / "tools" / "qgis_screenshots.py")], input=json.dumps(job),
                           capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit(f"QGIS failed: {r.stderr[-3000:]}")
    result = json.loads(r.stdout)
    print(json.dumps(result, indent=1))
    zooms: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for ln in lines:
        m = re.search(r"TILEMATRIXSET=(\w+)&TILEMATRIX=(\d+)", ln)
        if m and "city_ortho" in ln:
            zooms[m.group(1)][m.group(2)] += 1
    print("WMTS tiles QGIS asked for (all draws):", {k: dict(sorted(v.items())) for k, v in zooms.items()})


if __name__ == "__main__":
    main()
