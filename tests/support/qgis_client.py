"""Drive QGIS (Debian's `python3-qgis`, headless) against a running `cim serve`, as a desktop analyst would.

Run by Debian's own Python (`/usr/bin/python3`, where the `qgis` module lives), not the project's venv:

    /usr/bin/python3 tests/support/qgis_client.py < job.json > result.json

The job: `{"base": URL, "key": API key, "out": folder for the rendered PNGs, "profile": folder for QGIS's settings
(the caller's: this script leaves with `os._exit` and removes nothing), "size": px}`. One QGIS process does
every check, since QGIS starts slowly: it stores the key in a Basic authentication config (QGIS's credential
store, master password set headless), then adds

- WMTS from the RESTful capabilities on both tile matrix sets, and from the KVP endpoint (QGIS appends
  `SERVICE=WMS&REQUEST=GetCapabilities` to it);
- WMS 1.3.0 (the orthophoto, and the shelters layer drawn by the server);
- XYZ raster tiles;
- OGC API - Features layers, anonymous and keyed, and the browser's listing of a connection (the landing page's
  `data` link followed by QGIS itself), anonymous and keyed;
- vector tiles with their look from the `/styles/layers/...` document;

renders each to a PNG of `size` px over the layer's extent and prints what it saw as JSON on stdout: validity,
errors, image path, rendered extent and CRS, feature counts and attributes, the style's colours.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main() -> None:
    job = json.load(sys.stdin)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    profile = job["profile"]
    os.makedirs(profile, exist_ok=True)
    # QGIS keeps connections in QSettings under the user's config folder: give this run its own
    os.environ["XDG_CONFIG_HOME"] = os.environ["HOME"] = profile
    os.environ["XDG_RUNTIME_DIR"] = profile
    from qgis.core import (
        QgsApplication,
        QgsAuthMethodConfig,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsMapRendererSequentialJob,
        QgsMapSettings,
        QgsProject,
        QgsRasterLayer,
        QgsSettings,
        QgsVectorLayer,
        QgsVectorTileLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    app = QgsApplication([], False, profile)
    app.initQgis()
    base, key, out, size = job["base"], job["key"], job["out"], int(job.get("size", 512))
    from qgis.core import Qgis, QgsRectangle

    result: dict[str, Any] = {"qgis": Qgis.QGIS_VERSION}

    # the key in QGIS's credential store, as a Basic authentication config (key as password)
    os.environ["QGIS_AUTH_DB_DIR_PATH"] = profile
    auth = QgsApplication.authManager()
    auth.setMasterPassword("cim-test-master-password", True)
    cfg = QgsAuthMethodConfig("Basic")
    cfg.setName("cim city services")
    cfg.setConfig("username", "qgis")
    cfg.setConfig("password", key)
    stored = auth.storeAuthenticationConfig(cfg)
    authcfg = cfg.id() if stored[0] else ""
    result["authcfg"] = bool(authcfg)

    def render(layer: Any, name: str, crs: str, lonlat: list[float] | None = None) -> dict[str, Any]:
        """Draw `layer` alone over its extent (or the `lonlat` box: XYZ and vector tile layers span the world)."""
        info: dict[str, Any] = {"valid": layer.isValid(), "error": layer.error().summary() if not layer.isValid()
                                else ""}
        if not layer.isValid():
            return info
        dst = QgsCoordinateReferenceSystem(crs)
        src, extent = layer.crs(), layer.extent()
        if lonlat is not None:
            src, extent = QgsCoordinateReferenceSystem("EPSG:4326"), QgsRectangle(*lonlat)
        if src != dst:
            extent = QgsCoordinateTransform(src, dst, QgsProject.instance()).transformBoundingBox(extent)
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(dst)
        settings.setOutputSize(QSize(size, size))
        settings.setBackgroundColor(QColor(0, 0, 0, 0))
        settings.setExtent(extent)
        extent = settings.visibleExtent()  # what the image shows (the aspect ratio widens one side)
        job_ = QgsMapRendererSequentialJob(settings)
        job_.start()
        job_.waitForFinished()
        path = os.path.join(out, f"{name}.png")
        job_.renderedImage().save(path)
        info.update(png=path, crs=crs, extent=[extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                                extent.yMaximum()],
                    render_errors=[e.message for e in job_.errors()])
        return info

    auth_param = f"&authcfg={authcfg}"
    caps = f"{base}/wmts/1.0.0/WMTSCapabilities.xml"
    for tms, crs in (("WebMercatorQuad", "EPSG:3857"), ("CGCS2000Quad", "EPSG:4490")):
        uri = (f"contextualWMSLegend=0&crs={crs}&dpiMode=7&format=image/png&layers=ortho&styles=default"
               f"&tileMatrixSet={tms}&url={caps}")
        result[f"wmts_{tms}"] = render(QgsRasterLayer(uri, f"ortho {tms}", "wms"), f"wmts_{tms}", crs)
    kvp = (f"contextualWMSLegend=0&crs=EPSG:3857&dpiMode=7&format=image/png&layers=ortho&styles=default"
           f"&tileMatrixSet=WebMercatorQuad&url={base}/wmts")
    result["wmts_kvp"] = render(QgsRasterLayer(kvp, "ortho kvp", "wms"), "wmts_kvp", "EPSG:3857")
    hidden = (f"contextualWMSLegend=0&crs=EPSG:3857&dpiMode=7&format=image/png&layers=secret_ortho&styles=default"
              f"&tileMatrixSet=WebMercatorQuad&url={caps}")
    result["wmts_hidden_anonymous"] = render(QgsRasterLayer(hidden, "hidden", "wms"), "wmts_hidden_anonymous",
                                             "EPSG:3857")
    result["wmts_hidden_keyed"] = render(QgsRasterLayer(hidden + auth_param, "hidden", "wms"), "wmts_hidden_keyed",
                                         "EPSG:3857")
    # the keyed half of the URL pair: /basic/... challenges, QGIS answers with the stored login
    result["wmts_basic_prefix"] = render(QgsRasterLayer(hidden.replace(caps, f"{base}/basic/wmts/1.0.0/"
                                                                             f"WMTSCapabilities.xml") + auth_param,
                                                        "hidden /basic", "wms"), "wmts_basic_prefix", "EPSG:3857")
    for crs in ("EPSG:3857", "EPSG:4490", "EPSG:4326"):
        uri = f"crs={crs}&format=image/png&layers=ortho&styles=&url={base}/wms"
        result[f"wms_ortho_{crs}"] = render(QgsRasterLayer(uri, "ortho wms", "wms"), f"wms_ortho_{crs[5:]}", crs)
    uri = f"crs=EPSG:3857&format=image/png&layers=shelters&styles=&transparent=true&url={base}/wms"
    result["wms_shelters"] = render(QgsRasterLayer(uri, "shelters wms", "wms"), "wms_shelters", "EPSG:3857")
    uri = f"crs=EPSG:3857&format=image/png&layers=hazards&styles=&transparent=true&url={base}/wms{auth_param}"
    result["wms_hazards_keyed"] = render(QgsRasterLayer(uri, "hazards wms", "wms"), "wms_hazards_keyed", "EPSG:3857")
    xyz = f"type=xyz&url={base}/maps/ortho/{{z}}/{{x}}/{{y}}.png&zmax=19&zmin=0"
    result["xyz"] = render(QgsRasterLayer(xyz, "ortho xyz", "wms"), "xyz", "EPSG:3857", job["extents"]["ortho"])

    # OGC API - Features: layers, then the browser's listing of a connection (as Layer > Data Source Manager does)
    features: dict[str, Any] = {}
    for who, extra in (("anonymous", ""), ("keyed", f" authcfg='{authcfg}'")):
        for name in job.get("collections", []):
            layer = QgsVectorLayer(f"url='{base}' typename='{name}'{extra}", name, "OAPIF")
            entry: dict[str, Any] = {"valid": layer.isValid()}
            if layer.isValid():
                feats = list(layer.getFeatures())
                entry["count"] = len(feats)
                entry["fields"] = [f.name() for f in layer.fields()]
                entry["first"] = {f.name(): feats[0][f.name()] for f in layer.fields()} if feats else None
                entry["first"] = json.loads(json.dumps(entry["first"], default=str))
            features[f"{who}/{name}"] = entry
    result["oapif"] = features
    settings = QgsSettings()
    for who, cfg_id in (("anonymous", ""), ("keyed", authcfg)):
        settings.setValue(f"qgis/connections-wfs/cim-{who}/url", base)
        settings.setValue(f"qgis/connections-wfs/cim-{who}/version", "OGC_API_FEATURES")
        settings.setValue(f"qgis/WFS/cim-{who}/authcfg", cfg_id)
    provider = next(p for p in QgsApplication.dataItemProviderRegistry().providers() if p.name() == "WFS")
    browser: dict[str, list[str]] = {}
    for conn in provider.createDataItem("", None).createChildren():
        browser[conn.name().removeprefix("cim-")] = sorted(k.name() for k in conn.createChildren())
    result["browser"] = browser

    # vector tiles, their look read from the style document. QGIS 3.22 fetches the style URL without the layer's
    # authentication config, so a keyed style URL carries the key as ?api_key= (docs/desktop-gis.md)
    for name, keyed in (("shelters", False), ("hazards", True)):
        style_url = f"{base}/styles/layers/{name}" + (f"?api_key={key}" if keyed else "")
        uri = (f"type=xyz&url={base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt&zmax=14&zmin=0"
               + (f"&authcfg={authcfg}" if keyed else "")) + "&styleUrl=" + style_url.replace("&", "%26")
        vt = QgsVectorTileLayer(uri, f"{name} tiles")
        msg, ok = vt.loadDefaultStyle() if vt.isValid() else ("", False)
        entry = {"style_loaded": bool(ok), "style_message": msg}
        renderer = vt.renderer() if vt.isValid() else None
        entry["styles"] = [{"name": st.styleName(), "layer": st.layerName(),
                            "color": st.symbol().color().name() if st.symbol() else None,
                            "geometry": int(st.geometryType())} for st in renderer.styles()] if renderer else []
        entry.update(render(vt, f"vt_{name}", "EPSG:3857", job["extents"][name]))
        result[f"vector_tiles_{name}"] = entry
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    # QGIS 3.22 can crash tearing down its providers after a headless run: the answer is out, leave at once
    os._exit(0)


if __name__ == "__main__":
    main()
