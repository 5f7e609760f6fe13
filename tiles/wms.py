"""WMS 1.3.0 over the same maps and layers as the tile services: GetCapabilities, GetMap (EPSG:3857, EPSG:4490,
EPSG:4326, CRS:84) and GetFeatureInfo answered from the layer store.

Many clients and Chinese platforms still speak only WMS (CJJ/T 315-2022 lists WMS beside WMTS and WFS). A GetMap
image stacks its layers bottom first: orthophotos are read through the maps' kept views (`tiles.raster.RasterMap.
part`, the same fast path as tiles); vector layers are drawn from the store with the look the viewer and the style
documents use (`tiles.styles.layer_style`: a stored thematic style colours each feature by its class, a heat map is
drawn as MapLibre draws one), 2x supersampled for smooth edges. Store coordinates are CGCS2000 longitude/latitude,
drawn as WGS 84 ones in EPSG:4326 and CRS:84 (they agree within centimetres; PROJ applies no shift between them
either).

WMS 1.3.0 axis order: EPSG:4326 and EPSG:4490 are latitude first, so their BBOX is `minlat,minlon,maxlat,maxlon`;
CRS:84 and EPSG:3857 are east first. `MapRequest.bbox` is always east/north.
"""

from __future__ import annotations

import html
import io
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import shapely
from PIL import Image, ImageDraw

from layers.values import json_value
from tiles.errors import TileRequestError
from tiles.styles import LayerStyle, Paint, feature_paint

WMS_CRS = ("EPSG:3857", "EPSG:4490", "EPSG:4326", "CRS:84")
LAT_FIRST = ("EPSG:4490", "EPSG:4326")
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
INFO_FORMATS = ("application/json", "application/geo+json", "text/html", "text/plain")
MAX_SIZE = 4096
MAX_FEATURES = 50_000  # per layer and GetMap: denser views draw every n-th feature by fid
SUPERSAMPLE = 2
_NS = {"": "http://www.opengis.net/wms", "xlink": "http://www.w3.org/1999/xlink",
       "xsi": "http://www.w3.org/2001/XMLSchema-instance"}


class WmsError(TileRequestError):
    """A WMS request the server cannot answer; `code` is the WMS 1.3.0 exception code (InvalidCRS, ...)."""

    def __init__(self, message: str, code: str = "InvalidParameterValue") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class MapRequest:
    """A parsed GetMap (or the map part of a GetFeatureInfo).

    Attributes:
        layers: names, bottom first.
        crs: one of WMS_CRS.
        bbox: (west, south, east, north) in `crs`, east/north order whatever the CRS's axis order.
        width, height: pixels.
        format: a key of FORMATS.
        transparent: transparent background (PNG, WebP).
        bgcolor: background RGB.
    """

    layers: tuple[str, ...]
    crs: str
    bbox: tuple[float, float, float, float]
    width: int
    height: int
    format: str = "image/png"
    transparent: bool = False
    bgcolor: tuple[int, int, int] = (255, 255, 255)

    def pixel_to_crs(self, i: float, j: float) -> tuple[float, float]:
        """Map coordinates (east, north) of pixel column `i`, row `j` (pixel centres at +0.5)."""
        w, s, e, n = self.bbox
        return w + (i + 0.5) / self.width * (e - w), n - (j + 0.5) / self.height * (n - s)

    @property
    def resolution(self) -> float:
        """Map units per pixel (the larger of x and y)."""
        w, s, e, n = self.bbox
        return max((e - w) / self.width, (n - s) / self.height)


def _upper(params: Mapping[str, str]) -> dict[str, str]:
    return {k.upper(): v for k, v in params.items()}


