"""Route modules, one per protocol: core (catalogue, health, API), 3D Tiles, raster maps (XYZ, TileJSON, WMTS),
vector tiles (OGC API Tiles, XYZ) and OGC API - Features. Each route resolves names through the catalogue, makes one
library call and renders."""
