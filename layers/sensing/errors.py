"""Errors of the sensing store (`layers.sensing`), under `layers.errors.LayerError`.

HTTP statuses come from the classes they derive from (`tiles/server/app.py`, `STATUS_CODES`): a missing or hidden
entity is a `LayerNotFoundError` (404), bad input a `LayerInputError` (400), a store that cannot take writes a
`StoreError` (503).
"""

from __future__ import annotations

from layers.errors import LayerError, LayerInputError, LayerNotFoundError, StoreError


class SensingError(LayerError):
    """Root of the errors raised by `layers.sensing`."""


class EntityNotFoundError(SensingError, LayerNotFoundError):
    """A SensorThings entity does not exist, or the caller may not see it (both answer the same)."""


class SensingInputError(SensingError, LayerInputError):
    """A request body, an entity, an observation or a file to import is unusable."""


class QueryError(SensingInputError):
    """A query option ($filter, $expand, $orderby, $select, $top, $skip, $count) or a resource path is invalid or
    exceeds the parser's bounds."""


class WriteForbiddenError(SensingError, PermissionError):
    """The caller may read but not write (its key lacks the `sensing:write` grant), or may not write this entity
    at the security level it asks for."""


class ReadOnlySensingError(SensingError, StoreError):
    """The store was opened read-only: only the process that holds it read-write can take observations."""