def parse_map_request(params: Mapping[str, str], *, max_size: int = MAX_SIZE) -> MapRequest:
    """A `MapRequest` from WMS 1.3.0 KVP parameters (names case-insensitive; SRS accepted for CRS, as 1.1.1 has it).

    Raises:
        WmsError: a missing or invalid parameter (with its WMS exception code).
    """
    q = _upper(params)
    missing = [p for p in ("LAYERS", "BBOX", "WIDTH", "HEIGHT") if not q.get(p)]
    crs = (q.get("CRS") or q.get("SRS") or "").upper()
    if not crs:
        missing.append("CRS")
    if missing:
        raise WmsError(f"GetMap needs {', '.join(missing)}", "MissingParameterValue")
    if crs not in WMS_CRS:
        raise WmsError(f"CRS={crs!r} is not offered; use one of {', '.join(WMS_CRS)}", "InvalidCRS")
    try:
        v = [float(x) for x in q["BBOX"].split(",")]
        width, height = int(q["WIDTH"]), int(q["HEIGHT"])
    except ValueError as exc:
        raise WmsError(f"BBOX={q['BBOX']!r}, WIDTH, HEIGHT: BBOX is 4 numbers, WIDTH and HEIGHT integers") from exc
    if len(v) != 4 or not all(math.isfinite(x) for x in v) or v[0] >= v[2] or v[1] >= v[3]:
        raise WmsError(f"BBOX={q['BBOX']!r}: expected minx,miny,maxx,maxy with min < max")
    if not (0 < width <= max_size and 0 < height <= max_size):
        raise WmsError(f"WIDTH={width}, HEIGHT={height}: each must be 1..{max_size}")
    # WMS 1.3.0: EPSG:4326 / 4490 BBOX is lat,lon; 1.1.1 (SRS=) is lon,lat
    if crs in LAT_FIRST and "CRS" in q:
        v = [v[1], v[0], v[3], v[2]]
    fmt = q.get("FORMAT", "image/png").split(";")[0].strip().lower()
    if fmt == "image/jpg":
        fmt = "image/jpeg"
    if fmt not in FORMATS:
        raise WmsError(f"FORMAT={q['FORMAT']!r}: use one of {', '.join(FORMATS)}", "InvalidFormat")
    bg = q.get("BGCOLOR", "0xFFFFFF")
    try:
        rgb = int(bg[2:] if bg.lower().startswith("0x") else bg, 16)
    except ValueError as exc:
        raise WmsError(f"BGCOLOR={bg!r}: expected 0xRRGGBB") from exc
    layers = tuple(x.strip() for x in q["LAYERS"].split(",") if x.strip())
    if not layers:
        raise WmsError("LAYERS is empty", "LayerNotDefined")
    return MapRequest(layers, crs, (v[0], v[1], v[2], v[3]), width, height, fmt,
                      q.get("TRANSPARENT", "FALSE").upper() == "TRUE", ((rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255))


def _to_crs(crs: str) -> Any:
    """A (lon, lat) -> map CRS transform function of numpy arrays."""
    if crs != "EPSG:3857":
        return lambda x, y: (x, y)
    from cim.sources.crs import transformer

    t = transformer("EPSG:4490", "EPSG:3857")
    return lambda x, y: t.transform(x, y)


def _from_crs(crs: str) -> Any:
    if crs != "EPSG:3857":
        return lambda x, y: (x, y)
    from cim.sources.crs import transformer

    t = transformer("EPSG:3857", "EPSG:4490")
    return lambda x, y: t.transform(x, y)


def lonlat_bbox(req: MapRequest, grow_px: float = 0.0) -> tuple[float, float, float, float]:
    """The request's bbox (grown by `grow_px` pixels) as lon/lat, clamped to the globe."""
    w, s, e, n = req.bbox
    g = grow_px * req.resolution
    xs = np.array([w - g, e + g, w - g, e + g, (w + e) / 2, (w + e) / 2])
    ys = np.array([s - g, s - g, n + g, n + g, s - g, n + g])
    lon, lat = _from_crs(req.crs)(xs, ys)
    return (max(-180.0, float(np.min(lon))), max(-90.0, float(np.min(lat))), min(180.0, float(np.max(lon))),
            min(90.0, float(np.max(lat))))


# ------------------------------------------------------------------------------------------------ drawing
def draw_features(canvas: Image.Image, req: MapRequest, geoms: Sequence[Any], style: LayerStyle,
                  paints: Sequence[Paint] | None = None) -> None:
    """Draw lon/lat shapely geometries onto an RGBA canvas of the request's size, with a layer's look (one
    `tiles.styles.Paint` per geometry when a thematic style colours them, else the layer's own)."""
    if not len(geoms):
        return
    scale = SUPERSAMPLE
    layer = Image.new("RGBA", (req.width * scale, req.height * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    to_crs = _to_crs(req.crs)
    w, s, e, n = req.bbox
    sx, sy = req.width * scale / (e - w), req.height * scale / (n - s)
    plain = feature_paint(style, {})

    def px(coords: np.ndarray) -> list[tuple[float, float]]:
        x, y = to_crs(coords[:, 0], coords[:, 1])
        return list(zip(((np.asarray(x) - w) * sx).tolist(), ((n - np.asarray(y)) * sy).tolist(), strict=True))

    def parts(g: Any) -> Any:
        for part in getattr(g, "geoms", [g]):
            if part.geom_type in ("Point", "LineString", "Polygon"):
                yield part
            else:
                yield from parts(part)

    for i, g in enumerate(geoms):
        paint = paints[i] if paints is not None else plain
        fill, line = paint.fill, paint.line
        lw = max(1, round(paint.width * scale))
        r = paint.radius * scale
        for part in parts(g):
            kind = part.geom_type
            if kind == "Point":
                (x, y), = px(np.array([[part.x, part.y]]))
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=line, width=max(1, scale))
            elif kind == "LineString":
                pts = px(np.asarray(part.coords))
                if len(pts) > 1:
                    draw.line(pts, fill=line, width=lw, joint="curve")
            else:
                # holes: draw the exterior filled on a mask, cut the interiors out, then outline every ring
                mask = Image.new("L", layer.size, 0)
                md = ImageDraw.Draw(mask)
                md.polygon(px(np.asarray(part.exterior.coords)), fill=255)
                for hole in part.interiors:
                    md.polygon(px(np.asarray(hole.coords)), fill=0)
                layer.paste(Image.new("RGBA", layer.size, fill), (0, 0), mask)
                for ring in (part.exterior, *part.interiors):
                    draw.line(px(np.asarray(ring.coords)), fill=line, width=lw)
    if scale > 1:
        layer = layer.resize((req.width, req.height), Image.Resampling.LANCZOS)
    canvas.alpha_composite(layer)


def draw_heatmap(canvas: Image.Image, req: MapRequest, points: Any, weights: np.ndarray, style: LayerStyle) -> None:
    """A heat map of lon/lat points as MapLibre draws one (its heatmap shader): each point adds
    weight x intensity x exp(-4.5 (d / radius)^2) / sqrt(2 pi) at distance d pixels; the sum, clipped to 0..1, is
    coloured along the style's colours from transparent at 0."""
    from scipy.ndimage import gaussian_filter

    t = style.thematic
    hm = t.heatmap if t is not None else None
    radius = hm.radius_px if hm else 30.0
    intensity = hm.intensity if hm else 1.0
    colors = np.asarray((hm.colors if hm else None) or [[255, 0, 0, 255]], dtype=np.float64)
    if not len(points):
        return
    x, y = _to_crs(req.crs)(shapely.get_x(points), shapely.get_y(points))
    w, s, e, n = req.bbox
    col = np.floor((np.asarray(x) - w) / (e - w) * req.width).astype(np.int64)
    row = np.floor((n - np.asarray(y)) / (n - s) * req.height).astype(np.int64)
    pad = int(math.ceil(radius))
    inside = (col >= -pad) & (col < req.width + pad) & (row >= -pad) & (row < req.height + pad)
    grid = np.zeros((req.height + 2 * pad, req.width + 2 * pad))
    np.add.at(grid, (row[inside] + pad, col[inside] + pad), weights[inside])
    sigma = radius / 3  # exp(-4.5 (d / radius)^2) is a Gaussian of sigma radius / 3
    density = gaussian_filter(grid, sigma, mode="constant", truncate=3.0) * (2 * math.pi * sigma * sigma) \
        * intensity / math.sqrt(2 * math.pi)
    density = np.clip(density[pad:pad + req.height, pad:pad + req.width], 0, 1)
    stops = np.linspace(0, 1, len(colors) + 1)
    ramp = np.vstack([[0, 0, 0, 0], colors])
    rgba = np.stack([np.interp(density, stops, ramp[:, k]) for k in range(4)], axis=-1)
    rgba[..., 3] *= style.opacity
    canvas.alpha_composite(Image.fromarray(np.round(rgba).astype(np.uint8), "RGBA"))


def raster_rgba(img: Any) -> Image.Image:
    """A rio-tiler `ImageData` (1 or 3 bands, uint8, with its mask) as an RGBA image."""
    data = np.asarray(img.data)
    if data.shape[0] == 1:
        data = np.repeat(data, 3, axis=0)
    alpha = (img.mask > 0).astype(np.uint8) * 255 if img.mask.ndim == 2 else (img.mask[0] > 0).astype(np.uint8) * 255
    rgba = np.concatenate([data[:3].astype(np.uint8), alpha[None]], axis=0).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(rgba), "RGBA")


def encode(canvas: Image.Image, req: MapRequest) -> bytes:
    """The canvas in the requested format (JPEG, and PNG/WebP without TRANSPARENT, on the background colour)."""
    if not req.transparent or req.format == "image/jpeg":
        bg = Image.new("RGBA", canvas.size, (*req.bgcolor, 255))
        bg.alpha_composite(canvas)
        canvas = bg.convert("RGB")
    buf = io.BytesIO()
    extra: dict[str, Any] = {"quality": 85} if req.format != "image/png" else {"compress_level": 1}
    canvas.save(buf, FORMATS[req.format], **extra)
    return buf.getvalue()


def render_map(req: MapRequest, rasters: Mapping[str, Any], styles: Mapping[str, LayerStyle], store: Any) -> bytes:
    """A GetMap image: each of `req.layers`, bottom first, from `rasters` (name -> `tiles.raster.RasterMap`, read
    through its kept views) or from the store (name -> the layer's look), encoded as `req.format`.

    Raises:
        WmsError: a layer in neither mapping (LayerNotDefined).
    """
    canvas = Image.new("RGBA", (req.width, req.height), (0, 0, 0, 0))
    for name in req.layers:
        if name in rasters:
            crs = "EPSG:4326" if req.crs == "CRS:84" else req.crs
            canvas.alpha_composite(raster_rgba(rasters[name].part(req.bbox, crs, req.width, req.height)))
        elif name in styles:
            style = styles[name]
            t = style.thematic
            if t is not None and t.kind == "heatmap" and style.geometry == "point":
                hm = t.heatmap
                gdf = store.query(name, bbox=lonlat_bbox(req, hm.radius_px if hm else 30), limit=MAX_FEATURES)
                weights = np.ones(len(gdf)) if not hm or not hm.weight_field or hm.weight_field not in gdf else \
                    np.nan_to_num(np.asarray(gdf[hm.weight_field], dtype=np.float64))
                draw_heatmap(canvas, req, gdf.geometry.values, weights, style)
                continue
            sizes = [c.size for c in t.classes if c.size is not None] if t is not None else []
            grow = max([style.point_radius, *sizes]) + style.line_width + 1
            gdf = store.query(name, bbox=lonlat_bbox(req, grow), limit=MAX_FEATURES)
            paints = None
            if t is not None and t.kind != "single":
                records = gdf.drop(columns=gdf.geometry.name).to_dict("records")
                paints = [feature_paint(style, rec, rec.get("fid")) for rec in records]
            draw_features(canvas, req, gdf.geometry.values, style, paints)
        else:
            raise WmsError(f"layer {name!r} is not offered by this WMS; see REQUEST=GetCapabilities",
                           "LayerNotDefined")
    return encode(canvas, req)


# ------------------------------------------------------------------------------------------------ documents
def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    prefix, _, local = tag.rpartition(":")
    e = ET.SubElement(parent, f"{{{_NS[prefix]}}}{local}",
                      {(f"{{{_NS[k.split('__')[0]]}}}{k.split('__')[1]}" if "__" in k else k): v
                       for k, v in attrs.items()})
    if text is not None:
        e.text = text
    return e


def _bbox_elements(layer: ET.Element, ext: Sequence[float]) -> None:
    geo = _el(layer, "EX_GeographicBoundingBox")
    for tag, v in zip(("westBoundLongitude", "eastBoundLongitude", "southBoundLatitude", "northBoundLatitude"),
                      (ext[0], ext[2], ext[1], ext[3]), strict=True):
        _el(geo, tag, repr(float(v)))
    from cim.sources.crs import transformer

    x, y = transformer("EPSG:4490", "EPSG:3857").transform([ext[0], ext[2]], [max(ext[1], -85.05), min(ext[3], 85.05)])
    boxes = {"CRS:84": (ext[0], ext[1], ext[2], ext[3]), "EPSG:4326": (ext[1], ext[0], ext[3], ext[2]),
             "EPSG:4490": (ext[1], ext[0], ext[3], ext[2]), "EPSG:3857": (x[0], y[0], x[1], y[1])}
    for crs, b in boxes.items():
        _el(layer, "BoundingBox", CRS=crs, minx=repr(float(b[0])), miny=repr(float(b[1])), maxx=repr(float(b[2])),
            maxy=repr(float(b[3])))


@dataclass
class WmsLayer:
    """A layer of the capabilities: a raster map or a queryable vector layer."""

    name: str
    title: str
    extent: Sequence[float] | None
    queryable: bool
    abstract: str = ""
    keywords: list[str] = field(default_factory=list)


def wms_capabilities(layers: Sequence[WmsLayer], base_url: str, *, title: str = "cim map services",
                     query: str = "", abstract: str | None = None, max_size: int = MAX_SIZE) -> str:
    """A WMS 1.3.0 GetCapabilities document.

    Args:
        layers: what the caller may see, in drawing order (maps first).
        base_url: the public base URL (no trailing slash).
        query: a query string carried into the operation URLs (`api_key=...` when the key came that way).
        abstract: the service abstract (how to add a key, for anonymous callers).
    """
    for prefix, uri in _NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.Element(f"{{{_NS['']}}}WMS_Capabilities", {
        "version": "1.3.0", f"{{{_NS['xsi']}}}schemaLocation":
            "http://www.opengis.net/wms http://schemas.opengis.net/wms/1.3.0/capabilities_1_3_0.xsd"})
    href = f"{base_url}/wms?{query + '&' if query else ''}"
    service = _el(root, "Service")
    _el(service, "Name", "WMS")
    _el(service, "Title", title)
    if abstract:
        _el(service, "Abstract", abstract)
    _el(service, "OnlineResource", xlink__type="simple", xlink__href=f"{base_url}/wms")
    _el(service, "MaxWidth", str(max_size))
    _el(service, "MaxHeight", str(max_size))
    cap = _el(root, "Capability")
    req = _el(cap, "Request")
    for op, formats in (("GetCapabilities", ["text/xml"]), ("GetMap", list(FORMATS)),
                        ("GetFeatureInfo", list(INFO_FORMATS))):
        o = _el(req, op)
        for f in formats:
            _el(o, "Format", f)
        get = _el(_el(_el(o, "DCPType"), "HTTP"), "Get")
        _el(get, "OnlineResource", xlink__type="simple", xlink__href=href)
    exc = _el(cap, "Exception")
    for f in ("XML", "INIMAGE", "BLANK"):
        _el(exc, f)
    top = _el(cap, "Layer")
    _el(top, "Title", title)
    for crs in WMS_CRS:
        _el(top, "CRS", crs)
    exts = [tuple(x.extent) for x in layers if x.extent]
    if exts:
        _bbox_elements(top, (min(e[0] for e in exts), min(e[1] for e in exts), max(e[2] for e in exts),
                             max(e[3] for e in exts)))
    for lay in layers:
        e = _el(top, "Layer", queryable="1" if lay.queryable else "0", opaque="0")
        _el(e, "Name", lay.name)
        _el(e, "Title", lay.title or lay.name)
        if lay.abstract:
            _el(e, "Abstract", lay.abstract)
        if lay.keywords:
            kw = _el(e, "KeywordList")
            for k in lay.keywords:
                _el(kw, "Keyword", k)
        if lay.extent:
            _bbox_elements(e, lay.extent)
        style = _el(e, "Style")
        _el(style, "Name", "default")
        _el(style, "Title", "as in the viewer")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def exception_report(message: str, code: str | None = None) -> str:
    """A WMS 1.3.0 ServiceExceptionReport."""
    attr = f' code="{html.escape(code)}"' if code else ""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ServiceExceptionReport version="1.3.0" '
            'xmlns="http://www.opengis.net/ogc">\n'
            f"<ServiceException{attr}>{html.escape(message)}</ServiceException>\n</ServiceExceptionReport>\n")


