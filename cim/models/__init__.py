"""Model builders: what turns the inputs read by `cim.sources` into CIM models as 3D Tiles content.

`footprints` prepares footprints for every building model (IDs, cleaning, base on the terrain, heights,
attribute columns); `terrain` (levels 1-2), `lod1` (level 2 blocks), `roofs` + `lod2` (level 3 roofs) and
`oblique` (level 3 oblique photography, singulated by footprints) build the models. They share the quadtree
and the tile job runner of `cim.tiling`.
"""
