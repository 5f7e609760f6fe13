"""Errors of the tile writers and the tile server."""

from __future__ import annotations

from cim.errors import CimError, InputError, MissingToolError


class TilesError(CimError):
    """Root of the errors raised by `tiles`."""


class EncodingOptionError(TilesError, InputError):
    """A tile encoding option (compression, texture format, tolerance) has a value the writer cannot use."""


class TextureEncoderMissing(TilesError, MissingToolError):
    """The KTX2 encoder (`basisu`) is not installed."""


class TilesetCheckError(TilesError):
    """A tileset breaks a structural rule of 3D Tiles (bounds, geometric error, URIs)."""


class TileNotFoundError(TilesError, LookupError):
    """A requested model, layer or tile does not exist (or is not visible to the caller)."""


class TileRequestError(TilesError, InputError):
    """A tile request is malformed or out of range."""


class InvalidKeyError(TilesError, PermissionError):
    """An API key was presented but is malformed, unknown or revoked."""


class ServerConfigError(TilesError, InputError):
    """`cim serve` was given a model folder, map file or setting it cannot use."""


class JobNotFoundError(TileNotFoundError):
    """A job id that does not exist, expired, or belongs to another API key."""


class JobNotReadyError(JobNotFoundError):
    """A job's result was asked for before the job succeeded (OGC API - Processes: result-not-ready)."""


class JobLimitError(TilesError):
    """The server runs and queues as many jobs as it allows; submit again later."""


class RequestTooLargeError(TileRequestError):
    """A request body is larger than the server accepts."""


class KeyRequiredError(InvalidKeyError):
    """The action saves something (a style, a scene, an annotation) and needs an API key; none was presented."""


class NotAllowedError(TilesError, PermissionError):
    """The caller's key may not do this (e.g. change a scene another key or the operator saved)."""