# ------------------------------------------------------------------------------------------------ feature info
InfoFormat = Literal["application/json", "application/geo+json", "text/html", "text/plain"]


def feature_info_point(params: Mapping[str, str], req: MapRequest) -> tuple[float, float, float]:
    """(lon, lat, tolerance in degrees) of a GetFeatureInfo's I/J pixel: 5 pixels around it.

    Raises:
        WmsError: I/J missing or outside the image (InvalidPoint).
    """
    q = _upper(params)
    try:
        i, j = int(q.get("I", q.get("X", ""))), int(q.get("J", q.get("Y", "")))
    except ValueError as exc:
        raise WmsError("GetFeatureInfo needs integer I and J (pixel column and row)", "InvalidPoint") from exc
    if not (0 <= i < req.width and 0 <= j < req.height):
        raise WmsError(f"I={i}, J={j} is outside the {req.width} x {req.height} image", "InvalidPoint")
    x, y = req.pixel_to_crs(i, j)
    lon, lat = _from_crs(req.crs)(np.array([x, x + 5 * req.resolution]), np.array([y, y]))
    return float(lon[0]), float(lat[0]), abs(float(lon[1] - lon[0]))


def features_at(store: Any, layer: str, lon: float, lat: float, tolerance: float, count: int) -> list[dict[str, Any]]:
    """GeoJSON features of `layer` within `tolerance` degrees of (lon, lat), nearest first (polygons that contain
    the point come first, at distance 0)."""
    box = shapely.box(lon - tolerance, lat - tolerance, lon + tolerance, lat + tolerance)
    gdf = store.query(layer, intersects=box, limit=max(count * 20, 50))
    if gdf.empty:
        return []
    point = shapely.Point(lon, lat)
    gdf = gdf.assign(_d=shapely.distance(gdf.geometry.values, point)).sort_values(["_d", "fid"]).head(count)
    out = []
    for _, row in gdf.iterrows():
        props = {k: json_value(v) for k, v in row.items() if k not in ("geometry", "_d", "fid")}
        out.append({"type": "Feature", "id": int(row["fid"]), "layer": layer,
                    "geometry": shapely.geometry.mapping(row.geometry), "properties": props})
    return out


