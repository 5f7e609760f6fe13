"""Analyses that answer questions on a built city: flooding (waterlogging) and planning (height control,
sunlight, shadow, viewshed, skyline, scheme comparison), one module or sub-package each.

An analysis is a parameter object in and a result object out (`to_dict`, `to_raster`, `to_layer`), with one
progress callback shared by the CLI's bar and the server's jobs (see docs/architecture.md).
"""
