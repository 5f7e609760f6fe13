"""What every route needs: the catalogue, the caller (from an API key) and the public base URL."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import Request

from tiles.errors import InvalidKeyError
from tiles.server.auth import Principal
from tiles.server.catalog import ServiceCatalog

KEY_HEADER = "x-api-key"
KEY_PARAM = "api_key"
HINT_HEADER = "X-Cim-Hint"  # a sentence a client can show: why a response is empty or 404, and what to do
HEAD_SCOPE_KEY = "cim.head"  # in the ASGI scope of a HEAD request, which routes receive as a GET


def header_text(text: str) -> str:
    """Any text as a header value: printable ASCII kept, every other character (non-Latin text a client sent,
    control characters) as a Python escape (`\\u0e01`, `\\n`), since a header cannot carry it (and must not
    carry a line break)."""
    return "".join(c if " " <= c < "\x7f" else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True)
class Ctx:
    """One request's context.

    Attributes:
        catalog: the service catalogue.
        who: the caller.
        base: public base URL, no trailing slash.
        query: `api_key=...` when the caller passed its key in the URL (carried into every link we write), else ""
            (a key sent in a header, `X-API-Key`, Bearer or Basic, is sent again by the client with every request).
        path: the request path with the key removed (for the audit log).
        client: the client address.
    """

    catalog: ServiceCatalog
    who: Principal
    base: str
    query: str
    path: str
    client: str | None


def basic_key(value: str) -> str:
    """The API key in an `Authorization: Basic ...` value: the password (any user name), or the user name when the
    password is empty (`curl -u KEY:`). Desktop clients (QGIS, ArcGIS, GDAL) keep such credentials in their stores
    and send them with every request, which no custom header or query parameter survives in all of them.

    Raises:
        InvalidKeyError: not base64 of `user:password`, or both empty.
    """
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidKeyError("the Authorization: Basic credentials are not base64 of user:password; put the API "
                              "key in the password (any user name)") from exc
    key = password or user
    if not key:
        raise InvalidKeyError("the Authorization: Basic credentials are empty; put the API key in the password")
    return key


def presented_key(request: Request) -> str | None:
    """The API key of a request: `X-API-Key`, `Authorization: Bearer ...`, `Authorization: Basic ...` (the key as
    the password: QGIS, ArcGIS, GDAL and FROST's SensorThings client keep such logins), or the `api_key` query
    parameter.

    Raises:
        InvalidKeyError: Basic credentials that are not base64 of `user:password`.
    """
    key = request.headers.get(KEY_HEADER)
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme = auth[:7].lower()
    if scheme == "bearer ":
        return auth[7:].strip()
    if scheme.startswith("basic "):
        return basic_key(auth[6:])
    return request.query_params.get(KEY_PARAM) or None


def context(request: Request) -> Ctx:
    """FastAPI dependency: resolve the caller (raises `InvalidKeyError` for a bad key) and the base URL."""
    catalog: ServiceCatalog = request.app.state.catalog
    who = catalog.authenticate(presented_key(request))
    base = str(request.base_url)
    if catalog.settings.public_url:  # behind a proxy; keep the /basic prefix a request came in under
        base = catalog.settings.public_url.rstrip("/") + ("/basic" if request.scope.get("root_path", "")
                                                          .endswith("/basic") else "")
    in_url = request.query_params.get(KEY_PARAM)
    return Ctx(catalog, who, base.rstrip("/"), urlencode({KEY_PARAM: in_url}) if in_url else "",
               request.url.path, request.client.host if request.client else None)
