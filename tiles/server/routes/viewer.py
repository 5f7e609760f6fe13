"""The "one map" viewer: the page at `/` (for browsers), its assets, and the JSON routes it calls
(`/identify`, `/search`). Machines asking `/` for JSON get the OGC API landing page (`core.landing`)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tiles import viewer
from tiles.decoders import DECODERS, decoder_path
from tiles.errors import TileNotFoundError
from tiles.server.deps import Ctx, context
from tiles.server.files import FileEntry
from tiles.server.responses import json_response, tile_response
from tiles.server.routes import core, documents

router = APIRouter(tags=["viewer"])
CtxDep = Annotated[Ctx, Depends(context)]
_assets: dict[str, FileEntry] = {}


def _wants_html(request: Request, f: str | None) -> bool:
    accept = request.headers.get("accept", "")
    return f == "html" or (f != "json" and "text/html" in accept and "json" not in accept)


def page_config(ctx: Ctx, scene: str | None = None) -> dict[str, Any]:
    """The viewer's config for this caller: only the models, maps, layers and scenes the caller may see; with
    `scene`, that scene (404 when the caller may not open it)."""
    catalog = ctx.catalog

    def read(model: str, path: str) -> dict[str, Any]:
        return json.loads(catalog.model_file(model, path, ctx.who).content)

    doc = documents.visible_scene(ctx, scene) if scene else None
    index = catalog.layer_index()
    names = index.names(lambda i: ctx.who.can_see(i.name, i.security, i.theme))
    tree = viewer.tree_page(index, names, ctx.base, docs=catalog.docs)
    if doc and tree["lazy"]:  # the scene's layers come with the page
        tree["layers"] = viewer.tree_page(index, names, ctx.base, ids=[x["id"] for x in doc.get("layers", [])],
                                          docs=catalog.docs)["layers"]
    config = viewer.viewer_config(catalog.describe(ctx.who, ctx.base), read, key_query=ctx.query, base=ctx.base,
                                  tree=tree, scene=doc,
                                  dem_range=lambda name: viewer.dem_height_range(catalog.maps[name].path))
    # whether /flood answers this caller (panels/flood.js asks nothing otherwise: a 404 is a console error)
    config["flood"] = bool(catalog.settings.flood_runs) and ctx.who.can_see("flood", catalog.settings.flood_security)
    return config


@router.get("/", summary="The viewer (browsers) or the OGC API landing page (JSON)", tags=["core"])
def root(request: Request, ctx: CtxDep, f: str | None = None, scene: str | None = None) -> Response:
    if not _wants_html(request, f):
        return core.landing(request, ctx, f)
    page = viewer.render_page(page_config(ctx, scene), ctx.base)
    return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


@router.get("/identify", summary="What every layer the caller may see says at a place")
def identify(ctx: CtxDep, lon: Annotated[float, Query(ge=-180, le=180)],
             lat: Annotated[float, Query(ge=-90, le=90)]) -> Response:
    infos = [ctx.catalog.layer(i.name, ctx.who, "identify", ctx.path, ctx.client)
             for i in ctx.catalog.visible_layers(ctx.who)]
    if ctx.catalog.store is None:
        return json_response({"lon": lon, "lat": lat, "results": []})
    return json_response(viewer.identify(ctx.catalog.store, infos, lon, lat), headers={"Cache-Control": "no-store"})


@router.get("/search", summary="Features whose address, name or code contains the text")
def search(ctx: CtxDep, q: Annotated[str, Query(min_length=1, max_length=200)],
           limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
    infos = [ctx.catalog.layer(i.name, ctx.who, "search", ctx.path, ctx.client)
             for i in ctx.catalog.visible_layers(ctx.who)]
    hits = viewer.search(ctx.catalog.store, infos, q, limit=limit) if ctx.catalog.store is not None else []
    return json_response({"q": q, "results": hits}, headers={"Cache-Control": "no-store"})


@router.get("/viewer/layers", summary="Layer-tree entries: of a theme, matching a filter, or by id")
def tree_layers(ctx: CtxDep, theme: str | None = None, q: Annotated[str | None, Query(max_length=200)] = None,
                # percent-encoded, 1,000 characters stay within the 16 KB request line every HTTP parser of uvicorn
                # accepts (a longer one was answered by the parser itself, in plain text, before the app)
                ids: Annotated[str | None, Query(max_length=1000, description="layer ids, comma-separated "
                                                 "(at most 1,000 characters; ask again for more)")] = None,
                limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Response:
    index = ctx.catalog.layer_index()
    names = index.names(lambda i: ctx.who.can_see(i.name, i.security, i.theme))
    return json_response(viewer.tree_page(index, names, ctx.base, theme=theme, q=q, ids=ids, limit=limit,
                                          docs=ctx.catalog.docs),
                         headers={"Cache-Control": "no-store"})


@router.get("/viewer/versions/{layer}", summary="The versions of a layer, each with its vector tile URL")
def versions(layer: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(layer, ctx.who, "versions", ctx.path, ctx.client)
    assert ctx.catalog.store is not None
    return json_response(viewer.layer_versions(ctx.catalog.store, info, ctx.base), headers={"Cache-Control": "no-store"})


@router.get("/viewer/coords", summary="A place in CGCS2000, in the first model's CRS, and the DEM height there")
def coords(ctx: CtxDep, lon: Annotated[float, Query(ge=-180, le=180)],
           lat: Annotated[float, Query(ge=-90, le=90)]) -> Response:
    model = next(iter(ctx.catalog.visible_models(ctx.who)), None)
    return json_response(viewer.coordinates(lon, lat, crs=model.crs if model else None,
                                            dem=model.dem if model else None), headers={"Cache-Control": "no-store"})


# the asset routes come last: `/viewer/{name}` would otherwise answer for /viewer/layers, /viewer/coords
def _asset(name: str) -> FileEntry:
    entry = _assets.get(name)
    if entry is None:
        if name == "deck.js":
            path, media = viewer.deck_bundle(), "text/javascript; charset=utf-8"
        elif name.startswith("decoders/"):
            found_decoder = decoder_path(name.removeprefix("decoders/"))
            if found_decoder is None:
                raise TileNotFoundError(f"decoder {name.removeprefix('decoders/')!r} is not installed: run bin/setup "
                                        f"(npm @loaders.gl/draco, @loaders.gl/textures) or set CIM_DECODERS")
            path, media = found_decoder, DECODERS[name.removeprefix("decoders/")].media_type
        elif (found := viewer.asset_path(name)) is not None:
            path, media = found
        else:
            raise TileNotFoundError(f"the viewer has no asset {name!r}")
        content = path.read_bytes()
        import gzip

        etag = '"' + hashlib.blake2b(content, digest_size=12).hexdigest() + '"'
        entry = _assets[name] = FileEntry(content, gzip.compress(content, 6, mtime=0), etag, media)
    return entry


@router.get("/viewer/{name}", summary="The viewer's scripts, style sheets and the deck.gl bundle of pydeck")
def asset(name: str, request: Request) -> Response:
    e = _asset(name)
    return tile_response(request, e.content, e.media_type, e.etag, "public, max-age=300", gzipped=e.gzipped)


@router.get("/viewer/panels/{name}", summary="A panel's script or style sheet (tiles/static/viewer/panels/)")
def panel_asset(name: str, request: Request) -> Response:
    e = _asset(f"panels/{name}")
    return tile_response(request, e.content, e.media_type, e.etag, "public, max-age=300", gzipped=e.gzipped)


@router.get("/viewer/decoders/{name}", summary="A decoder the viewer's deck.gl needs for Draco geometry or KTX2 "
            "textures (tiles.decoders), from this host")
def decoder(name: str, request: Request) -> Response:
    e = _asset(f"decoders/{name}")
    return tile_response(request, e.content, e.media_type, e.etag, "public, max-age=86400", gzipped=e.gzipped)
