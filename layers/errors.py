"""Errors of the layer store."""

from __future__ import annotations

from cim.errors import CimError, InputError


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
