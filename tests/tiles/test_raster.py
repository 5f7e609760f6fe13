"""`tiles.raster`: the reader's tile-in-dataset test against rio-tiler's own, tile by tile around a COG's edges."""

from __future__ import annotations

from pathlib import Path

import morecantile
from rio_tiler.io import Reader

from tests.tiles.server_support import write_ortho_cog
from tiles.raster import _Reader


def test_tile_exists_agrees_with_rio_tiler_around_the_edges(tmp_path: Path) -> None:
    cog = write_ortho_cog(tmp_path / "ortho.tif", size=512, res=1.0)  # EPSG:4547, 512 m square
    for tms_id in ("WebMercatorQuad", "WGS1984Quad"):
        tms = morecantile.tms.get(tms_id)
        with Reader(str(cog), tms=tms) as theirs, _Reader(str(cog), tms=tms) as ours:
            west, south, east, north = theirs.get_geographic_bounds(tms.rasterio_geographic_crs)
            checked = inside = 0
            for z in (14, 17):
                ul = tms.tile(west, north, z, truncate=True)
                lr = tms.tile(east, south, z, truncate=True)
                for x in range(ul.x - 2, lr.x + 3):
                    for y in range(ul.y - 2, lr.y + 3):
                        expected = theirs.tile_exists(x, y, z)
                        assert ours.tile_exists(x, y, z) == expected, (tms_id, z, x, y)
                        checked += 1
                        inside += expected
            assert checked > 40 and 0 < inside < checked
