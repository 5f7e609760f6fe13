"""Readers of the inputs a city has: CRSs, rasters (DEM, DSM, orthophoto), footprints, oblique productions.

Every reader builds its CRS from what the data says (`cim.sources.crs`), always east/north, float64; nothing here
writes a model. The model builders in `cim.models` consume what these return.
"""
