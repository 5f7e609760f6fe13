"""Errors of the flood analysis: each little more than a docstring, under the project's one root `CimError`."""

from __future__ import annotations

from cim.errors import CimError, CimWarning, InputError


class FloodError(CimError):
    """A flood run could not complete (the solver went unstable, an output could not be written)."""


class FloodInputError(FloodError, InputError):
    """A flood input is unusable: a DEM, buildings, rain series, storm parameter or gauge names the problem."""


class FloodWarning(CimWarning):
    """A flood run gave a usable but degraded result (buildings skipped, a rain gauge without readings)."""
