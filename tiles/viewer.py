"""The "one map" viewer: the layer tree of everything a caller may see, rendered by our own page.

The page (`tiles/static/viewer/`, see docs/viewer.md) loads the deck.gl bundle that ships in the pydeck wheel from
the server (`/viewer/deck.js`, read from the installed package at run time) and its own modules, and makes one
deck.gl layer per tree entry made here, so the browser talks to the server's host only. Layers, bottom to top:

    maps (orthophoto XYZ tiles)  ->  terrain parts of the models (3D Tiles)  ->  flat vector layers (MVT)
        ->  building / oblique parts of the models (3D Tiles)  ->  extruded vector layers (MVT, by a height field)

3D Tiles carry ellipsoidal heights (about 1,100 m in the sample city) while map and vector tiles have none: flat
layers are drawn at the terrain's mid height (`ground`) without writing depth, so they lie on the terrain in 2D and
under the buildings in 3D.

Library functions behind the page's JSON routes: `identify(store, layers, lon, lat)` (what every visible layer says
at a place) and `search(store, layers, text)` (addresses and names).

    >>> from tiles.viewer import write_viewer_html
    >>> write_viewer_html("city.html", "http://127.0.0.1:8000", api_key=None)   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from cim.errors import OutputExistsError
from cim.files import user_path
from layers.values import json_value
from tiles.decoders import available_decoders
from tiles.errors import TileRequestError, TilesError
from tiles.layertree import INITIALLY_VISIBLE_MAX, TOP_THEMES, LayerIndex

ReadJson = Callable[[str, str], dict[str, Any]]  # (model name, path inside the model) -> parsed JSON

STATIC_DIR = Path(__file__).resolve().parent / "static" / "viewer"
CORE_SCRIPTS = ("core.js", "mvt.js", "terrain.js", "layers.js", "map.js", "identify.js", "picking.js", "search.js",
                "measure.js", "compare.js", "thematic.js", "scenes.js", "tools3d.js", "section.js", "tree.js")
SEARCH_FIELDS = ("address", "name", "code", "zone_code", "shelter_id", "sensor_id", "hazard_id")


def deck_bundle() -> Path:
    """The deck.gl bundle of the installed pydeck wheel (`pydeck/nbextension/static/index.js`, defines `createDeck`).

    Raises:
        TilesError: pydeck is installed without its bundle.
    """
    path = Path(str(resources.files("pydeck"))) / "nbextension" / "static" / "index.js"
    if not path.is_file():
        raise TilesError(f"{path} is missing: reinstall pydeck (pip install --force-reinstall pydeck>=0.9)")
    return path


def _with_key(url: str, key_query: str) -> str:
    return url if not key_query else url + ("&" if "?" in url else "?") + key_query


def theme_titles() -> dict[str, dict[str, str]]:
    """Titles of the tree's groups: base maps, 3D models and the CIM catalogue's top-level themes (zh / en)."""
    from layers.themes import builtin

    reg = builtin()
    out = {"maps": {"zh": "底图", "en": "Base maps"}, "models": {"zh": "三维模型", "en": "3D city models"}}
    for t in TOP_THEMES:
        theme = reg.get(t)
        out[t] = {"zh": theme.zh, "en": theme.en}
    out["other"] = {"zh": "其他", "en": "Other"}
    return out


def model_parts(root: dict[str, Any]) -> list[str]:
    """The layer tilesets a `cim build` root references (`terrain`, `buildings`, `oblique`), or `[""]` when the
    root holds content of its own."""
    parts = []
    for child in root.get("root", {}).get("children") or []:
        uri = (child.get("content") or {}).get("uri", "")
        if uri.endswith("/tileset.json") and uri.count("/") == 1:
            parts.append(uri.split("/", 1)[0])
    return parts or [""]


def _region_heights(doc: dict[str, Any]) -> tuple[float, float] | None:
    region = (doc.get("root", {}).get("boundingVolume") or {}).get("region")
    return (float(region[4]), float(region[5])) if isinstance(region, list) and len(region) == 6 else None


def ground_height(read: ReadJson, model: str, parts: Sequence[str]) -> float:
    """Mid height of a model's terrain (metres): where flat layers are drawn so they meet the 3D Tiles."""
    for part in ([p for p in parts if p == "terrain"] or list(parts)):
        heights = _region_heights(read(model, f"{part}/tileset.json" if part else "tileset.json"))
        if heights is not None:
            return round((heights[0] + heights[1]) / 2, 1)
    return 0.0


