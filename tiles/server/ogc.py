"""JSON documents of the server's standard APIs: OGC API - Features / Tiles and TileJSON 3.0.

Pure functions from catalogue records and results to dicts; the routes render them. `base` is the public base URL
(no trailing slash); `query` is a query string to carry into every link (an `api_key` the caller passed that way).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from layers.models import FeaturePage, LayerInfo
from layers.serving import FeaturePageJson
from tiles.mvt import MvtOptions, vector_layers_json
from tiles.raster import RasterMap, get_tms

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CGCS2000 = "http://www.opengis.net/def/crs/EPSG/0/4490"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
]


def _q(query: str, sep: str = "?") -> str:
    return f"{sep}{query}" if query else ""


def landing_page(base: str, title: str, query: str = "") -> dict[str, Any]:
    """The OGC API landing page."""
    q = _q(query)
    return {"title": title, "description": "3D Tiles models, raster maps and vector layers of a city digital twin",
            "links": [
                {"href": f"{base}/{q}", "rel": "self", "type": "application/json", "title": "this document"},
                {"href": f"{base}/api{q}", "rel": "service-desc", "type": OPENAPI, "title": "the API definition"},
                {"href": f"{base}/conformance{q}", "rel": "conformance", "type": "application/json"},
                {"href": f"{base}/collections{q}", "rel": "data", "type": "application/json"},
                {"href": f"{base}/tileMatrixSets{q}", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes",
                 "type": "application/json"},
                {"href": f"{base}/catalog{q}", "rel": "describedby", "type": "application/json",
                 "title": "service catalogue (models, maps, layers)"}]}


def collection(info: LayerInfo, base: str, query: str = "") -> dict[str, Any]:
    """One collection's description."""
    q = _q(query)
    href = f"{base}/collections/{info.name}"
    bbox = [list(info.extent)] if info.extent else [[-180.0, -90.0, 180.0, 90.0]]
    return {
        "id": info.name, "title": info.title, "description": f"{info.theme_title}; {info.department}".strip("; "),
        "itemType": "feature", "crs": [CRS84], "storageCrs": CGCS2000,
        "extent": {"spatial": {"bbox": bbox, "crs": CRS84}},
        "cim:theme": info.theme, "cim:security": info.security, "cim:version": info.version,
        "cim:geometryType": info.geometry_type, "cim:featureCount": info.feature_count,
        "links": [
            {"href": f"{href}{q}", "rel": "self", "type": "application/json"},
            {"href": f"{href}/items{q}", "rel": "items", "type": GEOJSON},
            {"href": f"{href}/queryables{q}", "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
             "type": "application/schema+json"},
            {"href": f"{href}/tiles{q}", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
             "type": "application/json"}]}


def collections(infos: Sequence[LayerInfo], base: str, query: str = "") -> dict[str, Any]:
    """The `/collections` document."""
    return {"collections": [collection(i, base, query) for i in infos],
            "links": [{"href": f"{base}/collections{_q(query)}", "rel": "self", "type": "application/json"}]}


def queryables(info: LayerInfo, base: str) -> dict[str, Any]:
    """JSON Schema of the properties a `filter` may use."""

    def schema(t: str) -> dict[str, str]:
        t = t.upper()
        if t == "BOOLEAN":
            return {"type": "boolean"}
        if t.startswith(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "U")):
            return {"type": "integer"}
        if t.startswith(("FLOAT", "DOUBLE", "REAL", "DECIMAL")):
            return {"type": "number"}
        if t.startswith("DATE"):
            return {"type": "string", "format": "date"}
        if t.startswith("TIMESTAMP"):
            return {"type": "string", "format": "date-time"}
        return {"type": "string"}

    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{base}/collections/{info.name}/queryables", "type": "object", "title": info.title,
            "properties": {"fid": {"type": "integer"}, **{f.name: schema(f.type) for f in info.fields}}}


def _items_links(number_matched: int, number_returned: int, info: LayerInfo, base: str, params: Mapping[str, str],
                 limit: int, offset: int) -> list[dict[str, str]]:
    href = f"{base}/collections/{info.name}/items"
    kept = {k: v for k, v in params.items() if k not in ("offset", "limit")}

    def link(rel: str, off: int) -> dict[str, str]:
        return {"href": f"{href}?{urlencode({**kept, 'limit': limit, 'offset': off})}", "rel": rel, "type": GEOJSON}

    links = [link("self", offset),
             {"href": f"{base}/collections/{info.name}{_q(urlencode({k: v for k, v in params.items() if k == 'api_key'}))}",
              "rel": "collection", "type": "application/json"}]
    if offset + number_returned < number_matched:
        links.append(link("next", offset + limit))
    if offset > 0:
        links.append(link("prev", max(0, offset - limit)))
    return links


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def items(page: FeaturePage, info: LayerInfo, base: str, params: Mapping[str, str], limit: int, offset: int
          ) -> dict[str, Any]:
    """An items page as a GeoJSON FeatureCollection with OGC counts and self/next/prev links."""
    doc = page.to_geojson()
    doc["timeStamp"] = _now()
    doc["links"] = _items_links(page.number_matched, page.number_returned, info, base, params, limit, offset)
    return doc


