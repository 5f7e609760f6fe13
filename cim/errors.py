"""Errors of the CIM engine.

`CimError` is the one root error of the project: every error the library raises on purpose derives from it, so the
CLI and the HTTP server can map it to an exit code or a status in one table at their edge. Each package adds its own
subclasses (`tiles.errors`, `layers.errors`); messages name the value, the reason and, where possible, the fix.
"""

from __future__ import annotations


class CimError(Exception):
    """Root of every error raised on purpose by this project."""


class CimWarning(UserWarning):
    """A degraded but usable result (a default height used, a building skipped)."""


class InputError(CimError, ValueError):
    """An input file or value is unusable: wrong format, empty, out of range."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path does not exist."""


class CRSError(InputError):
    """A coordinate reference system cannot be read, built or used."""


class OutputExistsError(CimError, FileExistsError):
    """The output exists and `overwrite` was not asked for."""


class BuildError(CimError):
    """A model build could not complete."""


class MissingToolError(CimError, RuntimeError):
    """An external program the operation needs is not installed."""