def _home(catalog: dict[str, Any]) -> list[float] | None:
    boxes = [x["extent"] for group in ("models", "maps", "layers") for x in catalog.get(group, []) if x.get("extent")]
    if not boxes:
        return None
    b = np.array(boxes, dtype=float)
    return [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())]


def home_view(extent: Sequence[float] | None, width: int = 1000, height: int = 700) -> dict[str, float]:
    """A top-down view state that fits `extent` (lon/lat) in a `width` x `height` px map."""
    if not extent:
        return {"longitude": 113.3, "latitude": 40.09, "zoom": 14.0, "pitch": 0.0, "bearing": 0.0}
    lon = (extent[0] + extent[2]) / 2
    lat = (extent[1] + extent[3]) / 2
    span_x = max(extent[2] - extent[0], 1e-6) / 360
    y0, y1 = (math.log(math.tan(math.pi / 4 + math.radians(v) / 2)) for v in (extent[1], extent[3]))
    span_y = max(y1 - y0, 1e-9) / (2 * math.pi)
    zoom = min(math.log2(width / 512 / span_x), math.log2(height / 512 / span_y))
    return {"longitude": lon, "latitude": lat, "zoom": round(zoom, 2), "pitch": 0.0, "bearing": 0.0}


INLINE_LAYERS = 200  # a caller who sees at most this many layers gets them all in the page; more load by theme


def tree_page(index: LayerIndex, names: Sequence[str], base: str, *, theme: str | None = None,
              q: str | None = None, ids: str | Sequence[str] | None = None, limit: int = 500,
              docs: Any = None) -> dict[str, Any]:
    """Layer-tree entries for the page (the library function behind `/viewer/layers`).

    Without `theme`, `q` or `ids`: the start of the tree: every theme with its layer count and, when the caller sees
    at most `INLINE_LAYERS` layers, every entry (else none: the page loads a theme's layers when it is opened).

    Args:
        index: the server's layer index.
        names: the layers the caller may see (`LayerIndex.names`).
        base: the server's base URL.
        theme: the layers of this theme path and below.
        q: the layers matching this filter (title, name, department, theme, pinyin or its initials).
        ids: these layers (tree ids `layer:NAME` or names, comma-separated or a list); unknown ones are skipped.
        limit: at most this many entries.
        docs: the store's `DocumentStore`: entries carry their layer's stored style (`style`, else null).

    Returns:
        `{"total", "matched", "lazy", "themes", "layers": [entry...]}`.
    """
    lazy = len(names) > INLINE_LAYERS
    start_visible = len(names) <= INITIALLY_VISIBLE_MAX
    if ids is not None:
        wanted = [i.removeprefix("layer:") for i in (ids.split(",") if isinstance(ids, str) else ids) if i]
        allowed = set(names)
        chosen = [n for n in dict.fromkeys(wanted) if n in allowed]
    elif theme is not None or q:
        chosen = list(names)
        if theme is not None:
            chosen = index.in_theme(chosen, theme)
        if q:
            chosen = index.match(chosen, q)
    else:
        chosen = [] if lazy else list(names)
    return {"total": len(names), "matched": len(chosen), "lazy": lazy,
            "themes": index.themes_of(names) if theme is None and not q and ids is None else [],
            "layers": index.entries(chosen[:limit], base, visible_default=start_visible,
                                    styles=docs.styles(chosen[:limit]) if docs is not None else None)}


