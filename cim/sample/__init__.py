"""The embedded sample city: a deterministic small Chinese city to build, serve and test against without any data.

`generate(out)` writes a district of Datong, Shanxi (平城区, near 113.30E 40.09N) in CGCS2000 / 3-degree
Gauss-Krüger CM 114E (EPSG:4547): a walled old town of courtyard houses (四合院) beside a new district of slab and
tower blocks, split by a river (御河). It writes a DEM and a DSM (GeoTIFF), an orthophoto (COG), building footprints
with the attributes a CIM build needs, roads, river, city wall, administrative divisions and themed business layers
(population, shelters, hazard sources, water-level sensors, height-control zones, trees), each vector layer a
GeoPackage, and a manifest `sample.json` that the layer store and the viewer load the city from.

Data flow, one module per thing made: `plan` (road grid, old town, river, blocks and their zones; grows with the
number of buildings; blocks cut into lots, one building each, clear of roads/river/wall) -> `buildings` (shapes
and attributes, vectorised per zone) -> `divisions` (admin divisions, addresses, codes, the attribute table) ->
`layers` (business layers) -> `rasters` (terrain function, DSM with roof shapes from the same roof model,
orthophoto rendered in strips) -> `generator` (files and the manifest) -> `oblique` (the synthetic oblique
production). `city` is the public face (`SampleCity`, `generate`, `load`); `common` holds the shared constants.

Same seed and number of buildings give the same attributes, geometries and pixels (see `content_digest`).
"""

from cim.sample.city import (
    SampleCity,
    cache_dir,
    committed_sample_dir,
    content_digest,
    default_sample,
    generate,
    is_complete,
    load,
)
from cim.sample.common import (
    CRS,
    DEFAULT_BUILDINGS,
    DEFAULT_SEED,
    MANIFEST,
    MAX_DEM_PX,
    MAX_ORTHO_PX,
    OBLIQUE_DIR,
    ROOF_TYPES,
    USES,
    VECTOR_LAYERS,
)
from cim.sample.oblique import add_oblique, write_oblique

__all__ = [
    "CRS",
    "DEFAULT_BUILDINGS",
    "DEFAULT_SEED",
    "MANIFEST",
    "MAX_DEM_PX",
    "MAX_ORTHO_PX",
    "OBLIQUE_DIR",
    "ROOF_TYPES",
    "USES",
    "VECTOR_LAYERS",
    "SampleCity",
    "add_oblique",
    "cache_dir",
    "committed_sample_dir",
    "content_digest",
    "default_sample",
    "generate",
    "is_complete",
    "load",
    "write_oblique",
]
