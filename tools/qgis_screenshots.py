"""Screenshots of QGIS 3.22 (Debian's python3-qgis, headless) adding `cim serve`'s services, for docs/desktop-gis.md.

Run by Debian's Python through tools/desktop_screenshots.py (which serves the demo city first):

    /usr/bin/python3 tools/qgis_screenshots.py < job.json

Job: `{"base", "key", "out" (folder), "extent" (lon/lat of the city), "layers" (vector tile layers to draw)}`.
It grabs QGIS's own dialogs (offscreen Qt) filled as the recipe says: the Basic authentication config holding the
key, the WMS/WMTS connection using it, the WMS/WMTS and OGC API - Features source selectors after "Connect"
(keyed: internal layers listed), and renders the city (WMTS orthophoto on CGCS2000Quad, vector tiles styled by
their style documents, OGC API Features shelters) as QGIS draws it. It also renders the orthophoto alone over the
whole city on each tile matrix set (the requests show which zooms QGIS asks for). Prints JSON of what it made.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def main() -> None:
    job = json.load(sys.stdin)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    profile = tempfile.mkdtemp(prefix="cim-qgis-shots-")
    os.environ["XDG_CONFIG_HOME"] = os.environ["HOME"] = os.environ["XDG_RUNTIME_DIR"] = profile
    from qgis.core import (
        QgsApplication,
        QgsAuthMethodConfig,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsProject,
        QgsRasterLayer,
        QgsRectangle,
        QgsSettings,
        QgsVectorLayer,
        QgsVectorTileLayer,
    )
    from qgis.gui import QgsAuthConfigSelect, QgsGui, QgsNewHttpConnection
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor
    from qgis.PyQt.QtWidgets import QApplication, QPushButton

    app = QgsApplication([], True, profile)
    app.initQgis()
    base, key, out = job["base"], job["key"], job["out"]
    os.environ["QGIS_AUTH_DB_DIR_PATH"] = profile
    auth = QgsApplication.authManager()
    auth.setMasterPassword("cim-screenshots", True)
    cfg = QgsAuthMethodConfig("Basic")
    cfg.setName("cim city services")
    cfg.setUri(base)
    cfg.setConfig("username", "qgis")
    cfg.setConfig("password", key)
    auth.storeAuthenticationConfig(cfg)
    made: dict[str, str] = {}

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.02)

    def grab(widget, name: str, size: tuple[int, int] | None = None) -> None:
        if size:
            widget.resize(*size)
        widget.show()
        settle()
        path = os.path.join(out, f"{name}.png")
        widget.grab().save(path)
        made[name] = path
        widget.close()

    # 1. the key in QGIS's credential store: Settings > Options > Authentication > Add, method Basic
    edit = auth.authMethodEditWidget("Basic", None)
    edit.loadConfig(cfg.configMap())
    grab(edit, "desktop-qgis-auth-basic", (520, 200))
    select = QgsAuthConfigSelect(None)
    select.setConfigId(cfg.id())
    grab(select, "desktop-qgis-auth-select", (520, 120))

    # 2. a WMS/WMTS connection on the capabilities URL with that authentication
    s = QgsSettings()
    s.setValue("qgis/connections-wms/cim city/url", f"{base}/wmts/1.0.0/WMTSCapabilities.xml")
    s.setValue("qgis/WMS/cim city/authcfg", cfg.id())
    s.setValue("qgis/connections-wfs/cim city/url", base)
    s.setValue("qgis/connections-wfs/cim city/version", "OGC_API_FEATURES")
    s.setValue("qgis/WFS/cim city/authcfg", cfg.id())
    grab(QgsNewHttpConnection(None, QgsNewHttpConnection.ConnectionWms, "qgis/connections-wms/", "cim city"),
         "desktop-qgis-wmts-connection", (620, 640))

    # 3. the source selectors after Connect: WMTS tile sets, OGC API collections (keyed: internal ones too)
    registry = QgsGui.sourceSelectProviderRegistry()
    for provider, name in (("wms", "desktop-qgis-wmts-layers"), ("WFS", "desktop-qgis-oapif-collections")):
        sel = next(p for p in registry.providers() if p.providerKey() == provider)
        widget = sel.createDataSourceWidget(None)
        widget.resize(900, 620)
        widget.show()
        settle()
        for b in widget.findChildren(QPushButton):
            if b.text().replace("&", "").lower().startswith("connect"):
                b.click()
                break
        settle(4)
        if provider == "wms":
            from qgis.PyQt.QtWidgets import QTabWidget

            for t in widget.findChildren(QTabWidget):
                for i in range(t.count()):
                    if "tile" in t.tabText(i).lower():
                        t.setCurrentIndex(i)
            settle(1)
        path = os.path.join(out, f"{name}.png")
        widget.grab().save(path)
        made[name] = path
        widget.close()

    # 4. the city as QGIS draws it: orthophoto (WMTS, CGCS2000Quad), vector tiles styled by /styles, shelters (OAPIF)
    w, so, e, n = job["extent"]
    authp = f"&authcfg={cfg.id()}"
    caps = f"{base}/wmts/1.0.0/WMTSCapabilities.xml"
    layers = []
    for name in job["layers"]:
        uri = (f"type=xyz&url={base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt&zmax=16&zmin=0{authp}"
               f"&styleUrl={base}/styles/layers/{name}?api_key={key}")
        vt = QgsVectorTileLayer(uri, name)
        vt.loadDefaultStyle()
        layers.append(vt)
    layers.append(QgsVectorLayer(f"url='{base}' typename='shelters' authcfg='{cfg.id()}'", "shelters", "OAPIF"))
    ortho = QgsRasterLayer(f"crs=EPSG:4490&format=image/jpeg&layers=city_ortho&styles=default"
                           f"&tileMatrixSet=CGCS2000Quad&url={caps}{authp}", "ortho", "wms")
    layers.append(ortho)

    def render(lays, crs: str, size: tuple[int, int], name: str) -> dict:
        ms = QgsMapSettings()
        ms.setLayers(lays)
        dst = QgsCoordinateReferenceSystem(crs)
        ms.setDestinationCrs(dst)
        ms.setOutputSize(QSize(*size))
        ms.setBackgroundColor(QColor(255, 255, 255))
        ext = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), dst, QgsProject.instance()
                                     ).transformBoundingBox(QgsRectangle(w, so, e, n))
        ms.setExtent(ext)
        t0 = time.monotonic()
        r = QgsMapRendererParallelJob(ms)
        r.start()
        r.waitForFinished()
        path = os.path.join(out, f"{name}.png")
        r.renderedImage().save(path)
        return {"path": path, "seconds": round(time.monotonic() - t0, 2), "errors": [x.message for x in r.errors()]}

    made["desktop-qgis-map"] = render(layers, "EPSG:4490", (1000, 700), "desktop-qgis-map")
    # 5. the whole city, orthophoto alone, per tile matrix set (QGIS's first draw: its requests show the zooms)
    draws = {}
    for tms, crs in (("WebMercatorQuad", "EPSG:3857"), ("CGCS2000Quad", "EPSG:4490")):
        for size in ((1000, 700), (1920, 1080)):
            lyr = QgsRasterLayer(f"crs={crs}&format=image/png&layers=city_ortho&styles=default&tileMatrixSet={tms}"
                                 f"&url={caps}", f"ortho {tms}", "wms")
            draws[f"{tms} {size[0]}x{size[1]}"] = render([lyr], crs, size, f"whole-city-{tms}-{size[0]}")
    json.dump({"made": made, "draws": draws}, sys.stdout)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
