"""CIM engine: build city information models (CIM levels 1-3) as 3D Tiles from DEM, orthophoto, footprints and
oblique photography.

Public entry points live in submodules (`cim.sample`, `cim.build`, `cim.sources.crs`); importing this package does no I/O.
"""

from __future__ import annotations

__version__ = "0.1.0"

from cim.errors import CimError  # noqa: E402

__all__ = ["CimError", "__version__"]