def items_json(page: FeaturePageJson, info: LayerInfo, base: str, params: Mapping[str, str], limit: int,
               offset: int) -> bytes:
    """`items` as UTF-8 JSON bytes, from a page whose features are already JSON text (the same document)."""
    links = _items_links(page.number_matched, page.number_returned, info, base, params, limit, offset)
    return (f'{{"type":"FeatureCollection","numberMatched":{page.number_matched},'
            f'"numberReturned":{page.number_returned},"features":{page.features},"timeStamp":"{_now()}",'
            f'"links":{json.dumps(links, ensure_ascii=False, separators=(",", ":"))}}}').encode()


def feature(doc: dict[str, Any], info: LayerInfo, base: str, query: str = "") -> dict[str, Any]:
    """One feature with self/collection links."""
    q = _q(query)
    href = f"{base}/collections/{info.name}"
    return {**doc, "links": [{"href": f"{href}/items/{doc['id']}{q}", "rel": "self", "type": GEOJSON},
                             {"href": f"{href}{q}", "rel": "collection", "type": "application/json"}]}


def vector_tilejson(infos: Sequence[LayerInfo], base: str, options: MvtOptions, query: str = "") -> dict[str, Any]:
    """TileJSON 3.0 of one or more layers' vector tiles (the XYZ alias URL)."""
    names = ",".join(i.name for i in infos)
    exts = [i.extent for i in infos if i.extent]
    bounds = [min(e[0] for e in exts), min(e[1] for e in exts), max(e[2] for e in exts), max(e[3] for e in exts)] \
        if exts else [-180.0, -85.0511287798066, 180.0, 85.0511287798066]
    return {"tilejson": "3.0.0", "name": names, "description": "; ".join(i.title for i in infos),
            "scheme": "xyz", "tiles": [f"{base}/tiles/{names}/{{z}}/{{x}}/{{y}}.mvt{_q(query)}"],
            "minzoom": options.minzoom, "maxzoom": options.maxzoom, "bounds": bounds,
            "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, min(14, options.maxzoom)],
            "vector_layers": vector_layers_json(infos, options)}


def raster_tilejson(m: RasterMap, base: str, fmt: str, tms_id: str = "WebMercatorQuad", query: str = ""
                    ) -> dict[str, Any]:
    """TileJSON 3.0 of a raster map."""
    info = m.info
    lo, hi = m.zoom_range(get_tms(tms_id))
    b = list(info.bounds)
    doc: dict[str, Any] = {
        "tilejson": "3.0.0", "name": m.name, "description": m.title, "scheme": "xyz",
        "tiles": [f"{base}/maps/{m.name}/{tms_id}/{{z}}/{{x}}/{{y}}.{fmt}{_q(query)}"],
        "minzoom": lo, "maxzoom": hi, "bounds": b, "center": [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, hi]}
    if m.kind == "dem":
        doc["encoding"] = "mapbox"
    return doc


def vector_tilesets(info: LayerInfo, base: str, query: str = "") -> dict[str, Any]:
    """OGC API Tiles: the list of a collection's vector tilesets (one, on WebMercatorQuad)."""
    return {"tilesets": [vector_tileset(info, base, query)]}


def vector_tileset(info: LayerInfo, base: str, query: str = "") -> dict[str, Any]:
    """OGC API Tiles: a collection's WebMercatorQuad vector tileset description."""
    q = _q(query)
    href = f"{base}/collections/{info.name}/tiles/WebMercatorQuad"
    return {"title": info.title, "dataType": "vector", "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
            "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
            "links": [
                {"href": f"{href}{q}", "rel": "self", "type": "application/json"},
                {"href": f"{base}/tileMatrixSets/WebMercatorQuad{q}",
                 "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme", "type": "application/json"},
                {"href": f"{href}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}{q}", "rel": "item", "templated": True,
                 "type": "application/vnd.mapbox-vector-tile"}],
            "layers": [{"id": info.name, "dataType": "vector", "geometryType": _ogc_geometry(info.geometry_type)}]}


def _ogc_geometry(gtype: str) -> str:
    g = gtype.replace(" Z", "").lower()
    return {"point": "points", "multipoint": "points", "linestring": "lines", "multilinestring": "lines",
            "polygon": "polygons", "multipolygon": "polygons"}.get(g, "geometries")


__all__ = ["CONFORMANCE", "GEOJSON", "OPENAPI", "collection", "collections", "feature", "items", "items_json", "landing_page",
           "queryables", "raster_tilejson", "vector_tilejson", "vector_tileset", "vector_tilesets"]
