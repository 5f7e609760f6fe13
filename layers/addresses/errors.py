"""Errors of the standard-address family (`layers.addresses`)."""

from __future__ import annotations

from layers.errors import LayerError, LayerInputError, LayerNotFoundError


class AddressError(LayerError):
    """Root of the errors raised by `layers.addresses`."""


class AddressInputError(AddressError, LayerInputError):
    """An address text, a registry file, a column name or a parameter is unusable."""


class AddressesNotFoundError(AddressError, LayerNotFoundError):
    """The store has no standard-address layer (or the caller may not see it)."""