def layer_versions(store: Any, info: Any, base: str) -> dict[str, Any]:
    """The versions of a layer with a vector tile URL each (the current one is also `/tiles/{name}/...`)."""
    rows = store.history(info.name)
    return {"layer": info.name, "title": info.title, "current": info.version,
            "versions": [{"version": v.version, "operation": v.operation, "note": v.note,
                          "created_at": v.created_at.isoformat(), "feature_count": v.feature_count,
                          "current": v.current,
                          "tiles": f"{base}/tiles/{info.name}/v{v.version}/{{z}}/{{x}}/{{y}}.mvt"} for v in rows]}


def viewer_config(catalog: dict[str, Any], read: ReadJson, *, key_query: str = "", base: str = "",
                  tree: dict[str, Any] | None = None, scene: dict[str, Any] | None = None,
                  dem_range: Callable[[str], tuple[float, float] | None] | None = None) -> dict[str, Any]:
    """Everything the page needs: the layer tree's start (models, maps, the themes with counts and the layers
    `tree_page` gives), the home view, the routes and, when one is opened, the scene.

    Args:
        catalog: a `/catalog` document (only what the caller may see).
        read: reads a JSON file of a model, for its layer tilesets and terrain height.
        key_query: `api_key=...` that the page appends to every URL when the caller passed its key in the page's URL.
        base: the server's base URL (no trailing slash).
        tree: `tree_page(...)` of the caller (default: no store layers).
        scene: a scene document to open (`layers.scenes.Scene.to_dict()`).
        dem_range: the lowest and highest valid height of a DEM map by name (`dem_height_range` of its file). Its
            middle is the page's ground when no model gives one, so the camera turns around the draped layers, not
            1,000 m under them; as the terrain's `range` it lets the page tell the DEM's nodata (encoded 0 m) from
            real heights.
    """
    tree = tree or {"total": 0, "matched": 0, "lazy": False, "themes": [], "layers": []}
    entries: list[dict[str, Any]] = []
    ground = 0.0
    first_model = True
    for m in catalog.get("models", []):
        parts = model_parts(read(m["name"], "tileset.json"))
        if first_model:
            ground = ground_height(read, m["name"], parts)
        for part in parts:
            url = m["urls"]["tileset"] if not part else m["urls"]["tileset"].replace("/tileset.json",
                                                                                      f"/{part}/tileset.json")
            entries.append({"id": f"model:{m['name']}:{part or 'all'}", "kind": "3dtiles", "name": m["name"],
                            "part": part or "all", "title": f"{m['title']} {part}".strip(), "group": "models",
                            "security": m["security"], "visible": first_model, "url": url})
        first_model = False
    first_map = True
    for mp in catalog.get("maps", []):
        if mp["kind"] != "image":
            continue  # DEMs come into the picture as the models' terrain and under the flat layers (terrain_config)
        fmt = "png" if "png" in mp.get("formats", []) else mp["formats"][0]  # PNG keeps the mask as alpha
        entries.append({"id": f"map:{mp['name']}", "kind": "map", "name": mp["name"], "title": mp["title"],
                        "group": "maps", "security": mp["security"], "visible": first_map,
                        "extent": mp.get("extent"), "url": f"{base}/maps/{mp['name']}/{{z}}/{{x}}/{{y}}.{fmt}"})
        first_map = False
    extent = _home(catalog)
    first = catalog["models"][0]["name"] if catalog.get("models") else None
    terrain = terrain_config(catalog.get("maps", []), base, model=first)
    if terrain is not None and dem_range is not None:
        span = dem_range(terrain["name"])
        terrain["range"] = list(span) if span is not None else None
        if first is None and span is not None:
            ground = round((span[0] + span[1]) / 2 + terrain["offset"], 1)
    return {"title": catalog.get("title", "cim"), "base": base, "key_query": key_query, "ground": ground,
            "home": {**home_view(extent), "maxPitch": 85}, "extent": extent, "terrain": terrain,
            "tree": entries + tree["layers"], "themes": tree["themes"], "layer_total": tree["total"],
            "lazy": tree["lazy"], "groups": theme_titles(), "scenes": catalog.get("scenes", []), "scene": scene,
            "routes": {"identify": f"{base}/identify", "search": f"{base}/search", "catalog": f"{base}/catalog",
                       "layers": f"{base}/viewer/layers", "versions": f"{base}/viewer/versions",
                       "styles": f"{base}/viewer/styles", "scenes": f"{base}/viewer/scenes",
                       "annotations": f"{base}/viewer/annotations", "coords": f"{base}/viewer/coords",
                       # standard addresses (tiles/static/viewer/panels/addresses.js)
                       "geocode": f"{base}/geocode", "suggest": f"{base}/geocode/suggest",
                       "reverse": f"{base}/reverse"},
            # the decoders this server has (tiles.decoders): layers.js points loaders.gl at them
            "decoders": {name: f"{base}/viewer/decoders/{name}" for name in available_decoders()}}


