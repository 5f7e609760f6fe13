"""The sample city's public face: `SampleCity`, `generate`, `load`, the cached default city, content digests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import cim
from cim.errors import CimError, InputError, InputNotFoundError, OutputExistsError
from cim.files import replace_dir, user_path
from cim.sample.common import (
    DEFAULT_BUILDINGS,
    DEFAULT_SEED,
    GENERATOR,
    MANIFEST,
    VECTOR_LAYERS,
    FootprintFormat,
    Progress,
)


@dataclass(frozen=True)
class SampleCity:
    """A sample city on disk.

    Attributes:
        root: the folder holding the city and its manifest.
        crs: "EPSG:4547".
        bounds: (minx, miny, maxx, maxy) of the city in EPSG:4547.
        dem: terrain model GeoTIFF (None only when generated with `rasters=False`).
        dsm: surface model GeoTIFF on the DEM's grid (None only when generated with `rasters=False`).
        ortho: orthophoto COG (None when generated without rasters or without the orthophoto).
        buildings: footprints file (GeoPackage, or GeoParquet with `footprint_format="parquet"`).
        layers: every vector layer by its suggested layer name (including "buildings").
        manifest: the `sample.json` manifest.
        n_buildings: number of building footprints.
        oblique: `metadata.xml` of the synthetic oblique production in `oblique/` (None when not written).
    """

    root: Path
    crs: str
    bounds: tuple[float, float, float, float]
    dem: Path | None
    dsm: Path | None
    ortho: Path | None
    buildings: Path
    layers: dict[str, Path]
    manifest: Path
    n_buildings: int
    oblique: Path | None = None

    def relocated(self, root: Path) -> SampleCity:
        """The same city moved to the folder `root` (paths rebased)."""

        def move(path: Path | None) -> Path | None:
            return None if path is None else root / path.relative_to(self.root)

        return SampleCity(root=root, crs=self.crs, bounds=self.bounds, dem=move(self.dem), dsm=move(self.dsm),
                          ortho=move(self.ortho), buildings=root / self.buildings.relative_to(self.root),
                          layers={k: root / v.relative_to(self.root) for k, v in self.layers.items()},
                          manifest=root / MANIFEST, n_buildings=self.n_buildings, oblique=move(self.oblique))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (paths as strings)."""
        return {
            "root": str(self.root),
            "crs": self.crs,
            "bounds": list(self.bounds),
            "dem": _opt_str(self.dem),
            "dsm": _opt_str(self.dsm),
            "ortho": _opt_str(self.ortho),
            "buildings": str(self.buildings),
            "layers": {k: str(v) for k, v in self.layers.items()},
            "manifest": str(self.manifest),
            "n_buildings": self.n_buildings,
            "oblique": _opt_str(self.oblique),
        }


def _opt_str(p: Path | None) -> str | None:
    return None if p is None else str(p)


