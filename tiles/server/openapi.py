"""The `/api` document: FastAPI's OpenAPI 3.1 turned into the OpenAPI 3.0 that OGC API asks for, with every query
parameter declared with its real type, default and maximum.

Routes read some parameters as text to give their own error messages (`limit=ten is not an integer`) or read OGC
KVP parameters case-insensitively (WMTS, WMS); this module declares them as clients must see them. The
`/collections/{id}/items` parameters are OGC API Features Part 1's parameter components (`limit`, `bbox`,
`datetime`) under `components/parameters`, referenced by `$ref`: QGIS reads the page size it asks for from
`components/parameters/limit/schema/maximum` (and `default`).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tiles.raster import MEDIA_TYPES, TMS_IDS
from tiles.server.settings import ServerSettings

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "style": "form", "explode": False,
            "description": description, "schema": schema}


def ogc_parameters(settings: ServerSettings) -> dict[str, dict[str, Any]]:
    """The parameter components of `/collections/{id}/items` (OGC API Features Part 1 and Part 3)."""
    return {
        "limit": _query("limit", {"type": "integer", "minimum": 1, "maximum": settings.items_max_limit,
                                  "default": settings.items_limit},
                        "The page size. A value above the maximum is served as the maximum (with a next link)."),
        "offset": _query("offset", {"type": "integer", "minimum": 0, "default": 0},
                         "Features to skip (the next/prev links carry it)."),
        "bbox": _query("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                       "minlon,minlat,maxlon,maxlat (or with heights: 6 numbers), CRS84."),
        "bbox-crs": _query("bbox-crs", {"type": "string", "format": "uri", "enum": [CRS84], "default": CRS84},
                           "CRS of bbox: CRS84 only."),
        "datetime": _query("datetime", {"type": "string"},
                           "Accepted and ignored: layers have no temporal extent."),
        "filter": _query("filter", {"type": "string"}, "CQL2 text, e.g. capacity > 100 AND kind = 'school'."),
        "filter-lang": _query("filter-lang", {"type": "string", "enum": ["cql2-text"], "default": "cql2-text"},
                              "The filter language."),
        "filter-crs": _query("filter-crs", {"type": "string", "format": "uri", "enum": [CRS84], "default": CRS84},
                             "CRS of geometries in the filter: CRS84 only."),
        "crs": _query("crs", {"type": "string", "format": "uri", "enum": [CRS84], "default": CRS84},
                      "CRS of the response: CRS84 only."),
    }


def _kvp(names: dict[str, tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
    return [_query(n, s, d) for n, (s, d) in names.items()]


_FORMATS = {"type": "string", "enum": list(MEDIA_TYPES.values())}
_WMTS_KVP = {
    "SERVICE": ({"type": "string", "enum": ["WMTS", "WMS"], "default": "WMTS"},
                "WMTS; a WMS GetCapabilities probe gets the WMTS document, other WMS requests are sent to /wms"),
    "REQUEST": ({"type": "string", "enum": ["GetCapabilities", "GetTile"], "default": "GetCapabilities"}, ""),
    "VERSION": ({"type": "string", "enum": ["1.0.0"], "default": "1.0.0"}, ""),
    "LAYER": ({"type": "string"}, "a map name (GetTile)"),
    "STYLE": ({"type": "string", "default": "default"}, ""),
    "TILEMATRIXSET": ({"type": "string", "enum": list(TMS_IDS)}, "GetTile"),
    "TILEMATRIX": ({"type": "integer", "minimum": 0, "maximum": 24}, "the zoom level (GetTile)"),
    "TILEROW": ({"type": "integer", "minimum": 0}, "GetTile"),
    "TILECOL": ({"type": "integer", "minimum": 0}, "GetTile"),
    "FORMAT": ({**_FORMATS, "default": "image/png"}, "GetTile"),
}


def wms_parameters(max_size: int) -> list[dict[str, Any]]:
    """The WMS 1.3.0 KVP parameters of `/wms` (names are case-insensitive on the wire)."""
    return _kvp({
        "SERVICE": ({"type": "string", "enum": ["WMS"], "default": "WMS"}, ""),
        "VERSION": ({"type": "string", "enum": ["1.3.0"], "default": "1.3.0"}, ""),
        "REQUEST": ({"type": "string", "enum": ["GetCapabilities", "GetMap", "GetFeatureInfo"],
                     "default": "GetCapabilities"}, ""),
        "LAYERS": ({"type": "string"}, "comma-separated map and layer names, bottom first (GetMap)"),
        "STYLES": ({"type": "string", "default": ""}, "empty or 'default' per layer"),
        "CRS": ({"type": "string", "enum": ["EPSG:3857", "EPSG:4490", "EPSG:4326", "CRS:84"]},
                "EPSG:4490 and EPSG:4326 take BBOX in latitude, longitude order (WMS 1.3.0)"),
        "BBOX": ({"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}},
                 "minx,miny,maxx,maxy in the axis order of CRS"),
        "WIDTH": ({"type": "integer", "minimum": 1, "maximum": max_size}, ""),
        "HEIGHT": ({"type": "integer", "minimum": 1, "maximum": max_size}, ""),
        "FORMAT": ({**_FORMATS, "default": "image/png"}, ""),
        "TRANSPARENT": ({"type": "string", "enum": ["TRUE", "FALSE"], "default": "FALSE"}, ""),
        "BGCOLOR": ({"type": "string", "pattern": "^0x[0-9A-Fa-f]{6}$", "default": "0xFFFFFF"}, ""),
        "EXCEPTIONS": ({"type": "string", "enum": ["XML", "INIMAGE", "BLANK"], "default": "XML"}, ""),
        "QUERY_LAYERS": ({"type": "string"}, "GetFeatureInfo: comma-separated layer names"),
        "INFO_FORMAT": ({"type": "string", "enum": ["application/json", "application/geo+json", "text/html",
                                                    "text/plain"], "default": "application/json"}, ""),
        "I": ({"type": "integer", "minimum": 0}, "GetFeatureInfo: pixel column"),
        "J": ({"type": "integer", "minimum": 0}, "GetFeatureInfo: pixel row"),
        "FEATURE_COUNT": ({"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
                          "GetFeatureInfo: features per layer"),
    })


def _to_30(doc: Any) -> Any:
    """OpenAPI 3.1 (JSON Schema 2020-12) -> 3.0: `anyOf [X, null]` becomes `X` + `nullable`; numeric
    `exclusiveMinimum`/`exclusiveMaximum` become `minimum`/`maximum` + the boolean; tuple `prefixItems` become
    `items` (the one item schema, or `anyOf` of them); `const` becomes a one-value `enum`; list `examples` go."""
    if isinstance(doc, list):
        return [_to_30(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    any_of = doc.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [_to_30(s) for s in any_of if s != {"type": "null"}]
        node = {k: _to_30(v) for k, v in doc.items() if k != "anyOf"}
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
        return node
    node = {k: _to_30(v) for k, v in doc.items() if k != "examples" or not isinstance(v, list)}
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            node[plain], node[bound] = value, True
    if isinstance(node.get("prefixItems"), list):
        items = node.pop("prefixItems")
        unique = [json.loads(t) for t in dict.fromkeys(json.dumps(i, sort_keys=True) for i in items)]
        node.setdefault("items", unique[0] if len(unique) == 1 else {"anyOf": unique})
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def openapi_document(doc: dict[str, Any], settings: ServerSettings, wms_max_size: int = 4096) -> dict[str, Any]:
    """The `/api` document from FastAPI's: OpenAPI 3.0.3, OGC parameter components referenced by the items route,
    the KVP parameters of `/wmts` and `/wms`, enums for tile formats and tile matrix sets."""
    out = _to_30(copy.deepcopy(doc))
    out["openapi"] = "3.0.3"
    components = ogc_parameters(settings)
    out.setdefault("components", {})["parameters"] = components
    for path, item in out.get("paths", {}).items():
        get = item.get("get")
        if not get:
            continue
        params = get.get("parameters", [])
        if path == "/collections/{collection_id}/items":
            declared = [p for p in params if p.get("in") != "query" or p["name"] not in components]
            get["parameters"] = declared + [{"$ref": f"#/components/parameters/{n}"} for n in components]
            continue
        if path == "/wmts":
            get["parameters"] = params + _kvp(_WMTS_KVP)
        elif path == "/wms":
            get["parameters"] = params + wms_parameters(wms_max_size)
        for p in get.get("parameters", []):
            if p.get("in") != "path":
                continue
            if p["name"] == "fmt":
                p["schema"] = {"type": "string", "enum": ["png", "jpg", "webp"]}
            elif p["name"] == "tms_id":  # raster maps on both sets, vector tiles on WebMercatorQuad
                p["schema"] = {"type": "string", "enum": list(TMS_IDS) if path.startswith("/maps/")
                               else ["WebMercatorQuad"]}
            elif p["name"] in ("z", "x", "y"):
                p["schema"] = {"type": "integer", "minimum": 0}
    return out


__all__ = ["ogc_parameters", "openapi_document", "wms_parameters"]
