"""The reference for partitioned LOD1 builds: each tile meshed from the whole city's arrays, as the builder did before
partitions."""

from __future__ import annotations

import numpy as np
import shapely

from cim.models.footprints import take_column
from cim.models.lod1 import lod1_primitive
from tiles.gltf import MeshContent, PropertyTable


def assert_tiles_are_the_whole_file_build(fp, columns, options, out) -> int:
    """Every tile the build wrote under OUT/buildings is, byte for byte, the glb of the same quadtree node built from
    the whole-file footprints FP (with their COLUMNS); returns the number of tiles."""
    nodes = fp.quadtree(np.maximum(fp.height, np.sqrt(shapely.area(fp.geoms))), options.tile_capacity)
    for node, path in nodes:
        sel = node.content
        prim, _, _ = lod1_primitive(fp.geoms[sel], fp.base[sel] - options.sink, fp.base[sel] + fp.height[sel],
                                    fp.crs, color=options.color, vertical=options.vertical_datum)
        props = PropertyTable("building", {c: take_column(v, sel) for c, v in columns.items()})
        want = MeshContent([prim], props).to_glb(options.glb)
        assert (out / "buildings" / f"{path}.glb").read_bytes() == want, path
    return len(nodes)