def generate(
    out: str | Path,
    *,
    buildings: int = DEFAULT_BUILDINGS,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    rasters: bool = True,
    progress: Progress | None = None,
    ortho: bool = True,
    layers: Sequence[str] | None = None,
    footprint_format: FootprintFormat = "gpkg",
    oblique: bool = False,
) -> SampleCity:
    """Generate the sample city into the folder `out`.

    The city is written into a temporary folder next to `out` and renamed at the end, so `out` never holds a
    half-written city. Its area grows with `buildings` (about 2 x 2 km for the default 2,500); raster resolutions
    coarsen so that the DEM stays within 4000 x 4000 px and the orthophoto within 8000 x 8000 px.

    Args:
        out: output folder; must not exist or be empty unless `overwrite`.
        buildings: number of building footprints (at least 1).
        seed: random seed; the same seed and `buildings` give the same content.
        overwrite: replace an existing, non-empty `out`.
        rasters: write the DEM, DSM and orthophoto (False: vectors only, for benchmarks).
        progress: called as progress(stage, fraction done of the whole job).
        ortho: write the orthophoto (the slowest raster).
        layers: vector layers to write (names from `VECTOR_LAYERS`); None writes them all. "buildings" is always
            written.
        footprint_format: "gpkg" (GeoPackage) or "parquet" (GeoParquet, fastest for millions of footprints).
        oblique: also write the synthetic oblique production into `out/oblique/` and list it in the manifest
            (see `add_oblique`; needs the rasters and the orthophoto).

    Returns:
        The generated city.

    Raises:
        OutputExistsError: `out` exists and is not empty, and `overwrite` is False.
        InputError: an argument is out of range.
    """
    out = user_path(out)
    if buildings < 1:
        raise InputError(f"buildings={buildings} must be at least 1")
    if footprint_format not in ("gpkg", "parquet"):
        raise InputError(f"footprint_format={footprint_format!r} must be 'gpkg' or 'parquet'")
    if oblique and not (rasters and ortho):
        raise InputError("the oblique production is made from the DSM and the orthophoto; generate them too "
                         "(--no-oblique to leave it out)")
    wanted = set(VECTOR_LAYERS if layers is None else layers) | {"buildings"}
    unknown = sorted(wanted - set(VECTOR_LAYERS))
    if unknown:
        raise InputError(f"unknown layer(s) {unknown}; choose from {list(VECTOR_LAYERS)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"output {out} exists and is not empty; pass --overwrite to replace it")
    # the generator and the oblique writer import this module (SampleCity, load): import them when used
    from cim.sample.generator import _Generator
    from cim.sample.oblique import add_oblique

    report = progress or (lambda stage, fraction: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        city = _Generator(buildings, seed, report).write(work, rasters=rasters, ortho=ortho, layers=wanted,
                                                           footprint_format=footprint_format)
        if oblique:
            report("oblique", 0.98)
            city = add_oblique(city)
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report("done", 1.0)
    return city.relocated(out)


def load(root: str | Path) -> SampleCity:
    """Read a sample city folder from its manifest.

    Raises:
        InputNotFoundError: `root` or its manifest does not exist.
        InputError: the manifest is not a sample-city manifest.
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise InputNotFoundError(f"{root} is not a sample city: {path} does not exist; create one with `cim sample`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); regenerate it with `cim sample --overwrite`") from exc
    if not isinstance(doc, dict) or doc.get("generator") != GENERATOR or not isinstance(doc.get("files"), list):
        raise InputError(f"{path} is not a sample-city manifest (no generator {GENERATOR!r} and files list)")
    by_kind: dict[str, Path] = {}
    vectors: dict[str, Path] = {}
    for entry in doc["files"]:
        p = root / entry["path"]
        if entry["kind"] == "vector":
            vectors[entry["layer"]] = p
        else:
            by_kind[entry["kind"]] = p
    if "buildings" not in vectors:
        raise InputError(f"{path} lists no buildings layer")
    return SampleCity(
        root=root,
        crs=doc["crs"],
        bounds=tuple(float(v) for v in doc["bounds"]),  # type: ignore[arg-type]
        dem=by_kind.get("dem"),
        dsm=by_kind.get("dsm"),
        ortho=by_kind.get("ortho"),
        buildings=vectors["buildings"],
        layers=vectors,
        manifest=path,
        n_buildings=int(doc["n_buildings"]),
        oblique=by_kind.get("oblique"),
    )


def committed_sample_dir() -> Path:
    """Where the repository keeps the committed default city (`<repo>/data/sample_city`)."""
    return Path(__file__).resolve().parents[2] / "data" / "sample_city"


def cache_dir(seed: int = DEFAULT_SEED) -> Path:
    """The cache folder of the default city: `$CIM_CACHE/sample-<version>-<seed>` (default `~/.cache/cim`)."""
    base = Path(os.environ.get("CIM_CACHE") or Path.home() / ".cache" / "cim")
    return base / f"sample-{cim.__version__}-{seed}"


def is_complete(root: str | Path) -> bool:
    """True when `root` holds a sample-city manifest and every file it lists."""
    try:
        city = load(root)
        doc = json.loads(city.manifest.read_text(encoding="utf-8"))
    except CimError:
        return False
    return all((Path(root) / e["path"]).is_file() for e in doc["files"])


def default_sample() -> SampleCity:
    """The default city (2,500 buildings, seed 7).

    The committed copy under `<repo>/data/sample_city` when it is complete; otherwise (the repository leaves the
    orthophoto out to stay small) the city generated once into `cache_dir()` and reused from there.
    """
    committed = committed_sample_dir()
    if is_complete(committed):
        return load(committed)
    cache = cache_dir(DEFAULT_SEED)
    if is_complete(cache):
        return load(cache)
    try:
        return generate(cache, buildings=DEFAULT_BUILDINGS, seed=DEFAULT_SEED, overwrite=True)
    except OSError:
        if is_complete(cache):  # another process finished first
            return load(cache)
        raise


def content_digest(root: str | Path, *, missing_ok: bool = False) -> dict[str, str]:
    """SHA-256 of the content of every file of a city: vector attributes and geometries, raster pixels and grids.

    File timestamps and container details do not count, so two generations with the same seed and size compare
    equal.

    Args:
        root: the city folder.
        missing_ok: leave out files the manifest lists but the folder lacks (instead of failing).

    Returns:
        {relative path: hex digest}, including the manifest.
    """
    import pyogrio
    import rasterio

    root = Path(root)
    doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    out = {MANIFEST: hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()}
    for entry in doc["files"]:
        p = root / entry["path"]
        if missing_ok and not p.exists():
            continue
        h = hashlib.sha256()
        if entry["kind"] == "oblique":
            # the mesh files come from osgconv or the OBJ writer: their names and the georeference are the content
            h.update(p.read_bytes())
            h.update(repr(sorted(str(f.relative_to(p.parent)) for f in p.parent.rglob("*") if f.is_file())).encode())
        elif entry["kind"] == "vector":
            if p.suffix == ".parquet":
                table = pq.read_table(p)
            else:
                _, table = pyogrio.read_arrow(p, layer=entry["layer"])
            for name in table.column_names:
                h.update(name.encode())
                col = table.column(name).combine_chunks()
                h.update(repr(col.to_pylist()).encode())
        else:
            with rasterio.open(p) as src:
                h.update(repr((src.crs.to_epsg(), tuple(src.transform), src.dtypes, src.nodata)).encode())
                h.update(src.read().tobytes())
        out[entry["path"]] = h.hexdigest()
    return out
