"""Build a CIM city model as a 3D Tiles 1.1 tileset: the library function behind `cim build`.

Level 2 (framework model, CJJ/T 315-2022) = terrain from the DEM, textured with the orthophoto, plus LOD1 buildings
from the footprints. The output folder holds:

    tileset.json             root: terrain and buildings as two external tilesets (ADD)
    terrain/tileset.json     quadtree of TIN tiles (REPLACE), glb with the orthophoto as texture
    buildings/tileset.json   quadtree of LOD1 tiles (ADD: the most prominent buildings first)
    build.json               the build report (counts, skipped buildings and why, bounds, seconds)

Everything is written into a temporary folder beside the output and renamed into place at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim import crs as crsmod
from cim.buildings import BuildingOptions, BuildingsResult, build_buildings
from cim.errors import InputError, OutputExistsError
from tiles.tileset import BoundingVolume, Content, Tile, Tileset, rebase_uris, relative_transforms
from tiles.tileset import write_atomic
from cim.geodesy import union_regions

Progress = Callable[[str, int, int], None]


@dataclass
class BuildReport:
    """What `build_city` produced."""

    out: Path
    tileset: Path
    level: int
    inputs: dict[str, str | None]
    crs: str
    bounds: tuple[float, float, float, float]
    lonlat_bounds: tuple[float, float, float, float]
    terrain: dict[str, Any] | None
    buildings: dict[str, Any] | None
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "tileset": str(self.tileset),
            "level": self.level,
            "inputs": self.inputs,
            "crs": self.crs,
            "bounds": list(self.bounds),
            "lonlat_bounds": list(self.lonlat_bounds),
            "terrain": self.terrain,
            "buildings": self.buildings,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def build_city(
    out: str | os.PathLike[str],
    *,
    level: int = 2,
    dem: str | os.PathLike[str] | None = None,
    ortho: str | os.PathLike[str] | None = None,
    buildings: str | os.PathLike[str] | None = None,
    dsm: str | os.PathLike[str] | None = None,
    crs: crsmod.CRSLike | None = None,
    building_options: BuildingOptions | None = None,
    terrain_options: Any = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> BuildReport:
    """Build a city model into `out`.

    With no input given, the embedded sample city is used (generated once into the cache when needed).

    Args:
        out: output folder (must not exist or be empty unless `overwrite`).
        level: CIM level; 2 builds terrain + LOD1 buildings.
        dem: terrain model raster (required when any input is given).
        ortho: orthophoto raster textured onto the terrain (optional).
        buildings: building footprints (optional: without them the model is terrain only).
        dsm: surface model, for heights of buildings without height attributes (optional).
        crs: CRS of inputs that declare none.
        building_options: see `cim.buildings.BuildingOptions` (height field, storey height, ...).
        terrain_options: see `cim.terrain.TerrainOptions` (max error, tile size, ...).
        overwrite: replace an existing output folder.
        progress: called as progress(stage, done, total).

    Raises:
        InputError: an input is missing or unusable.
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    from cim.terrain import TerrainOptions, build_terrain

    t0 = time.perf_counter()
    if level != 2:
        raise InputError(f"--level {level} is not available yet; this build makes CIM level 2 (terrain + LOD1)")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
    if dem is None and ortho is None and buildings is None and dsm is None:
        from cim.sample import default_sample

        city = default_sample()
        dem, ortho, buildings, dsm = city.dem, city.ortho, city.buildings, city.dsm
    if dem is None:
        raise InputError("a DEM is required for a level-2 model; pass --dem PATH (GeoTIFF)")
    inputs = {"dem": str(dem), "ortho": _opt(ortho), "buildings": _opt(buildings), "dsm": _opt(dsm)}
    for name, value in inputs.items():
        if value is not None and not Path(value).exists():
            raise InputError(f"--{name} {value}: no such file")

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        topts = terrain_options or TerrainOptions(crs=None if crs is None else str(crs))
        terrain = build_terrain(dem, ortho, work, topts, progress=progress)
        terrain_root = relative_transforms(rebase_uris(terrain.root, "terrain/"))
        children: list[Tile] = []
        regions = [terrain_root.bounding_volume.region]
        bres: BuildingsResult | None = None
        if buildings is not None:
            bres = build_buildings(buildings, dem, work, dsm=dsm, options=building_options, crs=crs,
                                   progress=progress)
            broot = relative_transforms(rebase_uris(bres.root, "buildings/"))
            regions.append(broot.bounding_volume.region)
        region = union_regions(regions)
        diag = _diagonal(region)
        Tileset(geometric_error=diag, root=terrain_root,
                extras={"cim": {"layer": "terrain", "maxError": getattr(topts, "max_error", None)}}
                ).write(work / "terrain" / "tileset.json")
        children.append(_external("terrain/tileset.json", terrain_root, diag))
        if bres is not None:
            Tileset(geometric_error=diag, root=broot, extras={"cim": {"layer": "buildings", "lod": 1}}
                    ).write(work / "buildings" / "tileset.json")
            children.append(_external("buildings/tileset.json", broot, diag))
        root = Tile(bounding_volume=BoundingVolume(region=region), geometric_error=diag, refine="ADD",
                    children=children)
        Tileset(geometric_error=diag, root=root, extras={"cim": {"level": level}}).write(work / "tileset.json")

        bounds = terrain.bounds
        src_crs = terrain.crs
        lon, lat = crsmod.transformer(src_crs, "EPSG:4326").transform(
            np.array([bounds[0], bounds[2], bounds[0], bounds[2]]), np.array([bounds[1], bounds[1], bounds[3], bounds[3]])
        )
        report = BuildReport(
            out=out,
            tileset=out / "tileset.json",
            level=level,
            inputs=inputs,
            crs=src_crs.name,
            bounds=tuple(float(v) for v in bounds),
            lonlat_bounds=(float(min(lon)), float(min(lat)), float(max(lon)), float(max(lat))),
            terrain=terrain.to_dict(),
            buildings=bres.to_dict() if bres else None,
            seconds=time.perf_counter() - t0,
        )
        if bres is not None and bres.height_sources.get("default"):
            report.warnings.append(
                f"{bres.height_sources['default']} building(s) got the default height "
                f"{(building_options or BuildingOptions()).default_height} m (no height, floors or DSM value)"
            )
        if bres is not None and bres.skipped.count:
            report.warnings.append(f"{bres.skipped.count} building(s) skipped: "
                                   + "; ".join(f"{k}: {len(v)}" for k, v in bres.skipped.reasons.items()))
        write_atomic(work / "build.json", json.dumps(report.to_dict(), ensure_ascii=False, indent=2).encode())
        _replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - t0
    return report


def _opt(p: str | os.PathLike[str] | None) -> str | None:
    return None if p is None else str(p)


def _external(uri: str, root: Tile, error: float) -> Tile:
    return Tile(bounding_volume=root.bounding_volume.model_copy(deep=True), geometric_error=error,
                content=Content(uri=uri))


def _diagonal(region: list[float]) -> float:
    """Length in metres of a region's horizontal diagonal (an upper bound for 'nothing drawn')."""
    r = 6378137.0
    dlat = (region[3] - region[1]) * r
    dlon = (region[2] - region[0]) * r * math.cos((region[1] + region[3]) / 2)
    return float(math.hypot(dlat, dlon) + (region[5] - region[4]))


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished build into place; an existing output is removed only once the new one is complete."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