def terrain_config(maps: Sequence[dict[str, Any]], base: str, *, model: str | None = None) -> dict[str, Any] | None:
    """The DEM the page drapes flat layers on (tiles/static/viewer/terrain.js), or None when no DEM is served.

    The first model's own DEM (`<model>_dem`) when the caller sees it, else the first DEM map. Its Terrain-RGB tiles
    carry the DEM's own heights; `offset` (metres) makes them ellipsoidal like the 3D Tiles: the EGM96 undulation at
    the DEM's centre when the model was built with `--vertical-datum egm96` (it varies by centimetres across a city),
    0 for ellipsoidal DEMs.

    Args:
        maps: the `maps` of a `/catalog` document.
        base: the server's base URL.
        model: the first model's name.

    Returns:
        `{"name", "url", "minzoom", "maxzoom", "extent", "vertical_datum", "offset", "range"}`; `range` (the DEM's
        lowest and highest valid height, metres) is None here: `viewer_config` fills it from the DEM file.
    """
    dems = [m for m in maps if m["kind"] == "dem"]
    if not dems:
        return None
    mp = next((m for m in dems if model and m["name"] == f"{model}_dem"), dems[0])
    fmt = "png" if "png" in mp.get("formats", []) else mp["formats"][0]  # lossless either way
    datum = mp.get("vertical_datum") or "ellipsoidal"
    extent = mp.get("extent")
    offset = 0.0
    if datum == "egm96" and extent:
        offset = _undulation("egm96", (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2)
    return {"name": mp["name"], "url": f"{base}/maps/{mp['name']}/{{z}}/{{x}}/{{y}}.{fmt}",
            "minzoom": int(mp.get("minzoom", 0)), "maxzoom": int(mp.get("maxzoom", 16)), "extent": extent,
            "vertical_datum": datum, "offset": offset, "range": None}


def dem_mid_height(path: str | os.PathLike[str]) -> float | None:
    """The mid height of a DEM (metres, between its lowest and highest valid cell, read from its smallest overview),
    or None when it has no valid cell. Cached per file and modification time."""
    span = dem_height_range(path)
    return None if span is None else (span[0] + span[1]) / 2


def dem_height_range(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """The lowest and highest valid height of a DEM (metres, read from a reduced copy of at most ~256 px a side:
    a cell's extreme can be missed by the reduction), or None when it has no valid cell. Cached per file and
    modification time."""
    p = Path(path)
    return _dem_height_range(str(p), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _dem_height_range(path: str, mtime_ns: int) -> tuple[float, float] | None:
    import rasterio

    with rasterio.open(path) as src:
        scale = max(1, max(src.width, src.height) // 256)
        a = src.read(1, out_shape=(max(1, src.height // scale), max(1, src.width // scale)), masked=True)
    valid = np.ma.compressed(a).astype(np.float64)
    valid = valid[np.isfinite(valid)]
    return None if not valid.size else (float(valid.min()), float(valid.max()))


@functools.lru_cache(maxsize=64)
def _undulation(datum: str, lon: float, lat: float) -> float:
    from cim.sources.vertical import VerticalDatum

    return round(float(VerticalDatum.parse(datum).undulation(np.array([lon]), np.array([lat]))[0]), 3)


def coordinates(lon: float, lat: float, *, crs: str | None = None, dem: str | os.PathLike[str] | None = None
                ) -> dict[str, Any]:
    """A place in CGCS2000 (lon/lat degrees), in a model's CRS (x east / y north, through `cim.sources.crs`) and the height
    of the model's DEM there (bilinear between the four nearest cell centres, metres), for the viewer's readout.

    Returns:
        `{"lon", "lat", "crs": "EPSG:4490", "model": {"crs", "epsg", "x", "y"} | None, "ground_m": float | None}`.

    Raises:
        TileRequestError: lon/lat outside the globe or a CRS that cannot be read.
    """
    from cim.sources.crs import parse_crs, transformer

    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise TileRequestError(f"lon={lon}, lat={lat} is not a place on the globe")
    out: dict[str, Any] = {"lon": lon, "lat": lat, "crs": "EPSG:4490", "model": None, "ground_m": None}
    if crs:
        try:
            target = parse_crs(crs)
        except Exception as exc:  # noqa: BLE001 (any unreadable CRS text is the caller's input problem)
            raise TileRequestError(f"the model's CRS {crs!r} cannot be read ({exc})") from exc
        x, y = transformer("EPSG:4490", target).transform(lon, lat)
        if math.isfinite(x) and math.isfinite(y):  # far outside a projection's zone PROJ answers inf
            out["model"] = {"crs": target.name, "epsg": target.to_epsg(), "x": round(x, 4), "y": round(y, 4)}
    if dem is not None:
        out["ground_m"] = _dem_height(Path(dem), lon, lat)
    return out


def _dem_height(path: Path, lon: float, lat: float) -> float | None:
    import rasterio
    from rasterio.windows import Window

    from cim.sources.crs import transformer

    with rasterio.open(path) as src:
        if src.crs is None:
            return None
        x, y = transformer("EPSG:4490", src.crs).transform(lon, lat)
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        col, row = ~src.transform * (x, y)
        c0, r0 = math.floor(col - 0.5), math.floor(row - 0.5)  # cell centres are at +0.5
        if c0 < 0 or r0 < 0 or c0 + 1 >= src.width or r0 + 1 >= src.height:
            return None
        a = src.read(1, window=Window(c0, r0, 2, 2), masked=True).astype(np.float64)
        if np.ma.is_masked(a) and a.mask.any():
            return None
        fx, fy = col - 0.5 - c0, row - 0.5 - r0
        h = (a[0, 0] * (1 - fx) * (1 - fy) + a[0, 1] * fx * (1 - fy) + a[1, 0] * (1 - fx) * fy + a[1, 1] * fx * fy)
        return round(float(h), 3)


def scripts() -> list[str]:
    """The page's scripts in load order: the core modules, then every panel (`panels/*.js`, by name), then
    `viewer.js`, which starts them. A panel is added by dropping its file there (docs/viewer.md)."""
    panels = sorted(p.name for p in (STATIC_DIR / "panels").glob("*.js"))
    return [*CORE_SCRIPTS, *(f"panels/{n}" for n in panels), "viewer.js"]


def stylesheets() -> list[str]:
    """`viewer.css`, then every panel's own style sheet (`panels/*.css`)."""
    return ["viewer.css", *(f"panels/{p.name}" for p in sorted((STATIC_DIR / "panels").glob("*.css")))]


def asset_path(name: str) -> tuple[Path, str] | None:
    """The file and media type of a page asset by its URL name (`map.js`, `panels/sensors.js`), or None: names
    resolve through the lists above only, never as paths."""
    if name in scripts():
        return STATIC_DIR / name, "text/javascript; charset=utf-8"
    if name in stylesheets():
        return STATIC_DIR / name, "text/css; charset=utf-8"
    return None


def _asset_version(name: str) -> str:
    path = STATIC_DIR / name
    st = path.stat()
    return f"{st.st_mtime_ns:x}{st.st_size:x}"


def render_page(config: dict[str, Any], asset_base: str = "") -> str:
    """The viewer page: our page shell, the config as JSON, the deck.gl bundle and the viewer's script."""
    doc = json.dumps(config, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(config.get("title", "cim"))
    links = "\n".join(f'<link rel="stylesheet" href="{asset_base}/viewer/{n}?v={_asset_version(n)}">'
                      for n in stylesheets())
    tags = "\n".join(f'<script src="{asset_base}/viewer/{n}?v={_asset_version(n)}"></script>' for n in scripts())
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
{links}
</head>
<body>
<div id="map"></div>
<aside id="panel"></aside>
<section id="info" hidden></section>
<div id="status" role="status"></div>
<script id="cim-config" type="application/json">{doc}</script>
<script src="{asset_base}/viewer/deck.js"></script>
{tags}
</body>
</html>
"""


def _http_json(url: str, api_key: str | None) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json",
                                               **({"X-API-Key": api_key} if api_key else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (the user's own server URL)
            return json.loads(r.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TileRequestError(f"cannot read {url} ({exc}); is `cim serve` running there?") from exc


def write_viewer_html(out: str | os.PathLike[str], server: str, *, api_key: str | None = None,
                      overwrite: bool = False) -> Path:
    """Write a viewer page that shows what a running server publishes (the library function behind
    `cim view --html OUT`). The page loads everything from `server`; `api_key` is written into its URLs.

    Raises:
        OutputExistsError: `out` exists, without `overwrite`.
        TileRequestError: the server cannot be reached.
    """
    out = user_path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    base = server.rstrip("/")
    catalog = _http_json(f"{base}/catalog", api_key)
    key_query = urllib.parse.urlencode({"api_key": api_key}) if api_key else ""
    urls = {m["name"]: m["urls"]["tileset"].rsplit("/", 1)[0] for m in catalog.get("models", [])}

    def read(model: str, path: str) -> dict[str, Any]:
        return _http_json(f"{urls[model]}/{path}", api_key)

    tree = _http_json(f"{base}/viewer/layers", api_key)
    config = viewer_config(catalog, read, key_query=key_query, base=base, tree=tree)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(config, base), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------- identify & search
def _props(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json_value(v) for k, v in row.items() if k not in ("geom", "geometry", "distance_m")}


def identify(store: Any, layers: Sequence[Any], lon: float, lat: float, *, radius_m: float = 30.0
             ) -> dict[str, Any]:
    """What the given layers say at a place: the polygons that contain it (a building, its community, the
    height-control zone), the nearest feature of every point layer (the nearest shelter, with its distance) and the
    lines within `radius_m`.

    Args:
        store: an open `layers.LayerStore`.
        layers: `LayerInfo` of the layers the caller may see.
        lon, lat: the place (CGCS2000 / WGS 84 degrees).
        radius_m: how near a line must be to count.

    Returns:
        `{"lon", "lat", "results": [{"layer", "title", "theme", "relation", "distance_m", "properties"}]}`,
        containing polygons first (smallest first, so the building comes before its community).

    Raises:
        TileRequestError: lon/lat outside the globe.
    """
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise TileRequestError(f"lon={lon}, lat={lat} is not a place on the globe")
    point = shapely.Point(lon, lat)
    inside: list[tuple[float, dict[str, Any]]] = []
    near: list[dict[str, Any]] = []
    for info in layers:
        base = {"layer": info.name, "title": info.title, "theme": info.theme, "security": info.security}
        gtype = info.geometry_type.upper()
        if "POLYGON" in gtype:
            gdf = store.query(info.name, intersects=point, limit=10)
            for _, row in gdf.iterrows():
                inside.append((float(row.geometry.area), {**base, "relation": "contains", "distance_m": 0.0,
                                                           "properties": _props(row.to_dict())}))
        else:
            gdf = store.query(info.name, near=(lon, lat), k=1)
            if gdf.empty:
                continue
            row = gdf.iloc[0]
            dist = float(row["distance_m"])
            if "LINE" in gtype and dist > radius_m:
                continue
            near.append({**base, "relation": "nearest", "distance_m": round(dist, 1),
                         "properties": _props(row.to_dict())})
    inside.sort(key=lambda t: t[0])
    near.sort(key=lambda r: r["distance_m"])
    return {"lon": lon, "lat": lat, "results": [r for _, r in inside] + near}


def search(store: Any, layers: Sequence[Any], text: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Features whose address, name or code contains `text` (case-insensitive), best matches first.

    Returns:
        `[{"layer", "title", "fid", "label", "field", "lon", "lat", "bbox"}]`; lon/lat is a point on the feature.

    Raises:
        TileRequestError: empty text.
    """
    from layers.budget import bounded
    from layers.store import quote

    text = text.strip()
    if not text:
        raise TileRequestError("search text is empty; pass q=<address or name>")
    hits: list[tuple[int, dict[str, Any]]] = []
    cur = store.cursor()
    try:
        for info in layers:
            names = {f.name.casefold(): f.name for f in info.fields if f.type.upper() == "VARCHAR"}
            cols = [names[f] for f in SEARCH_FIELDS if f in names]
            if not cols:
                continue
            label_col = next((names[f] for f in ("name", "address", "code") if f in names), cols[0])
            # a substring test, not a pattern: `%` and `_` in the text are plain characters, and the work per row is
            # linear (DuckDB's ILIKE backtracks on crafted wildcards)
            match = " OR ".join(f"contains(lower({quote(c)}), ?)" for c in cols)
            rank = " + ".join(f"CASE WHEN {quote(c)} = ? THEN 0 ELSE 1 END" for c in cols)
            sql = (f"SELECT fid, {quote(label_col)}, {', '.join(quote(c) for c in cols)}, "
                   f"ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)), ST_XMin(geom), ST_YMin(geom), "
                   f"ST_XMax(geom), ST_YMax(geom), {rank} AS r FROM {store.table_name(info.name)} "
                   f"WHERE {match} ORDER BY r, length({quote(label_col)}), fid LIMIT ?")
            with bounded(cur, "the search"):
                rows = cur.execute(sql, [*([text] * len(cols)), *([text.lower()] * len(cols)), limit]).fetchall()
            for row in rows:
                values = dict(zip(cols, row[2:2 + len(cols)], strict=True))
                field = next((c for c in cols if values[c] and text.casefold() in str(values[c]).casefold()), cols[0])
                x, y, x0, y0, x1, y1, r = row[2 + len(cols):]
                hits.append((r, {"layer": info.name, "title": info.title, "fid": row[0], "label": row[1],
                                 "field": field, "value": values[field], "lon": x, "lat": y,
                                 "bbox": [x0, y0, x1, y1]}))
    finally:
        cur.close()
    hits.sort(key=lambda t: (t[0], len(str(t[1]["value"] or ""))))
    return [h for _, h in hits[:limit]]


__all__ = ["INLINE_LAYERS", "asset_path", "coordinates", "deck_bundle", "dem_height_range", "dem_mid_height",
           "home_view", "identify",
           "layer_versions", "model_parts", "render_page", "scripts", "search", "stylesheets", "terrain_config",
           "theme_titles", "tree_page", "viewer_config", "write_viewer_html"]
