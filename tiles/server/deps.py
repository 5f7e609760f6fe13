"""What every route needs: the catalogue, the caller (from an API key) and the public base URL."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request

from tiles.server.auth import Principal
from tiles.server.catalog import ServiceCatalog

KEY_HEADER = "x-api-key"
KEY_PARAM = "api_key"


@dataclass(frozen=True)
class Ctx:
    """One request's context.

    Attributes:
        catalog: the service catalogue.
        who: the caller.
        base: public base URL, no trailing slash.
        query: `api_key=...` when the caller passed its key in the URL (carried into links), else "".
        path: the request path with the key removed (for the audit log).
        client: the client address.
    """

    catalog: ServiceCatalog
    who: Principal
    base: str
    query: str
    path: str
    client: str | None


def presented_key(request: Request) -> str | None:
    """The API key of a request: `X-API-Key`, `Authorization: Bearer ...`, `Authorization: Basic` with the key as
    the password (for clients that only speak Basic, such as FROST's SensorThings client), or the `api_key` query
    parameter."""
    key = request.headers.get(KEY_HEADER)
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if auth[:6].lower() == "basic ":
        try:
            _, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return auth  # not Basic credentials: refused as a malformed key
        return password or auth
    return request.query_params.get(KEY_PARAM) or None


def context(request: Request) -> Ctx:
    """FastAPI dependency: resolve the caller (raises `InvalidKeyError` for a bad key) and the base URL."""
    catalog: ServiceCatalog = request.app.state.catalog
    who = catalog.authenticate(presented_key(request))
    base = catalog.settings.public_url or str(request.base_url)
    in_url = request.query_params.get(KEY_PARAM)
    return Ctx(catalog, who, base.rstrip("/"), urlencode({KEY_PARAM: in_url}) if in_url else "",
               request.url.path, request.client.host if request.client else None)