def feature_info_body(features: Sequence[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    """The GetFeatureInfo answer in `fmt` (GeoJSON, an HTML table per layer, or plain text)."""
    import json

    if fmt in ("application/json", "application/geo+json"):
        doc = {"type": "FeatureCollection", "features": list(features)}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(), fmt
    if fmt == "text/plain":
        lines = []
        for f in features:
            lines.append(f"Layer '{f['layer']}' Feature {f['id']}")
            lines += [f"  {k} = {v}" for k, v in f["properties"].items()]
        return ("\n".join(lines) + "\n" if lines else "no features\n").encode(), "text/plain; charset=utf-8"
    rows = []
    for f in features:
        cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in f["properties"].items())
        rows.append(f"<h3>{html.escape(f['layer'])} #{f['id']}</h3><table>{cells}</table>")
    body = "".join(rows) or "<p>no features</p>"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{body}</body></html>').encode(), \
        "text/html; charset=utf-8"


__all__ = ["FORMATS", "INFO_FORMATS", "LAT_FIRST", "MAX_FEATURES", "MAX_SIZE", "WMS_CRS", "MapRequest", "WmsError",
           "WmsLayer", "draw_features", "encode", "exception_report", "feature_info_body", "feature_info_point",
           "features_at", "lonlat_bbox", "parse_map_request", "raster_rgba", "render_map", "wms_capabilities"]
