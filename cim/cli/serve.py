"""`cim serve`, `cim keys ...` and `cim view`: the tile services (tiles/server) and the viewer page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cim.cli.options import JsonOpt, OverwriteOpt, StoreOpt, emit


def serve_cmd(
    store: StoreOpt = None,
    models: Annotated[Optional[list[str]], typer.Option(
        "--models", help="A `cim build` output to publish as 3D Tiles: DIR or NAME=DIR (repeatable).")] = None,
    maps: Annotated[Optional[list[str]], typer.Option(
        "--map", help="A COG to publish as raster tiles (ortho or DEM): FILE or NAME=FILE (repeatable).")] = None,
    restrict: Annotated[Optional[list[str]], typer.Option(
        "--restrict", help="NAME=LEVEL: security level of a model or map (default public; repeatable).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    public_url: Annotated[Optional[str], typer.Option("--public-url", help="Base URL clients see (behind a proxy).")
                          ] = None,
    ingest: Annotated[bool, typer.Option("--ingest", help="Open the store read-write and take SensorThings writes "
                                                          "(this server becomes the store's only writer).")] = False,
    mqtt: Annotated[Optional[str], typer.Option("--mqtt", help="Subscribe to this MQTT broker (HOST:PORT) for "
                                                               "observations; implies --ingest.")] = None,
    mqtt_client_id: Annotated[Optional[str], typer.Option("--mqtt-client-id", help="MQTT client id (a persistent "
                                                                                   "session; default cim-serve).")
                              ] = None,
    flood: Annotated[Optional[Path], typer.Option("--flood", help="A folder of flood runs (`cim analyze flood` "
                                                                  "outputs) to publish; new runs go there.")] = None,
) -> None:
    """Serve the models, maps and layers over HTTP: 3D Tiles, XYZ/WMTS, MVT, OGC API - Features, SensorThings
    (docs/http-api.md; --ingest/--mqtt: docs/sensing.md)."""
    from tiles.server import ServerSettings, serve
    from tiles.server.settings import named_paths

    base = ServerSettings()
    settings = base.model_copy(update={
        "store": store if store is not None else base.store, "host": host, "port": port,
        "public_url": public_url or base.public_url,
        "models": {**base.models, **named_paths(models or [], "--models")},
        "maps": {**base.maps, **named_paths(maps or [], "--map")},
        "security": {**base.security, **{k: str(v) for k, v in named_paths(restrict or [], "--restrict").items()}},
        "ingest": ingest or base.ingest, "mqtt": mqtt or base.mqtt,
        "mqtt_client_id": mqtt_client_id or base.mqtt_client_id,
        "flood_runs": flood if flood is not None else base.flood_runs,
    })
    serve(settings)  # uvicorn logs the address once the catalogue is open and the port bound


keys_app = typer.Typer(help="API keys of `cim serve` (stored hashed beside the store) and its audit log.",
                       no_args_is_help=True)


def _access(store: Optional[Path]) -> Any:
    from layers import default_store_path
    from tiles.server.auth import AccessStore, access_path

    return AccessStore(access_path(store or default_store_path()))


@keys_app.command("create")
def keys_create_cmd(
    scope: Annotated[str, typer.Option("--scope", help="internal, confidential, layer:NAME, theme:PATH; "
                                                       "comma-separated.")],
    label: Annotated[str, typer.Option("--label", help="Who or what the key is for.")] = "",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; its secret is printed once and only its hash is kept."""
    with _access(store) as acc:
        k = acc.create(scope, label)
    emit(k, as_json, f"key {k.id} ({','.join(k.scope)}): {k.key}\nsend it as X-API-Key; it is not shown again")


@keys_app.command("revoke")
def keys_revoke_cmd(
    key_id: Annotated[str, typer.Argument(help="The key's id (or the whole key).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an API key (a running server refuses it from the next request)."""
    with _access(store) as acc:
        k = acc.revoke(key_id)
    emit(k, as_json, f"revoked key {k.id} ({','.join(k.scope)})")


@keys_app.command("list")
def keys_list_cmd(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (never their secrets)."""
    with _access(store) as acc:
        keys = acc.list()
    emit([k.to_dict() for k in keys], as_json, "\n".join(
        f"{k.id}  {','.join(k.scope):<30} {k.created_at:%Y-%m-%d %H:%M}  "
        f"{'revoked ' + format(k.revoked_at, '%Y-%m-%d %H:%M') if k.revoked_at else 'active'}  {k.label}"
        for k in keys) or "no keys")


@keys_app.command("audit")
def keys_audit_cmd(
    layer: Annotated[Optional[str], typer.Option("--layer", help="Only accesses to this layer.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many records, newest first.")] = 50,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log of accesses to confidential layers."""
    with _access(store) as acc:
        log = acc.audit_log(layer, limit)
    emit([r.to_dict() for r in log], as_json, "\n".join(
        f"{r.at:%Y-%m-%d %H:%M:%S}  {r.key_id or '-':<8} {r.layer:<20} {r.action:<10} {r.client or '-':<15} {r.path}"
        for r in log) or "no accesses recorded")



def view_cmd(
    html_out: Annotated[Path, typer.Option("--html", help="Write the viewer page to this file.")],
    server: Annotated[str, typer.Option("--server", help="Base URL of a running `cim serve`.")
                      ] = "http://127.0.0.1:8000",
    api_key: Annotated[Optional[str], typer.Option("--api-key", help="A key of that server; written into the "
                                                   "page's URLs.", envvar="CIM_API_KEY")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a viewer page (HTML) that shows what a running server publishes (docs/viewer.md)."""
    from tiles.viewer import write_viewer_html

    out = write_viewer_html(html_out, server, api_key=api_key, overwrite=overwrite)
    emit({"html": str(out), "server": server}, as_json, f"wrote {out} (open it while {server} runs)")
