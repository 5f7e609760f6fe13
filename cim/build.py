"""Build a CIM city model as a 3D Tiles 1.1 tileset: the library function behind `cim build`.

Level 2 (framework model, CJJ/T 315-2022) = terrain from the DEM, textured with the orthophoto, plus LOD1 buildings
from the footprints. An existing city model (CityJSON, `citymodel`) is built as it is, at level 2 or 3, over the
terrain when a DEM is given. Level 3 = an oblique-photography production (cim.models.oblique; singulated by the
footprints when given) over the terrain when a DEM is given; without a production, LOD2 buildings (cim.models.lod2)
on the level-2 terrain. The output folder holds:

    tileset.json             root: terrain, buildings and oblique layers as external tilesets (ADD)
    terrain/tileset.json     quadtree of TIN tiles (REPLACE), glb with the orthophoto as texture
    buildings/tileset.json   quadtree of LOD1 or LOD2 tiles (ADD: the most prominent buildings first)
    oblique/tileset.json     the oblique pyramid (REPLACE) under merged coarse levels
    quantized-mesh/          with `quantized_mesh`: Cesium quantized-mesh terrain of the DEM (layer.json +
                             {z}/{x}/{y}.terrain), same max error and vertical datum as the glb terrain
    citymodel/tileset.json   a CityJSON model's objects (ADD), semantic surfaces and textures
    build.json               the build report (counts, skipped buildings and why, bounds, seconds, Dask)

The tiles of each layer are Dask tasks run by one `cim.tiling.Runner`: a local cluster (`workers`), an existing
cluster (`scheduler` address or a notebook's `client`), or this process (`scheduler="synchronous"`); the bytes
written are the same whichever runs them. Everything is written into a temporary folder beside the output and
renamed into place at the end. That folder (`.<name>.building`) keeps a manifest of the finished tasks: if the
build is killed, the same call resumes it, and writes the same bytes as an uninterrupted build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from cim.errors import BuildError, CimError, InputError, InputNotFoundError, OutputExistsError
from cim.files import replace_dir, user_path
from cim.geodesy import union_regions
from cim.models.footprints import BuildingOptions
from cim.models.lod1 import BuildingsResult, build_buildings
from cim.sources import crs as crsmod
from cim.sources import coverage as cov
from cim.sources.footprints import footprint_bounds
from cim.sources.vertical import VerticalDatum
from cim.tiling import Manifest, Runner
from tiles.compression import GlbOptions
from tiles.tileset import (
    BoundingVolume,
    Content,
    Tile,
    Tileset,
    rebase_uris,
    relative_transforms,
    write_atomic,
)

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
    oblique: dict[str, Any] | None = None
    dask: dict[str, Any] | None = None
    quantized_mesh: dict[str, Any] | None = None
    citymodel: dict[str, Any] | None = None
    coverage: dict[str, float] = field(default_factory=dict)
    glb: dict[str, Any] | None = None

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
            "oblique": self.oblique,
            "citymodel": self.citymodel,
            "coverage": self.coverage,
            "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
            "dask": self.dask,
            "quantized_mesh": self.quantized_mesh,
            "glb": self.glb,
        }


def build_city(
    out: str | os.PathLike[str],
    *,
    level: int = 2,
    dem: str | os.PathLike[str] | None = None,
    ortho: str | os.PathLike[str] | None = None,
    buildings: str | os.PathLike[str] | None = None,
    dsm: str | os.PathLike[str] | None = None,
    oblique: str | os.PathLike[str] | None = None,
    citymodel: str | os.PathLike[str] | None = None,
    crs: crsmod.CRSLike | None = None,
    building_options: BuildingOptions | None = None,
    terrain_options: Any = None,
    oblique_options: Any = None,
    glb: GlbOptions | None = None,
    vertical_datum: str | os.PathLike[str] | VerticalDatum | None = None,
    citymodel_options: Any = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = True,
    quantized_mesh: bool = False,
    implicit: bool | None = None,
) -> BuildReport:
    """Build a city model into `out`.

    With no input given, the embedded sample city is used (generated once into the cache when needed).

    Args:
        out: output folder (must not exist or be empty unless `overwrite`).
        level: CIM level; 2 builds terrain + LOD1 buildings, 3 an oblique production (or LOD2 buildings).
        dem: terrain model raster (required for level 2 and for level 3 without `oblique`).
        ortho: orthophoto raster textured onto the terrain (optional).
        buildings: building footprints (optional: without them the model is terrain only).
        dsm: surface model, for heights of buildings without height attributes (optional).
        oblique: ContextCapture production folder (level 3; its footprints singulate it).
        citymodel: an existing 3D city model (CityJSON `.city.json` or CityJSONSeq `.city.jsonl`) built as it is,
            with its objects' IDs, attributes, semantic surfaces and textures (`cim.models.citymodel`).
        crs: CRS of inputs that declare none.
        building_options: see `cim.models.footprints.BuildingOptions` (height field, storey height, ...).
        terrain_options: see `cim.models.terrain.TerrainOptions` (max error, tile size, ...).
        oblique_options: see `cim.models.oblique.ObliqueOptions` (workers, atlas size, ...).
        glb: how every tile is encoded (`tiles.compression.GlbOptions`: compression, textures); it replaces the
            `glb` of the builders' option objects. None keeps theirs (meshopt + quantization by default).
        vertical_datum: what the input heights are measured from: "ellipsoidal", "egm96" or a geoid grid path
            (`cim.sources.vertical.VerticalDatum`); it replaces the datum of the builders' option objects. None keeps
            theirs (ellipsoidal: heights are used as they are).
        citymodel_options: see `cim.models.citymodel.CityModelOptions` (LoD, theme, object types, ...).
        overwrite: replace an existing output folder.
        progress: called as progress(stage, done, total).
        workers: worker processes of the local Dask cluster the tile tasks run on (default: one per CPU core;
            `building_options.workers` and `oblique_options.workers` when given there).
        scheduler: "synchronous" (every task in this process) or the address of a running Dask scheduler
            ("tcp://10.0.0.5:8786"); its workers must see the inputs and `out` at the same paths.
        client: a `distributed.Client` to run on (a notebook's); it is left open.
        on_start: called once the Dask cluster is reached, with `cim.tiling.Runner.describe()` (dashboard link).
        resume: pick up a build of the same inputs and options that was killed (its work folder
            `.<out name>.building` beside `out`): tiles it finished are not built again. False starts afresh.
        quantized_mesh: also write the DEM as Cesium quantized-mesh terrain into `out/quantized-mesh/`
            (`cim.models.qmterrain.QuantizedMeshTerrain.write`, with the terrain's max error, CRS and vertical datum),
            for `CesiumTerrainProvider` and any other reader of the format. Needs `dem`.
        implicit: write the building and terrain layers as 3D Tiles 1.1 implicit quadtrees (True) or explicit
            tile trees (False); it replaces the `implicit` of `building_options` and `terrain_options`. None keeps
            theirs (implicit for large layers: `cim.models.footprints.IMPLICIT_AUTO_BUILDINGS`,
            `cim.models.terrain.IMPLICIT_AUTO_TILES`).

    Raises:
        InputError: an input is missing or unusable.
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    from cim.models.terrain import TerrainOptions, build_terrain

    t0 = time.perf_counter()
    if level not in (2, 3):
        raise InputError(f"--level {level}: choose 2 (terrain + LOD1) or 3 (oblique photography or LOD2)")
    if oblique is not None and level != 3:
        raise InputError("--oblique builds a level-3 model; pass --level 3")
    if citymodel is not None and (oblique is not None or buildings is not None):
        raise InputError("--citymodel is a complete model of its own: build it without --buildings and --oblique")
    out = user_path(out)
    dem, ortho, buildings, dsm, oblique, citymodel = (None if p is None else user_path(p)
                                                      for p in (dem, ortho, buildings, dsm, oblique, citymodel))
    datum = None if vertical_datum is None else VerticalDatum.parse(vertical_datum)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
    if dem is None and ortho is None and buildings is None and dsm is None and oblique is None and citymodel is None:
        from cim.sample import default_sample

        city = default_sample()
        dem, ortho, buildings, dsm = city.dem, city.ortho, city.buildings, city.dsm
        if level == 3 and city.ortho is not None:
            from cim.sample import cache_dir, write_oblique

            # the synthetic production lives beside the cached city, never in the repository's copy
            oblique = cache_dir().with_name(cache_dir().name + "-oblique")
            if not (oblique / "metadata.xml").is_file():
                write_oblique(city, oblique, overwrite=True)
    if dem is None and oblique is None and citymodel is None:
        raise InputError(f"a DEM is required for a level-{level} model without --oblique or --citymodel; pass "
                         f"--dem PATH (GeoTIFF)")
    if quantized_mesh and dem is None:
        raise InputError("--quantized-mesh makes terrain from the DEM; pass --dem PATH (GeoTIFF)")
    if terrain_options is not None and hasattr(terrain_options, "check"):
        terrain_options.check()  # options first: a bad number is refused before any input is read
    inputs = {"dem": _opt(dem), "ortho": _opt(ortho), "buildings": _opt(buildings), "dsm": _opt(dsm),
              "oblique": _opt(oblique), "citymodel": _opt(citymodel)}
    for name, value in inputs.items():
        if value is not None and not Path(value).exists():
            raise InputNotFoundError(f"--{name} {value}: no such file")

    coverage: dict[str, float] = {}
    cover_warnings: list[str] = []
    extent = cov.build_extent(dem, getattr(terrain_options, "crs", None) or crs) if dem is not None else None
    if extent is not None:
        for name, path, partial in (
                ("ortho", ortho, "the terrain outside it is shaded from the DEM instead"),
                ("dsm", dsm, "buildings outside it take their heights from attributes or the default")):
            if path is not None:
                frac, where = cov.raster_coverage(path, extent, what=name)
                coverage[name] = round(frac, 4)
                note = cov.check_coverage(f"--{name}", path, frac, where, extent, measure="of the DEM's area",
                                      partial=partial)
                if note:
                    cover_warnings.append(note)
        if buildings is not None:
            found = footprint_bounds(buildings, crs)
            if found is not None:  # a first look from the file's declared extent, before anything is built
                frac = cov.bounds_coverage(found[0], found[1], extent)
                cov.check_coverage("--buildings", buildings, frac, cov.lonlat_bounds(found[1], found[0]), extent,
                               measure="", partial="")

    out.parent.mkdir(parents=True, exist_ok=True)
    n_workers = (workers or getattr(building_options, "workers", None) or getattr(oblique_options, "workers", None)
                 or getattr(citymodel_options, "workers", None))
    stack = contextlib.ExitStack()
    stack.enter_context(_build_lock(out.parent / f".{out.name}.building.lock"))
    work = out.parent / f".{out.name}.building"
    manifest = Manifest(work / MANIFEST, _fingerprint(level, inputs, crs, building_options, terrain_options,
                                                      oblique_options, citymodel_options, glb, datum,
                                                      *(() if implicit is None else (("implicit", implicit),))))
    _prepare_work(work, manifest, resume)
    stack.enter_context(manifest)
    runner = stack.enter_context(Runner(workers=n_workers, scheduler=scheduler, client=client, progress=progress,
                                        on_start=on_start, manifest=manifest))
    try:
        children: list[Tile] = []
        regions: list[list[float]] = []
        layers: list[tuple[str, Tile, dict[str, Any]]] = []
        terrain = None
        qm_report = None
        if dem is not None:
            topts = terrain_options or TerrainOptions(crs=None if crs is None else str(crs))
            if glb is not None:
                topts = dataclasses.replace(topts, glb=glb)
            if datum is not None:
                topts = dataclasses.replace(topts, vertical_datum=datum)
            if implicit is not None:
                topts = dataclasses.replace(topts, implicit=implicit)
            terrain = build_terrain(dem, ortho, work, topts, progress=progress, runner=runner)
            terrain_root = relative_transforms(rebase_uris(terrain.root, "terrain/"))
            layers.append(("terrain", terrain_root,
                           {"layer": "terrain", "maxError": getattr(topts, "max_error", None)}))
            shutil.rmtree(work / QUANTIZED_MESH, ignore_errors=True)  # a killed build's half: rewritten
            if quantized_mesh:
                qm_report = _write_quantized_mesh(dem, topts, work / QUANTIZED_MESH, progress)
        bres: BuildingsResult | None = None
        lod2 = None
        ores = None
        if implicit is not None and buildings is not None:
            building_options = dataclasses.replace(building_options or BuildingOptions(), implicit=implicit)
        for key, value in (("glb", glb), ("vertical_datum", datum)):
            if value is None:
                continue
            building_options = dataclasses.replace(building_options or BuildingOptions(), **{key: value})
            if oblique is not None:
                from cim.models.oblique import ObliqueOptions

                oblique_options = dataclasses.replace(oblique_options or ObliqueOptions(), **{key: value})
            if citymodel is not None:
                from cim.models.citymodel import CityModelOptions

                citymodel_options = dataclasses.replace(citymodel_options or CityModelOptions(), **{key: value})
        cres = None
        if citymodel is not None:
            from cim.models.citymodel import build_citymodel

            cres = build_citymodel(citymodel, work, options=citymodel_options, crs=crs, progress=progress,
                                   runner=runner)
            layers.append(("citymodel", relative_transforms(rebase_uris(cres.root, "citymodel/")),
                           {"layer": "citymodel", "lods": cres.lods}))
        if oblique is not None:
            from cim.models.oblique import build_oblique

            ores = build_oblique(oblique, work, buildings=buildings, options=oblique_options, progress=progress,
                                 runner=runner)
            oroot = relative_transforms(rebase_uris(ores.root, "oblique/"))
            layers.append(("oblique", oroot, {"layer": "oblique", "georeference": ores.georeference,
                                              "singulated": buildings is not None}))
        elif buildings is not None and level == 3:
            from cim.models.lod2 import build_lod2_buildings

            lod2 = build_lod2_buildings(buildings, dem, work, ortho=ortho, dsm=dsm, options=building_options,
                                        crs=crs, progress=progress, runner=runner)
            layers.append(("buildings", relative_transforms(rebase_uris(lod2.root, "buildings/")),
                           {"layer": "buildings", "lod": 2}))
        elif buildings is not None:
            bres = build_buildings(buildings, dem, work, dsm=dsm, options=building_options, crs=crs,
                                   progress=progress, runner=runner)
            layers.append(("buildings", relative_transforms(rebase_uris(bres.root, "buildings/")),
                           {"layer": "buildings", "lod": 1}))
        if extent is not None:
            for name, res, what in (("oblique", ores, "production"), ("citymodel", cres, "city model")):
                if res is None:
                    continue
                frac = cov.bounds_coverage(res.lonlat_bounds, CRS.from_epsg(4326), extent)
                coverage[name] = round(frac, 4)
                note = cov.check_coverage(f"--{name}", inputs[name], frac, res.lonlat_bounds, extent,
                                      measure=f"of its extent with the DEM", partial=f"the {what} is built whole; "
                                      f"the terrain covers only part of it")
                if note:
                    cover_warnings.append(note)
        for res in (bres, lod2):
            if res is not None and res.footprints.get("on_dem") is not None:
                coverage["buildings"] = res.footprints["on_dem"]
        regions = [r.bounding_volume.region for _, r, _ in layers]
        region = union_regions(regions)
        # an implicit root's error is set by its deepest tiles (halved per level) and may exceed the diagonal
        diag = max([_diagonal(region)] + [r.geometric_error for _, r, _ in layers])
        schemas = {"terrain": getattr(terrain, "schema", None), "buildings": getattr(bres or lod2, "schema", None)}
        for name, layer_root, extras in layers:
            if layer_root.implicit_tiling is not None:
                extras = {**extras, "implicit": True}
            Tileset(geometric_error=diag, root=layer_root, extras={"cim": extras},
                    metadata_schema=schemas.get(name)).write(work / name / "tileset.json")
            children.append(_external(f"{name}/tileset.json", layer_root, diag))
        root = Tile(bounding_volume=BoundingVolume(region=region), geometric_error=diag, refine="ADD",
                    children=children)
        used = datum or getattr(building_options, "vertical_datum", None) or VerticalDatum()
        cim_extras: dict[str, Any] = {"level": level, **used.to_dict()}
        if qm_report is not None:
            cim_extras["quantizedMesh"] = f"{QUANTIZED_MESH}/"
        Tileset(geometric_error=diag, root=root, extras={"cim": cim_extras}).write(work / "tileset.json")

        if terrain is not None:
            bounds = terrain.bounds
            src_crs = terrain.crs
            lon, lat = crsmod.transformer(src_crs, "EPSG:4326").transform(
                np.array([bounds[0], bounds[2], bounds[0], bounds[2]]),
                np.array([bounds[1], bounds[1], bounds[3], bounds[3]]))
            lonlat_bounds = (float(min(lon)), float(min(lat)), float(max(lon)), float(max(lat)))
            crs_name = src_crs.name
        elif cres is not None:
            bounds, lonlat_bounds, crs_name = cres.bounds, cres.lonlat_bounds, cres.working_crs.name
        else:
            assert ores is not None
            lonlat_bounds = ores.lonlat_bounds
            bounds = lonlat_bounds
            crs_name = "EPSG:4326"  # no terrain: bounds of the oblique production in lon/lat
        report = BuildReport(
            out=out,
            tileset=out / "tileset.json",
            level=level,
            inputs=inputs,
            crs=crs_name,
            bounds=tuple(float(v) for v in bounds),
            lonlat_bounds=lonlat_bounds,
            terrain=terrain.to_dict() if terrain is not None else None,
            buildings=bres.to_dict() if bres else (lod2.to_dict() if lod2 else None),
            seconds=time.perf_counter() - t0,
            oblique=ores.to_dict() if ores else None,
            dask=runner.describe(),
            quantized_mesh=qm_report,
            citymodel=cres.to_dict() if cres else None,
            glb=dataclasses.asdict(glb) if glb is not None else None,
        )
        report.coverage = coverage
        report.warnings.extend(cover_warnings)
        if lod2 is not None and lod2.fallbacks:
            report.warnings.append(f"{len(lod2.fallback_ids)} LOD2 roof(s) built with another shape: "
                                   + "; ".join(f"{k}: {v}" for k, v in lod2.fallbacks.items()))
        if ores is not None:
            report.warnings.extend(ores.warnings)
        if cres is not None:
            report.warnings.extend(cres.warnings)
        for res in (bres, lod2):
            if res is not None:
                report.warnings.extend(res.notes)
        if bres is not None and bres.height_sources.get("default"):
            report.warnings.append(
                f"{bres.height_sources['default']} building(s) got the default height "
                f"{(building_options or BuildingOptions()).default_height} m (no height, floors or DSM value)"
            )
        if bres is not None and bres.skipped.count:
            report.warnings.append(f"{bres.skipped.count} building(s) skipped: "
                                   + "; ".join(f"{k}: {len(v)}" for k, v in bres.skipped.reasons.items()))
        write_atomic(work / "build.json", json.dumps(report.to_dict(), ensure_ascii=False, indent=2).encode())
        manifest.close()
        (work / MANIFEST).unlink()
        _remove_partial(work)  # a worker killed mid-write left its temp file; Dask wrote the tile again elsewhere
        replace_dir(work, out)
    except CimError:
        shutil.rmtree(work, ignore_errors=True)  # bad inputs or options fail the same way again: nothing to resume
        raise
    finally:
        stack.close()
    report.seconds = time.perf_counter() - t0
    return report


MANIFEST = ".cim-manifest"
QUANTIZED_MESH = "quantized-mesh"


def _write_quantized_mesh(dem: Path, topts: Any, out_dir: Path, progress: Progress | None) -> dict[str, Any]:
    """The DEM as quantized-mesh terrain in `out_dir`, with the glb terrain's max error, CRS and vertical datum."""
    from cim.models.qmterrain import QuantizedMeshOptions, QuantizedMeshTerrain

    qopts = QuantizedMeshOptions(max_error=topts.max_error, vertical_datum=topts.vertical_datum, crs=topts.crs)
    return QuantizedMeshTerrain(dem, qopts).write(out_dir, progress=progress)


@contextlib.contextmanager
def _build_lock(path: Path) -> Any:
    """One build at a time writes an output: an exclusive lock on a file beside it."""
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise BuildError(f"another build is writing {path.name.removesuffix('.building.lock')[1:]} in "
                             f"{path.parent} (it holds {path}); wait for it to finish or stop it") from exc
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _prepare_work(work: Path, manifest: Manifest, resume: bool) -> None:
    """Keep the work folder of a killed build of the same inputs (minus half-written files); else start empty."""
    if work.is_dir() and resume and manifest.matches():
        _remove_partial(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)


def _remove_partial(work: Path) -> None:
    """Remove the temporary files (`.<name>.<random>`, `tiles.tileset.write_atomic`) killed tasks left in `work`."""
    for f in work.rglob(".*"):
        if f.is_file() and f.name != MANIFEST:
            f.unlink()


def _fingerprint(level: int, inputs: dict[str, str | None], crs: Any, *options: Any) -> str:
    """What makes two builds the same build: the inputs (path, size, modification time of every file), the level,
    the CRS and every option except how many workers run it."""
    from cim import __version__

    files: dict[str, Any] = {}
    for name, path in inputs.items():
        if path is None:
            continue
        p = Path(path)
        listing = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        files[name] = [path] + [(str(f.relative_to(p)) if f != p else "", f.stat().st_size, f.stat().st_mtime_ns)
                                for f in listing]
    opts = []
    for o in options:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            opts.append(repr({k: v for k, v in dataclasses.asdict(o).items() if k != "workers"}))
        else:
            opts.append(repr(o))
    return json.dumps({"version": __version__, "level": level, "crs": None if crs is None else str(crs),
                       "inputs": files, "options": opts}, sort_keys=True, default=str)


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
