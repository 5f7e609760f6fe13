"""Tile formats (glTF/glb, 3D Tiles 1.1, MVT, raster tiles) and the HTTP server."""
