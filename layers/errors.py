"""Errors of the layer store."""

from __future__ import annotations

from cim.errors import CimError, InputError, InputNotFoundError


class LayerError(CimError):
    """Root of the errors raised by `layers`."""


class StoreError(LayerError):
    """The DuckDB store cannot be opened or used (missing spatial extension, locked file)."""


class LayerNotFoundError(LayerError, LookupError):
    """A named layer does not exist in the store."""


class LayerExistsError(LayerError):
    """A layer with that name exists already."""


class LayerInputError(LayerError, InputError):
    """An import file, a name or a query parameter is unusable."""


class StoreLockedError(StoreError):
    """Another process holds the store file (DuckDB allows one read-write process or many read-only ones)."""


class StoreWriteError(StoreError):
    """A write to the store failed in the file system (disk full, file size limit) or for lack of memory; the
    change was not stored and what was stored before is intact."""


class QueryTimeoutError(LayerError):
    """A query ran out of the time budget of its caller (`layers.budget.time_budget`, an HTTP request's budget)."""


class VersionNotFoundError(LayerNotFoundError):
    """A layer has no such version."""


class ThemeNotFoundError(LayerInputError, LookupError):
    """A theme path is not in the theme tree."""


class FilterSyntaxError(LayerInputError):
    """A `--where` filter does not parse, or names a field the layer does not have."""


class GeometryRejectedError(LayerInputError):
    """No feature of an import survived geometry validation (the report lists why)."""


class StoreNotFoundError(StoreError, InputNotFoundError):
    """The store file does not exist (reading commands never create one)."""
