"""The embedded sample city: a deterministic small Chinese city to build, serve and test against without any data.

`generate(out)` writes a district of Datong, Shanxi (平城区, near 113.30E 40.09N) in CGCS2000 / 3-degree
Gauss-Krüger CM 114E (EPSG:4547): a walled old town of courtyard houses (四合院) beside a new district of slab and
tower blocks, split by a river (御河). It writes a DEM and a DSM (GeoTIFF), an orthophoto (COG), building footprints
with the attributes a CIM build needs, roads, river, city wall, administrative divisions and themed business layers
(population, shelters, hazard sources, water-level sensors, height-control zones, trees), each vector layer a
GeoPackage, and a manifest `sample.json` that the layer store and the viewer load the city from.

Data flow: `_plan` (road grid, old town, river, blocks and their zones; grows with the number of buildings) ->
`_lots` (blocks cut into lots, one building each, lots clear of roads/river/wall) -> `_buildings` (shapes and
attributes, vectorised per zone) -> admin divisions, addresses, codes -> business layers -> rasters (terrain
function, DSM with roof shapes from the same roof model, orthophoto rendered in strips) -> manifest.

Same seed and number of buildings give the same attributes, geometries and pixels (see `content_digest`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from shapely import STRtree

import cim
from cim.errors import CimError, InputError, InputNotFoundError, OutputExistsError
from cim.files import replace_dir
from cim.sources.crs import lonlat, parse_crs, transformer

CRS = "EPSG:4547"
CENTER_LONLAT = (113.30, 40.09)
MANIFEST = "sample.json"
OBLIQUE_DIR = "oblique"  # the synthetic oblique production inside a city folder (when written)
GENERATOR = "cim.sample"
DEFAULT_BUILDINGS = 2500
DEFAULT_SEED = 7
ADMIN_CODE = "140213"  # 平城区
ADDRESS_PREFIX = "山西省大同市平城区"
ROOF_TYPES = ("flat", "gabled", "hipped", "pyramidal", "shed")
USES = ("住宅", "商业", "办公", "教育", "医疗", "工业", "文物")
VECTOR_LAYERS = ("buildings", "roads", "river", "river_centerline", "wall", "streets", "communities", "population",
                 "shelters", "hazards", "sensors", "height_zones", "trees")
MAX_DEM_PX = 4000
MAX_ORTHO_PX = 8000

Progress = Callable[[str, float], None]
FootprintFormat = Literal["gpkg", "parquet"]

_GRID = 200.0  # spacing of the road grid (m)
_BASE_SIDE = 2000.0  # side of the smallest city (m)
_NICE_RES = (0.5, 1.0, 2.0, 2.5, 4.0, 5.0, 8.0, 10.0, 20.0, 25.0, 40.0, 50.0)  # all divide _GRID
_SUN_AZIMUTH, _SUN_ELEVATION = 135.0, 55.0

# zones of blocks (index = zone id) and their lot sizes (m along x, y); old-town rows set their own depth
ZONES = ("courtyard", "temple", "oldshop", "slab", "tower", "village", "commercial", "office", "school", "hospital",
         "industrial", "park")
_Z = {name: i for i, name in enumerate(ZONES)}
_LOT = {"slab": (64.0, 31.0), "tower": (42.0, 42.0), "village": (12.0, 13.0), "commercial": (64.0, 56.0),
        "office": (56.0, 56.0), "school": (90.0, 70.0), "hospital": (80.0, 60.0), "industrial": (84.0, 64.0)}
_RECT, _L, _U, _RING, _TWO_Y, _TWO_X = range(6)  # footprint shapes
_FLAT, _GABLED, _HIPPED, _PYRAMIDAL, _SHED = range(5)  # roof types (index into ROOF_TYPES)

# manifest metadata per file: title_zh, title_en, theme (CIM catalogue), department, security
_META: dict[str, tuple[str, str, str, str, str]] = {
    "dem": ("数字高程模型", "Digital elevation model", "时空基础/数字高程模型", "市自然资源和规划局", "internal"),
    "dsm": ("数字表面模型", "Digital surface model", "时空基础/数字表面模型", "市自然资源和规划局", "internal"),
    "ortho": ("数字正射影像", "Orthophoto", "时空基础/遥感影像", "市自然资源和规划局", "internal"),
    "buildings": ("房屋建筑", "Buildings", "时空基础/三维模型/建筑", "市住房和城乡建设局", "internal"),
    "roads": ("道路中心线", "Road centre lines", "时空基础/电子地图/道路", "市交通运输局", "public"),
    "river": ("河流水面", "River surface", "时空基础/电子地图/水系", "市水务局", "public"),
    "river_centerline": ("河流中心线", "River centre line", "时空基础/电子地图/水系", "市水务局", "public"),
    "wall": ("古城墙", "City wall", "规划管控/历史文化保护", "市文物局", "public"),
    "streets": ("街道", "Sub-district (street) boundaries", "时空基础/行政区划", "市民政局", "public"),
    "communities": ("社区", "Community boundaries", "时空基础/行政区划", "市民政局", "public"),
    "population": ("社区人口", "Population by community", "公共专题/人口", "市统计局", "internal"),
    "shelters": ("应急避难场所", "Emergency shelters", "公共专题/应急避难", "市应急管理局", "public"),
    "hazards": ("危险源", "Hazard sources", "公共专题/危险源", "市应急管理局", "confidential"),
    "sensors": ("水位监测站", "Water-level sensors", "物联感知/水位监测", "市水务局", "internal"),
    "height_zones": ("控高分区", "Planning height-control zones", "规划管控/控高分区", "市自然资源和规划局",
                     "internal"),
    "trees": ("树木", "Trees", "资源调查/园林绿化", "市园林局", "public"),
    "oblique": ("倾斜摄影模型", "Oblique photography (synthetic ContextCapture production)", "时空基础/三维模型/倾斜摄影",
                "市自然资源和规划局", "internal"),
}


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


# ------------------------------------------------------------------------------------------------------ public API


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
    out = Path(out)
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
    return Path(__file__).resolve().parents[1] / "data" / "sample_city"


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


def write_oblique(city: SampleCity, out: str | Path, *, tile_size: float = 250.0,
                  fmt: Literal["osgb", "obj"] | None = None, overwrite: bool = False) -> Path:
    """A synthetic oblique-photography production of a sample city (for the level-3 build and its tests).

    The city's DSM (buildings with their roof shapes) becomes a textured mesh in the ContextCapture layout
    (`metadata.xml` + `Data/Tile_+xxx_+yyy/`, two pyramid levels, the orthophoto as texture): `.osgb` when osgconv
    is installed, else OBJ (see `cim.sources.contextcapture.write_dsm_production`) into any folder `out`; the city's
    manifest does not change (`add_oblique` writes it into the city and lists it).

    Raises:
        InputError: the city has no DSM or no orthophoto.
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    from cim.sources.contextcapture import write_dsm_production
    from cim.sources.osgb import has_osgconv

    if city.dsm is None or city.ortho is None:
        raise InputError(f"sample city {city.root} has no DSM or orthophoto; generate it with rasters and ortho")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"output {out} exists and is not empty; pass overwrite=True to replace it")
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_dsm_production(work, city.dsm, city.ortho, bounds=city.bounds, tile_size=tile_size,
                             fmt=fmt or ("osgb" if has_osgconv() else "obj"))
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def add_oblique(city: SampleCity, *, tile_size: float = 250.0,
                fmt: Literal["osgb", "obj"] | None = None) -> SampleCity:
    """Write the synthetic oblique production into the city's folder (`oblique/`) and list it in the manifest.

    The manifest entry has kind "oblique", path `oblique/metadata.xml`, the format (osgb or obj), the number of
    tiles and the tile size. The production is large (about 80 MB as .osgb, 160 MB as OBJ for the default city),
    so the repository's committed city leaves it out, like the orthophoto; `default_sample()` does not add it
    either: the level-3 build and `cim demo` write it beside the cached city when they need it.

    Args:
        city: a sample city with a DSM and an orthophoto.
        tile_size: tile side in metres.
        fmt: "osgb" or "obj"; default osgb when osgconv is installed, else obj.

    Returns:
        The city re-read from its manifest (with `oblique` set).

    Raises:
        InputError: the city has no DSM or no orthophoto.
    """
    from cim.sources.osgb import has_osgconv

    fmt = fmt or ("osgb" if has_osgconv() else "obj")
    folder = write_oblique(city, city.root / OBLIQUE_DIR, tile_size=tile_size, fmt=fmt, overwrite=True)
    files = [p for p in folder.rglob("*") if p.is_file()]
    zh, en, theme, dept, sec = _META["oblique"]
    entry = {
        "kind": "oblique", "path": f"{OBLIQUE_DIR}/metadata.xml", "layer": "oblique", "title_zh": zh, "title_en": en,
        "theme": theme, "department": dept, "security": sec, "geometry_type": None, "feature_count": None,
        "crs": CRS, "bounds": [round(float(v), 3) for v in city.bounds], "format": fmt,
        "tiles": sum(1 for p in (folder / "Data").iterdir() if p.is_dir()), "tile_size": tile_size,
        "files": len(files), "bytes": sum(p.stat().st_size for p in files),
    }
    doc = json.loads(city.manifest.read_text(encoding="utf-8"))
    doc["files"] = [e for e in doc["files"] if e["kind"] != "oblique"] + [entry]
    tmp = city.manifest.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(city.manifest)
    return load(city.root)


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


# --------------------------------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=1)
def _names() -> dict[str, list[Any]]:
    text = resources.files("cim").joinpath("data/sample_names.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _pool(pool: Sequence[str], n: int, suffix: str = "") -> list[str]:
    """`n` distinct names from a pool: the pool, then the pool with ordinals (二, 三, ...), then numbers."""
    ordinals = _names()["ordinals"]
    out = []
    for i in range(n):
        base, rnd = pool[i % len(pool)], i // len(pool)
        tag = ordinals[rnd] if rnd < len(ordinals) else str(rnd + 1)
        out.append(f"{base}{tag}{suffix}")
    return out


def _center() -> tuple[float, float]:
    """City centre in EPSG:4547, rounded to 100 m."""
    x, y = transformer("EPSG:4490", CRS).transform(*CENTER_LONLAT)
    return round(x, -2), round(y, -2)


def _rng(seed: int, stage: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage])


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _join(*parts: Any) -> pa.Array:
    """Element-wise concatenation of string arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _nearest(lines: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the nearest line of each point (a bounded search first: every lot is near a road)."""
    tree = STRtree(lines)
    idx = np.full(len(points), -1, np.int64)
    found = tree.query_nearest(points, max_distance=_GRID, all_matches=False)
    idx[found[0]] = found[1]
    rest = np.flatnonzero(idx < 0)
    if len(rest):
        idx[rest] = tree.query_nearest(points[rest], all_matches=False)[1]
    return idx


# ------------------------------------------------------------------------------------------------------ layout


@dataclass
class _Roads:
    """Road centre lines (axis-aligned segments). Arrays (n,): x0, y0, x1, y1, width float64; cls, name object."""

    x0: list[float] = field(default_factory=list)
    y0: list[float] = field(default_factory=list)
    x1: list[float] = field(default_factory=list)
    y1: list[float] = field(default_factory=list)
    width: list[float] = field(default_factory=list)
    cls: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)

    def add(self, x0: float, y0: float, x1: float, y1: float, width: float, cls: str, name: str) -> None:
        for lst, v in zip((self.x0, self.y0, self.x1, self.y1, self.width, self.cls, self.name),
                          (x0, y0, x1, y1, width, cls, name)):
            lst.append(v)

    def lines(self) -> np.ndarray:
        coords = np.stack([np.column_stack([self.x0, self.y0]), np.column_stack([self.x1, self.y1])], axis=1)
        return shapely.linestrings(coords)

    def surfaces(self) -> np.ndarray:
        return shapely.buffer(self.lines(), np.asarray(self.width) / 2, cap_style="flat")


@dataclass
class _Plan:
    """The layout of a city of side `side` m with its lower-left corner at (x0, y0) in EPSG:4547."""

    side: float
    x0: float
    y0: float
    cx: float  # old-town centre (crossing of its main streets)
    cy: float
    rx: float  # mean x of the river
    river_phase: float
    roads: _Roads
    walls: list[Any]
    blocks: dict[str, np.ndarray]  # bx0, by0, bx1, by1, lw, lh, zone, group
    groups: dict[str, np.ndarray]  # gx0, gy0, gx1, gy1, zone, key (keep priority)
    parks: list[tuple[Any, str]]
    comm_x: np.ndarray
    comm_y: np.ndarray

    river_amp = 40.0
    river_wave = 1100.0
    river_half = 30.0
    bank = 10.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    def river_x(self, y: np.ndarray) -> np.ndarray:
        """x of the river centre line at northing `y` (any shape, float64)."""
        return self.rx + self.river_amp * np.sin(2 * np.pi * (np.asarray(y) - self.y0) / self.river_wave
                                                 + self.river_phase)

    def river_line(self) -> Any:
        y = np.linspace(self.y0 + self.side, self.y0, int(self.side / 10) + 1)  # flows south
        return shapely.linestrings(np.column_stack([self.river_x(y), y]))

    def river_polygon(self) -> Any:
        return shapely.buffer(self.river_line(), self.river_half, cap_style="flat")


def _plan(side: float, seed: int) -> _Plan:
    """Lay out the city: road grid, walled old town, river, blocks with zones, communities."""
    rng = _rng(seed, 1)
    names = _names()
    ex, ey = _center()
    x0, y0 = ex - side / 2, ey - side / 2
    m = int(round(side / _GRID))
    lines = np.array([_GRID / 2 + _GRID * k for k in range(m)])  # local positions of grid lines
    cxl = _GRID / 2 + _GRID * math.floor((side / 2 - 300 - _GRID / 2) / _GRID)
    cyl = _GRID / 2 + _GRID * math.floor((side / 2 - _GRID / 2) / _GRID)
    cx, cy = x0 + cxl, y0 + cyl
    rx = cx + 700.0
    sq = (cx - 400, cy - 400, cx + 400, cy + 400)  # old-town square (ring-road centre lines)
    xs, ys = x0 + lines, y0 + lines

    def is_main(p: float, c: float) -> bool:
        return abs((p - c) % 400) < 1e-6

    def hw(p: float, c: float) -> float:
        return 18.0 if is_main(p, c) else 10.0

    roads = _Roads()
    pool = names["roads"]
    ns_names = _pool(pool, len(xs))
    ew_names = _pool(pool[len(pool) // 2:] + pool[: len(pool) // 2], len(ys))
    for axis, positions, c, other_c, nm in (("x", xs, cx, cy, ns_names), ("y", ys, cy, cx, ew_names)):
        for p, base in zip(positions, nm):
            main = is_main(p, c)
            width, cls = (36.0, "主干路") if main else (20.0, "次干路")
            name = base + (("大道" if main else "路") if axis == "x" else ("大街" if main else "街"))
            lo, hi = other_c - 400, other_c + 400
            start, end = (y0, y0 + side) if axis == "x" else (x0, x0 + side)
            inside = c - 400 - 1e-6 < p < c + 400 + 1e-6
            ring = abs(abs(p - c) - 400) < 1e-6
            if not inside:
                spans = [(start, end, name)]
            elif ring:
                side_name = {("x", -1): "西环城路", ("x", 1): "东环城路", ("y", -1): "南环城路",
                             ("y", 1): "北环城路"}[(axis, int(np.sign(p - c)))]
                spans = [(start, lo, name), (lo, hi, side_name), (hi, end, name)]
            else:
                spans = [(start, lo, name), (hi, end, name)]
            for a, b, nme in spans:
                if b - a > 1:
                    seg = (p, a, p, b) if axis == "x" else (a, p, b, p)
                    roads.add(*seg, width, cls, nme)
    # old town: main cross streets through the gates, two minor streets each way, lanes in between
    roads.add(cx, cy, cx, cy + 400, 24.0, "主干路", "大北街")
    roads.add(cx, cy - 400, cx, cy, 24.0, "主干路", "大南街")
    roads.add(cx - 400, cy, cx, cy, 24.0, "主干路", "大西街")
    roads.add(cx, cy, cx + 400, cy, 24.0, "主干路", "大东街")
    wall_out, wall_in = 376.0, 362.0
    old_names = names["oldtown_streets"]
    for k, d in enumerate((-200.0, 200.0)):
        roads.add(cx + d, cy - wall_in, cx + d, cy + wall_in, 14.0, "支路", old_names[k])
        roads.add(cx - wall_in, cy + d, cx + wall_in, cy + d, 14.0, "支路", old_names[k + 2])
    ring = shapely.difference(shapely.box(cx - wall_out, cy - wall_out, cx + wall_out, cy + wall_out),
                              shapely.box(cx - wall_in, cy - wall_in, cx + wall_in, cy + wall_in))
    gates = shapely.union(shapely.box(cx - 14, cy - 500, cx + 14, cy + 500),
                          shapely.box(cx - 500, cy - 14, cx + 500, cy + 14))
    walls = sorted(shapely.get_parts(shapely.difference(ring, gates)),
                   key=lambda g: (-round(g.centroid.y), round(g.centroid.x)))

    block_rows: list[tuple[float, float, float, float, float, float, int, int]] = []
    group_rows: list[tuple[float, float, float, float, int]] = []
    # old-town sections between streets and wall; rows of courtyard lots between east-west lanes
    edges = [(-wall_in, -207.0), (-193.0, -12.0), (12.0, 193.0), (207.0, wall_in)]
    lane_names = _pool(names["lanes"], 64, "巷")
    strips: list[tuple[float, float, float, float, int]] = []
    for sy0, sy1 in edges:
        for sx0, sx1 in edges:
            g = len(group_rows)
            group_rows.append((cx + sx0, cy + sy0, cx + sx1, cy + sy1, _Z["courtyard"]))
            n_strips = max(1, int(round((sy1 - sy0) / 46)))
            pitch = (sy1 - sy0) / n_strips
            for k in range(n_strips):
                a = cy + sy0 + k * pitch + (3.0 if k else 0.0)
                b = cy + sy0 + (k + 1) * pitch - (3.0 if k < n_strips - 1 else 0.0)
                strips.append((cx + sx0 + 2, a + 2 * (k == 0), cx + sx1 - 2, b - 2 * (k == n_strips - 1), g))
                if k:
                    lane_y = cy + sy0 + k * pitch
                    roads.add(cx + sx0, lane_y, cx + sx1, lane_y, 6.0, "街巷",
                              lane_names[len([c for c in roads.cls if c == "街巷"]) % len(lane_names)])
    temple_strips = set(rng.choice(len(strips), size=2, replace=False).tolist())
    for k, (a0, b0, a1, b1, g) in enumerate(strips):
        if k in temple_strips:
            block_rows.append((a0, b0, a1, b1, 40.0, (b1 - b0) * 0.999, _Z["temple"], g))
        else:
            mid = (b0 + b1) / 2
            for r0, r1 in ((b0, mid), (mid, b1)):
                block_rows.append((a0, r0, a1, r1, 16.0, (r1 - r0) * 0.999, _Z["courtyard"], g))
    # new district: cells between grid lines
    bx = [x0] + list(xs) + [x0 + side]
    by = [y0] + list(ys) + [y0 + side]
    cells = []
    for j in range(len(by) - 1):
        for i in range(len(bx) - 1):
            a0 = bx[i] + (hw(bx[i], cx) + 6 if i > 0 else 4)
            a1 = bx[i + 1] - (hw(bx[i + 1], cx) + 6 if i + 1 < len(bx) - 1 else 4)
            b0 = by[j] + (hw(by[j], cy) + 6 if j > 0 else 4)
            b1 = by[j + 1] - (hw(by[j + 1], cy) + 6 if j + 1 < len(by) - 1 else 4)
            mx, my = (bx[i] + bx[i + 1]) / 2, (by[j] + by[j + 1]) / 2
            if sq[0] < mx < sq[2] and sq[1] < my < sq[3]:
                continue
            cells.append((a0, b0, a1, b1, bx[i] < rx < bx[i + 1]))
    cells_a = np.array([c[:4] for c in cells])
    river_col = np.array([c[4] for c in cells])
    centre = np.array([cx + 450, cy])
    ccx, ccy = (cells_a[:, 0] + cells_a[:, 2]) / 2, (cells_a[:, 1] + cells_a[:, 3]) / 2
    dist = np.hypot(ccx - centre[0], ccy - centre[1]) / (side / 2) + rng.random(len(cells)) * 0.15
    zone = np.full(len(cells), -1)
    zone[river_col] = _Z["park"]
    free = np.flatnonzero(~river_col)
    n = len(free)
    full = (cells_a[:, 2] - cells_a[:, 0] > 150) & (cells_a[:, 3] - cells_a[:, 1] > 150)
    far = [i for i in free[np.argsort(-dist[free], kind="stable")] if full[i]]
    zone[far[: int(round(0.08 * n))]] = _Z["industrial"]
    near = [i for i in free[np.argsort(dist[free], kind="stable")] if zone[i] < 0]
    k_com, k_off = max(1, round(0.09 * n)), max(1, round(0.05 * n))
    zone[near[:k_com]] = _Z["commercial"]
    zone[near[k_com:k_com + k_off]] = _Z["office"]
    rest = rng.permutation([i for i in free if zone[i] < 0])
    quotas = [("park", max(1, round(0.06 * n))), ("school", max(1, round(0.06 * n))),
              ("hospital", max(1, round(0.025 * n))), ("village", round(0.10 * n))]
    pos = 0
    for zname, q in quotas:
        zone[rest[pos:pos + q]] = _Z[zname]
        pos += q
    left = rest[pos:]
    zone[left] = np.where(rng.random(len(left)) < 0.55, _Z["slab"], _Z["tower"])
    park_pool = _pool(names["parks"], int((zone == _Z["park"]).sum()) + 1, "公园")
    parks: list[tuple[Any, str]] = []
    for i, (a0, b0, a1, b1, _) in enumerate(cells):
        g = len(group_rows)
        group_rows.append((a0, b0, a1, b1, int(zone[i])))
        zn = ZONES[zone[i]]
        if zn == "park":
            parks.append((shapely.box(a0, b0, a1, b1), "御河滨河公园" if river_col[i] else park_pool[len(parks)]))
        elif a1 > a0 and b1 > b0:
            lw, lh = _LOT[zn]
            block_rows.append((a0, b0, a1, b1, lw, lh, int(zone[i]), g))
    blocks_a = np.array(block_rows, dtype=np.float64)
    blocks = {k: blocks_a[:, i] for i, k in enumerate(("bx0", "by0", "bx1", "by1", "lw", "lh"))}
    blocks["zone"] = blocks_a[:, 6].astype(np.int64)
    blocks["group"] = blocks_a[:, 7].astype(np.int64)
    groups_a = np.array(group_rows, dtype=np.float64)
    groups = {k: groups_a[:, i] for i, k in enumerate(("gx0", "gy0", "gx1", "gy1"))}
    groups["zone"] = groups_a[:, 4].astype(np.int64)
    gd = np.hypot((groups["gx0"] + groups["gx1"]) / 2 - centre[0], (groups["gy0"] + groups["gy1"]) / 2 - centre[1])
    special = np.isin(groups["zone"], [_Z[z] for z in ("school", "hospital", "industrial", "commercial", "office")])
    groups["key"] = gd + rng.random(len(gd)) * 250.0 - 1e5 * special  # keep one of each kind first

    def boundaries(positions: np.ndarray, c: float, lo: float) -> np.ndarray:
        chosen = [lo]
        for p in positions:
            if is_main(p, c) and p - chosen[-1] >= 400 and lo + side - p >= 400:
                chosen.append(p)
        return np.array(chosen + [lo + side])

    return _Plan(side=side, x0=x0, y0=y0, cx=cx, cy=cy, rx=rx, river_phase=float(rng.uniform(0, 2 * np.pi)),
                 roads=roads, walls=list(walls), blocks=blocks, groups=groups, parks=parks,
                 comm_x=boundaries(xs, cx, x0), comm_y=boundaries(ys, cy, y0))


def _lots(plan: _Plan) -> dict[str, np.ndarray]:
    """Cut blocks into lots and keep those clear of roads, river (with its banks) and the wall."""
    b = plan.blocks
    nx = np.floor((b["bx1"] - b["bx0"]) / b["lw"]).clip(0).astype(np.int64)
    ny = np.floor((b["by1"] - b["by0"]) / b["lh"]).clip(0).astype(np.int64)
    cnt = nx * ny
    blk = np.repeat(np.arange(len(cnt)), cnt)
    j = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ix, iy = j % nx[blk], j // nx[blk]
    dx = (b["bx1"] - b["bx0"])[blk] / nx[blk]
    dy = (b["by1"] - b["by0"])[blk] / ny[blk]
    lx0 = b["bx0"][blk] + ix * dx
    ly0 = b["by0"][blk] + iy * dy
    lots = {"x0": lx0, "y0": ly0, "x1": lx0 + dx, "y1": ly0 + dy, "zone": b["zone"][blk].copy(),
            "group": b["group"][blk], "block": blk}
    river = shapely.buffer(plan.river_polygon(), plan.bank)
    forbidden = np.concatenate([plan.roads.surfaces(), [river], shapely.buffer(np.array(plan.walls), 1.0)])
    # lots may touch a road's edge (their buildings are inset), not overlap it
    inner = shapely.box(lots["x0"] + 0.3, lots["y0"] + 0.3, lots["x1"] - 0.3, lots["y1"] - 0.3)
    hit = STRtree(forbidden).query(inner, predicate="intersects")[0]
    keep = np.ones(len(inner), bool)
    keep[hit] = False
    lots = {k: v[keep] for k, v in lots.items()}
    # courtyard lots on the old town's main cross streets are shops
    near_main = np.minimum(np.minimum(np.abs(lots["x0"] - plan.cx), np.abs(lots["x1"] - plan.cx)),
                           np.minimum(np.abs(lots["y0"] - plan.cy), np.abs(lots["y1"] - plan.cy))) < 36
    lots["zone"][(lots["zone"] == _Z["courtyard"]) & near_main] = _Z["oldshop"]
    return lots


def _layout(n: int, seed: int) -> tuple[_Plan, dict[str, np.ndarray]]:
    """The smallest grid-aligned city (at least 2 x 2 km) with room for `n` buildings, and the `n` lots used."""
    side = _BASE_SIDE
    while True:
        plan = _plan(side, seed)
        lots = _lots(plan)
        cap = len(lots["x0"])
        if cap >= n:
            break
        side += _GRID * max(1, math.ceil(side * (math.sqrt(n / cap * 1.02) - 1) / _GRID))
    rng = _rng(seed, 2)
    order = np.lexsort((rng.random(cap), plan.groups["key"][lots["group"]]))[:n]
    order.sort()
    return plan, {k: v[order] for k, v in lots.items()}


# --------------------------------------------------------------------------------------------------- buildings


@dataclass
class _Buildings:
    """Building arrays, all (n,) unless said: shape parameters, roof model, attributes (see `_buildings`)."""

    kind: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    w: np.ndarray  # wing width (L, U, ring)
    a: np.ndarray  # first part size (two-part shapes)
    b: np.ndarray  # second part size
    fx: np.ndarray
    fy: np.ndarray
    roof: np.ndarray
    eave: np.ndarray
    ridge: np.ndarray
    height: np.ndarray  # median roof height above ground (LOD1 height)
    floors: np.ndarray
    use: np.ndarray
    year: np.ndarray
    zone: np.ndarray
    group: np.ndarray
    color: np.ndarray  # (n, 3) float32 roof colour
    geom: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    base: np.ndarray = field(default_factory=lambda: np.empty(0))  # terrain height at the bbox centre
    boundary: np.ndarray = field(default_factory=lambda: np.empty(0, object))

    def take(self, idx: np.ndarray) -> _Buildings:
        return _Buildings(**{k: (v[idx] if isinstance(v, np.ndarray) and len(v) else v)
                             for k, v in self.__dict__.items()})


def _median_fraction(k: np.ndarray) -> np.ndarray:
    """Median of a hipped roof profile clip(d / (b/2), 0, 1) over an a x b rectangle, k = b / a in (0, 1]."""
    k = np.clip(k, 1e-6, 1.0)
    return ((1 + k) - np.sqrt((1 + k) ** 2 - 2 * k)) / (2 * k)


def _buildings(lots: dict[str, np.ndarray], seed: int) -> _Buildings:
    """Footprint shapes and attributes for each lot, vectorised per zone."""
    rng = _rng(seed, 3)
    n = len(lots["x0"])
    u = rng.random((12, n))
    zone = lots["zone"]
    lx0, ly0, lx1, ly1 = lots["x0"], lots["y0"], lots["x1"], lots["y1"]
    x0, y0, x1, y1 = lx0 + 1.0, ly0 + 1.0, lx1 - 1.0, ly1 - 1.0
    kind = np.full(n, _RECT)
    roof = np.full(n, _FLAT)
    w, a, b = np.zeros(n), np.zeros(n), np.zeros(n)
    fx, fy = u[4] < 0.5, u[5] < 0.5
    floors = np.ones(n, np.int64)
    eave = np.zeros(n)
    pitch = np.zeros(n)  # ridge - eave
    use = np.zeros(n, np.int64)
    year = np.zeros(n, np.int64)
    color = np.zeros((n, 3))

    def pick(m: np.ndarray, p: np.ndarray, choices: Sequence[int], probs: Sequence[float]) -> np.ndarray:
        edges = np.cumsum(probs)
        return np.asarray(choices)[np.minimum(np.searchsorted(edges, p[m], side="right"), len(choices) - 1)]

    def paint(m: np.ndarray, rgb: Sequence[float], spread: float, p: np.ndarray) -> None:
        color[m] = np.asarray(rgb, float) + spread * (p[m, None] - 0.5) * np.array([1.0, 1.0, 1.0])

    z = _Z
    # courtyard houses (四合院) and old-town shops
    m = zone == z["courtyard"]
    x0[m], y0[m], x1[m], y1[m] = lx0[m] + 0.6, ly0[m] + 0.6, lx1[m] - 0.6, ly1[m] - 0.6
    kind[m] = pick(m, u[0], (_RING, _U, _L, _TWO_Y, _RECT), (0.35, 0.2, 0.2, 0.15, 0.1))
    w[m] = 4.2 + 1.3 * u[1][m]
    a[m], b[m] = 4.5 + 1.0 * u[2][m], 6.0 + 1.5 * u[3][m]
    fy[m & (kind == _U)] = True
    roof[m] = np.where(kind[m] == _RECT, _FLAT, np.where((u[6][m] < 0.8) | (kind[m] == _TWO_Y), _GABLED, _HIPPED))
    floors[m] = np.where(kind[m] == _RECT, 2, 1)
    eave[m] = np.where(kind[m] == _RECT, 6.2, 3.0) + 0.6 * u[7][m]
    pitch[m] = np.where(kind[m] == _RECT, 0.0, 1.8 + 0.8 * u[8][m])
    year[m] = np.where(kind[m] == _RECT, 1990 + 30 * u[9][m], 1880 + 100 * u[9][m])
    paint(m, (90, 93, 98), 16, u[10])
    color[m & (kind == _RECT)] = (150, 146, 140)
    m = zone == z["oldshop"]
    x0[m], y0[m], x1[m], y1[m] = lx0[m] + 0.6, ly0[m] + 0.6, lx1[m] - 0.6, ly1[m] - 0.6
    kind[m] = pick(m, u[0], (_RECT, _TWO_Y, _L), (0.6, 0.2, 0.2))
    w[m], a[m], b[m] = 5.0 + 1.5 * u[1][m], 5.0 + u[2][m], 6.5 + u[3][m]
    roof[m] = _GABLED
    floors[m] = 2
    eave[m] = 6.0 + 0.8 * u[7][m]
    pitch[m] = 2.0 + 0.6 * u[8][m]
    use[m] = 1
    year[m] = 1995 + 25 * u[9][m]
    paint(m, (84, 86, 90), 14, u[10])
    m = zone == z["temple"]
    x0[m], x1[m] = lx0[m] + 5 + 3 * u[1][m], lx1[m] - 5 - 3 * u[1][m]
    y0[m], y1[m] = ly0[m] + 4 + 3 * u[2][m], ly1[m] - 4 - 3 * u[2][m]
    roof[m] = _HIPPED
    eave[m] = 7.0 + 2.0 * u[7][m]
    pitch[m] = 5.0 + 2.0 * u[8][m]
    use[m] = 6
    years = np.asarray(_names()["temple_years"])
    year[m] = years[(u[9][m] * len(years)).astype(int)]
    color[m] = np.where(u[10][m, None] < 0.3, [[150, 128, 72]], [[96, 102, 96]])
    # slab blocks: north-aligned rows, six-storey walk-ups and 11-18 storey slabs
    m = zone == z["slab"]
    mx = 4 + 3 * u[1]
    depth = 11 + 3 * u[2]
    kind[m] = pick(m, u[0], (_RECT, _L, _TWO_X), (0.85, 0.07, 0.08))
    x0[m], x1[m] = lx0[m] + mx[m], lx1[m] - mx[m]
    y1[m] = ly1[m] - (3 + 2 * u[3][m])
    y0[m] = y1[m] - np.where(kind[m] == _L, depth[m] + 8, depth[m])
    w[m] = depth[m]
    fy[m] = True
    span = x1 - x0
    a[m], b[m] = 0.45 * span[m], 0.45 * span[m]
    floors[m] = np.where(u[6][m] < 0.6, 5 + (3 * u[7][m]).astype(int), 11 + (8 * u[7][m]).astype(int))
    eave[m] = floors[m] * 2.9 + 0.6
    gab = m & (floors <= 7) & (u[8] < 0.35)
    roof[gab] = _GABLED
    pitch[gab] = 2.5 + u[9][gab]
    year[m] = np.where(floors[m] <= 7, 1985 + 20 * u[9][m], 2003 + 20 * u[9][m])
    paint(m, (178, 178, 172), 30, u[10])
    color[gab] = np.where(u[11][gab, None] < 0.6, [[150, 78, 60]], [[118, 62, 52]])
    # point towers
    m = zone == z["tower"]
    size = 20 + 6 * u[1]
    jx = (u[2] - 0.5) * ((lx1 - lx0) - size - 10).clip(0)
    jy = (u[3] - 0.5) * ((ly1 - ly0) - size - 10).clip(0)
    mxc, myc = (lx0 + lx1) / 2 + jx, (ly0 + ly1) / 2 + jy
    x0[m], x1[m], y0[m], y1[m] = (mxc - size / 2)[m], (mxc + size / 2)[m], (myc - size / 2)[m], (myc + size / 2)[m]
    kind[m] = pick(m, u[0], (_RECT, _L), (0.75, 0.25))
    w[m] = 0.55 * size[m]
    floors[m] = 18 + (16 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.0 + 1.5
    pyr = m & (kind == _RECT) & (u[7] < 0.2)
    roof[pyr] = _PYRAMIDAL
    pitch[pyr] = 4.0 + 2.0 * u[8][pyr]
    year[m] = 2005 + 18 * u[9][m]
    paint(m, (182, 184, 180), 26, u[10])
    # urban village (城中村): small dense houses
    m = zone == z["village"]
    ins = 0.6 + 0.6 * u[1]
    x0[m], y0[m], x1[m], y1[m] = (lx0 + ins)[m], (ly0 + ins)[m], (lx1 - ins)[m], (ly1 - ins)[m]
    kind[m] = pick(m, u[0], (_RECT, _L), (0.85, 0.15))
    w[m] = 0.55 * np.minimum(x1 - x0, y1 - y0)[m]
    floors[m] = 1 + (u[6][m] > 0.3) + (u[6][m] > 0.75)
    eave[m] = floors[m] * 2.9 + 0.3
    gab = m & (u[7] < 0.3)
    roof[gab] = _GABLED
    pitch[gab] = 1.5 + u[8][gab]
    use[m] = np.where(u[2][m] < 0.1, 1, 0)
    year[m] = 1980 + 35 * u[9][m]
    paint(m, (146, 139, 126), 40, u[10])
    color[gab] = np.where(u[11][gab, None] < 0.5, [[140, 72, 56]], [[82, 112, 150]])
    # shops, offices, schools, hospitals, factories
    m = zone == z["commercial"]
    x0[m], x1[m] = (lx0 + 4 + 5 * u[1])[m], (lx1 - 4 - 5 * u[1])[m]
    y0[m], y1[m] = (ly0 + 4 + 4 * u[2])[m], (ly1 - 4 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_RECT, _RING, _U), (0.55, 0.25, 0.2))
    w[m] = 11 + 4 * u[3][m]
    floors[m] = 2 + (5 * u[6][m]).astype(int)
    eave[m] = floors[m] * 4.2 + 1.0
    use[m] = 1
    year[m] = 1995 + 28 * u[9][m]
    paint(m, (168, 170, 172), 36, u[10])
    m = zone == z["office"]
    sw, sh = 26 + 10 * u[1], 26 + 10 * u[2]
    mxc, myc = (lx0 + lx1) / 2, (ly0 + ly1) / 2
    x0[m], x1[m], y0[m], y1[m] = (mxc - sw / 2)[m], (mxc + sw / 2)[m], (myc - sh / 2)[m], (myc + sh / 2)[m]
    kind[m] = pick(m, u[0], (_RECT, _L), (0.7, 0.3))
    w[m] = 0.5 * np.minimum(sw, sh)[m]
    floors[m] = 12 + (19 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.6 + 2.0
    pyr = m & (kind == _RECT) & (u[7] < 0.25)
    roof[pyr] = _PYRAMIDAL
    pitch[pyr] = 5.0 + 3.0 * u[8][pyr]
    use[m] = 2
    year[m] = 2000 + 23 * u[9][m]
    paint(m, (192, 194, 197), 20, u[10])
    m = zone == z["school"]
    x0[m], x1[m] = (lx0 + 8 + 4 * u[1])[m], (lx1 - 8 - 4 * u[1])[m]
    y1[m] = (ly1 - 10 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_U, _L, _RECT), (0.45, 0.25, 0.3))
    y0[m] = np.where(kind[m] == _RECT, y1[m] - 14 - 2 * u[3][m], (ly0 + 10 + 4 * u[2])[m])
    w[m] = 13 + 3 * u[3][m]
    floors[m] = 3 + (3 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.8 + 0.8
    hip = m & (u[7] < 0.4)
    roof[hip] = _HIPPED
    pitch[hip] = 2.5 + u[8][hip]
    use[m] = 3
    year[m] = 1980 + 40 * u[9][m]
    paint(m, (176, 170, 160), 20, u[10])
    color[hip] = (152, 80, 62)
    m = zone == z["hospital"]
    x0[m], x1[m] = (lx0 + 6 + 4 * u[1])[m], (lx1 - 6 - 4 * u[1])[m]
    y1[m] = (ly1 - 6 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_L, _RING, _RECT), (0.45, 0.2, 0.35))
    y0[m] = np.where(kind[m] == _RECT, y1[m] - 18 - 2 * u[3][m], (ly0 + 6 + 4 * u[2])[m])
    w[m] = 14 + 2 * u[3][m]
    floors[m] = 5 + (10 * u[6][m]).astype(int)
    eave[m] = floors[m] * 3.9 + 1.2
    use[m] = 4
    year[m] = 1985 + 35 * u[9][m]
    paint(m, (206, 206, 200), 14, u[10])
    m = zone == z["industrial"]
    x0[m], x1[m] = (lx0 + 6 + 4 * u[1])[m], (lx1 - 6 - 4 * u[1])[m]
    y0[m], y1[m] = (ly0 + 8 + 4 * u[2])[m], (ly1 - 8 - 4 * u[2])[m]
    kind[m] = pick(m, u[0], (_RECT, _TWO_X), (0.9, 0.1))
    span = x1 - x0
    a[m], b[m] = 0.45 * span[m], 0.45 * span[m]
    floors[m] = np.where(u[6][m] < 0.8, 1, 2)
    eave[m] = np.where(floors[m] == 1, 6 + 4 * u[7][m], 9 + 3 * u[7][m])
    r = pick(m, u[8], (_SHED, _GABLED, _FLAT), (0.35, 0.5, 0.15))
    roof[m] = np.where((r == _SHED) & (kind[m] != _RECT), _GABLED, r)
    pitch[m] = np.where(roof[m] == _SHED, 1.5 + 1.5 * u[9][m], np.where(roof[m] == _GABLED, 2 + 1.5 * u[9][m], 0))
    use[m] = 5
    year[m] = 1960 + 55 * u[9][m]
    palette = np.array([[78, 118, 160], [150, 154, 158], [205, 205, 200], [150, 92, 64]], float)
    color[m] = palette[(u[10][m] * 4).astype(int)]

    # shapes that do not fit their box become rectangles
    W, H = x1 - x0, y1 - y0
    bad = (((kind == _L) & (w > np.minimum(W, H) - 2)) | ((kind == _U) & ((w > (W - 3) / 2) | (w > H - 2)))
           | ((kind == _RING) & ((w > (W - 3) / 2) | (w > (H - 3) / 2)))
           | ((kind == _TWO_Y) & (a + b > H - 2)) | ((kind == _TWO_X) & (a + b > W - 2)))
    kind[bad] = _RECT
    roof[(roof == _SHED) & (kind != _RECT)] = _GABLED
    roof[(roof == _PYRAMIDAL) & (kind != _RECT)] = _HIPPED
    pitch[roof == _FLAT] = 0.0
    eave = np.round(eave, 1)
    ridge = np.round(eave + pitch, 1)
    # median of the roof surface over the footprint (what the DSM shows): the LOD1 height
    frac = np.zeros(n)
    frac[(roof == _GABLED) | (roof == _SHED)] = 0.5
    hipped_rect = ((roof == _HIPPED) | (roof == _PYRAMIDAL)) & (kind == _RECT)
    frac[hipped_rect] = _median_fraction(np.minimum(W, H) / np.maximum(W, H))[hipped_rect]
    for k, length in ((_L, W + H - w), (_U, W + 2 * H - 2 * w), (_RING, 2 * (W + H) - 4 * w)):
        mk = (kind == k) & (roof != _FLAT)
        frac[mk] = _median_fraction(w / length)[mk]
    height = np.round(eave + frac * (ridge - eave), 1)
    return _Buildings(kind=kind, x0=x0, y0=y0, x1=x1, y1=y1, w=w, a=a, b=b, fx=fx, fy=fy, roof=roof, eave=eave,
                      ridge=ridge, height=height, floors=floors, use=use, year=year, zone=zone,
                      group=lots["group"], color=color.clip(0, 255).astype(np.float32))


def _footprints(bl: _Buildings) -> np.ndarray:
    """(n,) shapely geometries: rectangles, L, U, rings with a courtyard hole, two-part MultiPolygons."""
    n = len(bl.kind)
    geom = np.empty(n, dtype=object)
    W, H = bl.x1 - bl.x0, bl.y1 - bl.y0

    m = bl.kind == _RECT
    geom[m] = shapely.box(bl.x0[m], bl.y0[m], bl.x1[m], bl.y1[m])
    for k in (_L, _U):
        m = bl.kind == k
        if not m.any():
            continue
        Wm, Hm, wm = W[m, None], H[m, None], bl.w[m, None]
        zero = np.zeros_like(Wm)
        if k == _L:  # bottom strip + left strip
            xs = np.hstack([zero, Wm, Wm, wm, wm, zero, zero])
            ys = np.hstack([zero, zero, wm, wm, Hm, Hm, zero])
        else:  # U open to the top
            xs = np.hstack([zero, Wm, Wm, Wm - wm, Wm - wm, wm, wm, zero, zero])
            ys = np.hstack([zero, zero, Hm, Hm, wm, wm, Hm, Hm, zero])
        xs = np.where(bl.fx[m, None], Wm - xs, xs) + bl.x0[m, None]
        ys = np.where(bl.fy[m, None], Hm - ys, ys) + bl.y0[m, None]
        geom[m] = shapely.polygons(np.stack([xs, ys], axis=-1))
    m = bl.kind == _RING
    if m.any():
        w = bl.w[m]
        hole = np.stack([shapely.box(bl.x0[m] + w, bl.y0[m] + w, bl.x1[m] - w, bl.y1[m] - w)])
        shells = shapely.get_exterior_ring(shapely.box(bl.x0[m], bl.y0[m], bl.x1[m], bl.y1[m]))
        holes = shapely.get_exterior_ring(hole[0])
        geom[m] = shapely.polygons(shells, holes=holes[:, None])
    m = bl.kind == _TWO_Y
    if m.any():
        p1 = shapely.box(bl.x0[m], bl.y0[m], bl.x1[m], bl.y0[m] + bl.a[m])
        p2 = shapely.box(bl.x0[m], bl.y1[m] - bl.b[m], bl.x1[m], bl.y1[m])
        geom[m] = shapely.multipolygons(np.stack([p1, p2], axis=1))
    m = bl.kind == _TWO_X
    if m.any():
        p1 = shapely.box(bl.x0[m], bl.y0[m], bl.x0[m] + bl.a[m], bl.y1[m])
        p2 = shapely.box(bl.x1[m] - bl.b[m], bl.y0[m], bl.x1[m], bl.y1[m])
        geom[m] = shapely.multipolygons(np.stack([p1, p2], axis=1))
    return geom


def _roof_fraction(bl: _Buildings, ids: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Roof height above the eave as a fraction of (ridge - eave) at points inside buildings.

    Args:
        bl: the buildings (with `boundary`).
        ids: (k,) building index of each point.
        px, py: (k,) float64 point coordinates.

    Returns:
        (k,) float64 in [0, 1]: 0 at the eaves (and on flat roofs), 1 on the ridge.
    """
    r = np.zeros(len(ids))
    kind, roof = bl.kind[ids], bl.roof[ids]
    x0, y0, x1, y1 = bl.x0[ids], bl.y0[ids], bl.x1[ids], bl.y1[ids]
    W, H = x1 - x0, y1 - y0
    m = (roof == _GABLED) & (kind == _RECT)
    across_y = H <= W
    r[m] = np.where(across_y, 1 - np.abs(py - (y0 + y1) / 2) / (H / 2), 1 - np.abs(px - (x0 + x1) / 2) / (W / 2))[m]
    m = roof == _SHED
    r[m] = ((py - y0) / H)[m]
    m = (roof == _GABLED) & (kind == _TWO_Y)
    if m.any():
        a, b, y0m, y1m, pym = bl.a[ids[m]], bl.b[ids[m]], y0[m], y1[m], py[m]
        north = pym > (y0m + y1m) / 2
        c = np.where(north, y1m - b / 2, y0m + a / 2)
        r[m] = 1 - np.abs(pym - c) / (np.where(north, b, a) / 2)
    m = (roof == _GABLED) & (kind == _TWO_X)
    if m.any():
        a, b, x0m, x1m, pxm, Hm = bl.a[ids[m]], bl.b[ids[m]], x0[m], x1[m], px[m], H[m]
        east = pxm > (x0m + x1m) / 2
        pw = np.where(east, b, a)
        c = np.where(east, x1m - b / 2, x0m + a / 2)
        r[m] = np.where(pw <= Hm, 1 - np.abs(pxm - c) / (pw / 2), 1 - np.abs(py[m] - (y0[m] + y1[m]) / 2) / (Hm / 2))
    m = ((roof == _HIPPED) | (roof == _PYRAMIDAL)) & (kind == _RECT)
    d = np.minimum(np.minimum(px - x0, x1 - px), np.minimum(py - y0, y1 - py))
    r[m] = (d / (np.minimum(W, H) / 2))[m]
    m = (roof != _FLAT) & np.isin(kind, (_L, _U, _RING))
    if m.any():
        dist = shapely.distance(shapely.points(px[m], py[m]), bl.boundary[ids[m]])
        r[m] = dist / (bl.w[ids[m]] / 2)
    return np.clip(r, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------- terrain


class _Terrain:
    """Ground height (m) as a smooth function of EPSG:4547 coordinates: basin, hills towards the edges, valley.

    Built from two coarse random grids interpolated with cubic splines, so any point (pixel centre, building
    centroid, sensor) gets the same height whatever grid it is evaluated on.
    """

    def __init__(self, plan: _Plan, seed: int) -> None:
        from scipy import ndimage

        rng = _rng(seed, 4)
        self.plan = plan
        self.hill_step, self.wave_step = 400.0, 150.0
        self.hills = ndimage.spline_filter(rng.standard_normal((int(plan.side / self.hill_step) + 5,) * 2))
        self.waves = ndimage.spline_filter(rng.standard_normal((int(plan.side / self.wave_step) + 5,) * 2))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        p = self.plan
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        u, v = x - p.x0, y - p.y0

        def field_(grid: np.ndarray, step: float) -> np.ndarray:
            coords = np.stack([v.ravel() / step + 2, u.ravel() / step + 2])
            return ndimage.map_coordinates(grid, coords, order=3, prefilter=False, mode="nearest").reshape(x.shape)

        rho = np.hypot(x - (p.cx + 450), y - p.cy) / (p.side / 2)
        hills = 30.0 * _smoothstep((rho - 0.55) / 0.6) * np.clip(1.0 + field_(self.hills, self.hill_step), 0, None)
        dx = x - p.river_x(y)
        valley = -7.0 * np.exp(-((dx / 260.0) ** 2)) - 2.8 * np.clip(1 - (dx / (p.river_half + 1)) ** 2, 0, 1)
        return 1042.0 + 0.003 * v + hills + 1.2 * field_(self.waves, self.wave_step) + valley


# ------------------------------------------------------------------------------------------------------ writer


class _Generator:
    """One generation run: layout, buildings and layers in memory, then files."""

    def __init__(self, n: int, seed: int, progress: Progress) -> None:
        self.n, self.seed, self.progress = n, seed, progress

    # -- model
    def build(self, wanted: set[str]) -> None:
        self.progress("layout", 0.0)
        plan, lots = _layout(self.n, self.seed)
        self.plan, self.lots = plan, lots
        self.terrain = _Terrain(plan, self.seed)
        self.progress("buildings", 0.08)
        bl = _buildings(lots, self.seed)
        bl.geom = _footprints(bl)
        self._admin()
        order = self._assign(bl)
        bl = bl.take(order)
        self.lots = {k: v[order] for k, v in lots.items()}
        if self.rasters:
            bl.boundary = shapely.boundary(bl.geom)  # for the roof model of L, U and ring shapes
        bl.base = self.terrain((bl.x0 + bl.x1) / 2, (bl.y0 + bl.y1) / 2)
        self.bl = bl
        self.progress("attributes", 0.15)
        self.tables: dict[str, tuple[pa.Table, np.ndarray, str]] = {}
        self.tables["buildings"] = self._building_table()
        self.progress("layers", 0.25)
        self._layers(wanted)

    def _admin(self) -> None:
        """Communities on a grid along main roads, streets as 2 x 2 (or larger) groups of them."""
        p = self.plan
        names = _names()
        ncx, ncy = len(p.comm_x) - 1, len(p.comm_y) - 1
        g = 2 if max(ncx, ncy) <= 60 else math.ceil(max(ncx, ncy) / 30)
        nsx, nsy = math.ceil(ncx / g), math.ceil(ncy / g)
        street_names = _pool(names["streets"], nsx * nsy, "街道")
        comm_names = _pool(names["communities"], ncx * ncy, "社区")
        comm_rows: list[tuple[Any, str, str, str, int, int]] = []
        street_rows = []
        comm_index = np.zeros((ncy, ncx), np.int64)
        counter: dict[int, int] = {}
        for sj in range(nsy):  # north to south
            for si in range(nsx):
                sidx = len(street_rows)
                scode = f"{ADMIN_CODE}{sidx + 1:03d}"
                rows = range(ncy - 1 - sj * g, max(-1, ncy - 1 - (sj + 1) * g), -1)
                cols = range(si * g, min(ncx, (si + 1) * g))
                street_rows.append((shapely.box(p.comm_x[cols[0]], p.comm_y[rows[-1]], p.comm_x[cols[-1] + 1],
                                                p.comm_y[rows[0] + 1]), scode, street_names[sidx]))
                for j in rows:
                    for i in cols:
                        k = counter.get(sidx, 0) + 1
                        counter[sidx] = k
                        comm_index[j, i] = len(comm_rows)
                        comm_rows.append((shapely.box(p.comm_x[i], p.comm_y[j], p.comm_x[i + 1], p.comm_y[j + 1]),
                                          f"{scode}{k:03d}", comm_names[len(comm_rows)], street_names[sidx],
                                          sidx, i))
        self.streets = street_rows
        self.communities = comm_rows
        self.comm_index = comm_index

    def _community_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.plan
        i = np.clip(np.searchsorted(p.comm_x, x, side="right") - 1, 0, len(p.comm_x) - 2)
        j = np.clip(np.searchsorted(p.comm_y, y, side="right") - 1, 0, len(p.comm_y) - 2)
        return self.comm_index[j, i]

    def _assign(self, bl: _Buildings) -> np.ndarray:
        """Community per building and a stable order: by community, then north to south, west to east."""
        cxs, cys = (bl.x0 + bl.x1) / 2, (bl.y0 + bl.y1) / 2
        comm = self._community_of(cxs, cys)
        order = np.lexsort((np.round(cxs, 2), -np.round(cys, 2), comm))
        self.comm_of_building = comm[order]
        return order

    def _building_table(self) -> tuple[pa.Table, np.ndarray, str]:
        """Attributes of the buildings (strings assembled with Arrow kernels: fast and compact for millions)."""
        bl, p = self.bl, self.plan
        n = len(bl.kind)
        names = _names()
        comm = self.comm_of_building
        starts = np.r_[0, np.flatnonzero(np.diff(comm)) + 1]
        seq = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        comm_codes = pa.array([c[1] for c in self.communities], pa.string())
        code = _join(comm_codes.take(comm), pc.utf8_lpad(_str(seq + 1), width=5, padding="0"))
        street = pa.array([c[3] for c in self.communities], pa.string()).take(comm)
        # address: nearest road, number from the position along it (odd/even by side), duplicates numbered
        cx, cy = (bl.x0 + bl.x1) / 2, (bl.y0 + bl.y1) / 2
        road = _nearest(p.roads.lines(), shapely.points(cx, cy))
        rx0, ry0 = np.asarray(p.roads.x0)[road], np.asarray(p.roads.y0)[road]
        ns = rx0 == np.asarray(p.roads.x1)[road]
        pos = np.where(ns, np.abs(cy - ry0), np.abs(cx - rx0))
        even = np.where(ns, cx > rx0, cy < ry0)
        num = 2 * (pos // 12).astype(np.int64) + 1 + even
        order = np.lexsort((np.arange(n), num, road))
        key_change = np.r_[True, (np.diff(road[order]) != 0) | (np.diff(num[order]) != 0)]
        gstart = np.maximum.accumulate(np.where(key_change, np.arange(n), 0))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - gstart
        gsize = np.empty(n, np.int64)
        sizes = np.diff(np.r_[np.flatnonzero(key_change), n])
        gsize[order] = np.repeat(sizes, sizes)
        zone = bl.zone
        traditional = np.isin(zone, (_Z["courtyard"], _Z["oldshop"], _Z["temple"], _Z["village"]))
        num_s = pc.if_else(pa.array(traditional & (rank > 0)), _join(_str(num), "-", _str(rank)), _str(num))
        extra = pc.if_else(pa.array(~traditional & (gsize > 1)), _join(_str(rank + 1), "号楼"), "")
        road_names = pa.array(p.roads.name, pa.string()).take(road)
        address = _join(ADDRESS_PREFIX, street, road_names, num_s, "号", extra)
        # names: by zone, from the block (group) label and the building's rank in its group
        grp = bl.group
        gorder = np.lexsort((np.arange(n), grp))
        gchange = np.r_[True, np.diff(grp[gorder]) != 0]
        gs = np.maximum.accumulate(np.where(gchange, np.arange(n), 0))
        grank = np.empty(n, np.int64)
        grank[gorder] = np.arange(n) - gs + 1
        single = pa.array(np.bincount(grp, minlength=len(p.groups["zone"]))[grp] == 1)
        labels = pa.array(self._group_labels(), pa.string()).take(grp)
        k_s = _str(grank)
        temples = np.full(n, None, dtype=object)
        mt = np.flatnonzero(zone == _Z["temple"])
        temples[mt] = _pool(names["temples"], len(mt))
        name = pa.array(temples, pa.string())
        for zname, expr in (
            ("courtyard", lambda: _join(road_names, num_s, "号院")),
            ("oldshop", lambda: _join(road_names, num_s, "号商铺")),
            ("slab", lambda: _join(labels, k_s, "号楼")),
            ("tower", lambda: _join(labels, k_s, "号楼")),
            ("village", lambda: _join(labels, k_s, "号民居")),
            ("commercial", lambda: pc.if_else(single, labels, _join(labels, k_s, "号楼"))),
            ("office", lambda: pc.if_else(single, labels, _join(labels, k_s, "号楼"))),
            ("school", lambda: _join(labels, k_s, "号教学楼")),
            ("hospital", lambda: _join(labels, k_s, "号楼")),
            ("industrial", lambda: _join(labels, k_s, "号厂房")),
        ):
            mz = zone == _Z[zname]
            if mz.any():
                name = pc.if_else(pa.array(mz), expr(), name)
        # fallbacks for the builder: ~3% without height, ~1% without height and floors
        rng = _rng(self.seed, 5)
        perm = rng.permutation(n)
        n3, n1 = int(round(0.03 * n)), int(round(0.01 * n))
        no_h = np.zeros(n, bool)
        no_h[perm[: n3 + n1]] = True
        no_f = np.zeros(n, bool)
        no_f[perm[n3: n3 + n1]] = True
        communities = pa.array([c[2] for c in self.communities], pa.string()).take(comm)
        table = pa.table({
            "code": code,
            "name": name,
            "use": pa.array(USES, pa.string()).take(bl.use),
            "floors": pa.array(bl.floors.astype(np.int32), pa.int32(), mask=no_f),
            "height": pa.array(bl.height, pa.float64(), mask=no_h),
            "roof_type": pa.array(ROOF_TYPES, pa.string()).take(bl.roof),
            "eave_height": pa.array(bl.eave, pa.float64(), mask=no_h),
            "ridge_height": pa.array(bl.ridge, pa.float64(), mask=no_h),
            "year_built": pa.array(bl.year.astype(np.int32), pa.int32()),
            "address": address,
            "street": street,
            "community": communities,
        })
        return table, bl.geom, "Polygon"

    def _group_labels(self) -> np.ndarray:
        """A name per block group (compound, school, factory, ...) from the name pools."""
        names = _names()
        zones = self.plan.groups["zone"]
        labels = np.empty(len(zones), dtype=object)
        labels[:] = ""
        for zname, make in (
            ("slab", lambda k: _pool(names["compounds"], k)),
            ("tower", lambda k: _pool(names["compounds"][::-1], k)),
            ("village", lambda k: _pool(names["villages"], k, "村")),
            ("commercial", lambda k: [f"{c}{names['commercial_kinds'][i % 6]}"
                                      for i, c in enumerate(_pool(names["commercial"], k))]),
            ("office", lambda k: _pool(names["offices"], k, "大厦")),
            ("school", lambda k: [f"大同市第{i + 1}中学" for i in range(k)]),
            ("hospital", lambda k: [f"大同市第{i + 1}人民医院" for i in range(k)]),
            ("industrial", lambda k: [f"大同{c}厂" for c in _pool(names["companies"], k)]),
        ):
            idx = np.flatnonzero(zones == _Z[zname])
            labels[idx] = make(len(idx))
        return labels

    def _layers(self, wanted: set[str]) -> None:
        p, bl = self.plan, self.bl
        names = _names()
        t = self.tables
        roads = p.roads
        if "roads" in wanted:
            t["roads"] = (pa.table({"name": pa.array(roads.name, pa.string()),
                                    "class": pa.array(roads.cls, pa.string()),
                                    "width": pa.array(roads.width, pa.float64())}), roads.lines(), "LineString")
        if "river" in wanted:
            clip = shapely.box(*p.bounds)
            t["river"] = (pa.table({"name": ["御河"], "kind": ["河流"], "width": [2 * p.river_half]}),
                          np.array([shapely.intersection(p.river_polygon(), clip)]), "Polygon")
        if "river_centerline" in wanted:
            t["river_centerline"] = (pa.table({"name": ["御河"], "flow": ["北向南"], "width": [2 * p.river_half]}),
                                     np.array([p.river_line()]), "LineString")
        if "wall" in wanted:
            parts = ["西北段", "东北段", "西南段", "东南段"]
            t["wall"] = (pa.table({"name": [f"大同古城墙（{s}）" for s in parts],
                                   "height_m": [14.0] * 4, "built": ["明洪武五年（1372年）"] * 4,
                                   "protection": ["全国重点文物保护单位"] * 4}),
                         np.array(p.walls, dtype=object), "Polygon")
        if "streets" in wanted:
            t["streets"] = (pa.table({"code": [s[1] for s in self.streets], "name": [s[2] for s in self.streets],
                                      "district": ["平城区"] * len(self.streets)}),
                            np.array([s[0] for s in self.streets], dtype=object), "Polygon")
        comm_geom = np.array([c[0] for c in self.communities], dtype=object)
        if "communities" in wanted:
            t["communities"] = (pa.table({"code": [c[1] for c in self.communities],
                                          "name": [c[2] for c in self.communities],
                                          "street": [c[3] for c in self.communities]}), comm_geom, "Polygon")
        if "population" in wanted:
            area = shapely.area(bl.geom)
            res = bl.use == 0
            fa = np.bincount(self.comm_of_building[res], weights=(area * bl.floors)[res],
                             minlength=len(self.communities))
            pop = np.round(fa / 32.0).astype(np.int64)
            km2 = shapely.area(comm_geom) / 1e6
            t["population"] = (pa.table({
                "code": [c[1] for c in self.communities], "name": [c[2] for c in self.communities],
                "street": [c[3] for c in self.communities], "population": pa.array(pop, pa.int64()),
                "households": pa.array(np.round(pop / 2.6).astype(np.int64), pa.int64()),
                "area_km2": pa.array(np.round(km2, 4)), "density": pa.array(np.round(pop / km2, 1)),
                "year": pa.array(np.full(len(pop), 2023, np.int32)),
            }), comm_geom, "Polygon")
        if "shelters" in wanted:
            t["shelters"] = self._shelters()
        if "hazards" in wanted:
            t["hazards"] = self._hazards()
        if "sensors" in wanted:
            t["sensors"] = self._sensors()
        if "height_zones" in wanted:
            t["height_zones"] = self._height_zones()
        if "trees" in wanted or self.rasters:
            self.trees = self._trees(names)
        if "trees" in wanted:
            tr = self.trees
            t["trees"] = (pa.table({"tree_id": tr["id"], "species": tr["species"], "kind": tr["kind"],
                                    "height_m": tr["h"], "crown_m": np.round(2 * tr["r"], 1)}),
                          shapely.points(tr["x"], tr["y"]), "Point")

    def _shelters(self) -> tuple[pa.Table, np.ndarray, str]:
        p = self.plan
        rows = []
        for poly, pname in p.parks:
            if pname == "御河滨河公园":
                continue
            area = shapely.area(poly)
            rows.append((shapely.centroid(poly), f"{pname}应急避难场所", area))
        ys = np.arange(p.y0 + _GRID, p.y0 + p.side, 600.0)
        for k, y in enumerate(ys):
            x = float(p.river_x(y)) + (-1) ** k * (p.river_half + 16)
            rows.append((shapely.Point(x, y), f"御河滨河公园{k + 1}号应急避难场所", 12000.0))
        area = np.array([r[2] for r in rows])
        level = np.where(area >= 20000, "Ⅰ类", np.where(area >= 10000, "Ⅱ类", "Ⅲ类"))
        geom = np.array([r[0] for r in rows], dtype=object)
        comm = self._community_of(shapely.get_x(geom), shapely.get_y(geom))
        table = pa.table({
            "shelter_id": [f"BN{i + 1:03d}" for i in range(len(rows))],
            "name": [r[1] for r in rows], "level": level.tolist(),
            "capacity": pa.array(np.round(area / 2.0).astype(np.int64)),
            "area": pa.array(np.round(area, 1)),
            "community": [self.communities[c][2] for c in comm],
        })
        return table, geom, "Point"

    def _hazards(self) -> tuple[pa.Table, np.ndarray, str]:
        p, bl = self.plan, self.bl
        rng = _rng(self.seed, 6)
        names = _names()
        roads = p.roads
        main = [i for i, c in enumerate(roads.cls) if c == "主干路" and roads.width[i] == 36.0]
        xs = sorted({roads.x0[i] for i in main if roads.x0[i] == roads.x1[i]})
        ys = sorted({roads.y0[i] for i in main if roads.y0[i] == roads.y1[i]})
        sq = (p.cx - 420, p.cy - 420, p.cx + 420, p.cy + 420)
        cand = [(x, y) for y in ys for x in xs
                if not (sq[0] < x < sq[2] and sq[1] < y < sq[3]) and abs(x - p.rx) > 150]
        n_gas = min(len(cand), max(3, round(p.side ** 2 / 700_000)))
        pick = rng.choice(len(cand), size=n_gas, replace=False) if cand else np.array([], int)
        geoms, rows = [], []
        comp = names["hazard_companies"]
        for k, i in enumerate(sorted(pick.tolist())):
            x, y = cand[i]
            geoms.append(shapely.Point(x + 21, y + 21))
            rows.append((f"{comp[k % len(comp)]}平城第{k + 1}加油站", "加油站",
                         "四级" if rng.random() < 0.6 else "三级", None))
        ind = np.flatnonzero(bl.use == 5)
        wh = ind[rng.random(len(ind)) < 0.3] if len(ind) else ind
        codes = self.tables["buildings"][0].column("code").to_pylist()
        bnames = self.tables["buildings"][0].column("name").to_pylist()
        for i in wh.tolist():
            kind = "危化品仓库" if rng.random() < 0.7 else "液化气储配站"
            geoms.append(shapely.Point((bl.x0[i] + bl.x1[i]) / 2, (bl.y0[i] + bl.y1[i]) / 2))
            rows.append((f"{bnames[i]}{kind}", kind, ["一级", "二级", "三级"][int(rng.random() * 3)], codes[i]))
        geom = np.array(geoms, dtype=object)
        comm = self._community_of(shapely.get_x(geom), shapely.get_y(geom)) if len(geom) else np.array([], int)
        table = pa.table({
            "hazard_id": pa.array([f"WX{i + 1:03d}" for i in range(len(rows))], pa.string()),
            "name": pa.array([r[0] for r in rows], pa.string()),
            "kind": pa.array([r[1] for r in rows], pa.string()),
            "level": pa.array([r[2] for r in rows], pa.string()),
            "building_code": pa.array([r[3] for r in rows], pa.string()),
            "community": pa.array([self.communities[c][2] for c in comm], pa.string()),
        })
        return table, geom, "Point"

    def _sensors(self) -> tuple[pa.Table, np.ndarray, str]:
        p = self.plan
        rng = _rng(self.seed, 7)
        ys = np.arange(p.y0 + p.side - 125.0, p.y0, -250.0)
        xs = p.river_x(ys)
        bed = self.terrain(xs, ys)
        bank = np.minimum(self.terrain(xs - p.river_half - 8, ys), self.terrain(xs + p.river_half + 8, ys))
        water = np.round(bed + 1.2 + rng.random(len(ys)), 2)
        warning = np.round(bank - 0.6, 2)
        alarm = int(rng.integers(len(ys)))
        water[alarm] = warning[alarm] + 0.15
        n = len(ys)
        table = pa.table({
            "sensor_id": [f"SW{i + 1:03d}" for i in range(n)],
            "name": [f"御河{i + 1}号水位站" for i in range(n)],
            "river": ["御河"] * n,
            "water_level_m": pa.array(water), "warning_level_m": pa.array(warning),
            "status": ["超警戒" if water[i] >= warning[i] else "正常" for i in range(n)],
            "updated_at": [f"2024-07-20T08:{(5 * i) % 60:02d}:00+08:00" for i in range(n)],
        })
        return table, shapely.points(xs, ys), "Point"

    def _height_zones(self) -> tuple[pa.Table, np.ndarray, str]:
        p = self.plan
        bbox = shapely.box(*p.bounds)
        core = shapely.box(p.cx - 400, p.cy - 400, p.cx + 400, p.cy + 400)
        ring = shapely.difference(shapely.buffer(core, 300, join_style="mitre"), core)
        corridor = shapely.difference(shapely.buffer(p.river_line(), 150, cap_style="flat"),
                                      shapely.union(core, ring))
        cbd = shapely.difference(shapely.box(p.rx + 250, p.cy - 300, p.rx + 850, p.cy + 300),
                                 shapely.union_all([core, ring, corridor]))
        rest = shapely.difference(bbox, shapely.union_all([core, ring, corridor, cbd]))
        zones = [(core, "古城核心保护区", 12.0, "大同历史文化名城保护规划"),
                 (ring, "古城风貌协调区", 24.0, "大同历史文化名城保护规划"),
                 (corridor, "御河生态廊道", 36.0, "御河滨河地区控制性详细规划"),
                 (cbd, "御东商务核心区", 150.0, "御东新区控制性详细规划"),
                 (rest, "一般控制区", 80.0, "平城区控制性详细规划")]
        geom = np.array([shapely.intersection(z[0], bbox) for z in zones], dtype=object)
        table = pa.table({"zone_code": [f"KG{i + 1:02d}" for i in range(len(zones))],
                          "name": [z[1] for z in zones], "max_height_m": [z[2] for z in zones],
                          "basis": [z[3] for z in zones]})
        return table, geom, "Polygon"

    def _trees(self, names: dict[str, Any]) -> dict[str, np.ndarray]:
        """Street trees, park trees, riverside willows and courtyard trees, clear of buildings, roads and water."""
        p, bl = self.plan, self.bl
        rng = _rng(self.seed, 8)
        scale = max(1.0, p.side / 4000)
        xs, ys, kinds = [], [], []
        roads = p.roads
        for i, cls in enumerate(roads.cls):
            if cls not in ("主干路", "次干路"):
                continue
            x0, y0, x1, y1, hw = roads.x0[i], roads.y0[i], roads.x1[i], roads.y1[i], roads.width[i] / 2
            length = abs(x1 - x0) + abs(y1 - y0)
            t = np.arange(4.0, length, 8.0 * scale)
            for off in (-hw - 2.5, hw + 2.5):
                if x0 == x1:
                    xs.append(np.full(len(t), x0 + off))
                    ys.append(min(y0, y1) + t)
                else:
                    xs.append(min(x0, x1) + t)
                    ys.append(np.full(len(t), y0 + off))
                kinds.append(np.full(len(t), 0))
        for poly, _ in p.parks:
            bx0, by0, bx1, by1 = shapely.bounds(poly)
            k = int(shapely.area(poly) / (180.0 * scale * scale))
            xs.append(bx0 + rng.random(k) * (bx1 - bx0))
            ys.append(by0 + rng.random(k) * (by1 - by0))
            kinds.append(np.full(k, 1))
        yy = np.arange(p.y0 + 5, p.y0 + p.side, 10.0 * scale)
        for off in (-p.river_half - 6, p.river_half + 6):
            xs.append(p.river_x(yy) + off)
            ys.append(yy)
            kinds.append(np.full(len(yy), 2))
        ring = np.flatnonzero((bl.kind == _RING) & (bl.zone == _Z["courtyard"]))
        ring = ring[rng.random(len(ring)) < 0.4]
        xs.append((bl.x0[ring] + bl.x1[ring]) / 2)
        ys.append((bl.y0[ring] + bl.y1[ring]) / 2)
        kinds.append(np.full(len(ring), 3))
        x, y, kind = np.concatenate(xs), np.concatenate(ys), np.concatenate(kinds)
        r = np.where(kind == 3, 2.0, 2.2 + 1.6 * rng.random(len(x)))
        h = np.where(kind == 3, 6 + 3 * rng.random(len(x)), 7 + 8 * rng.random(len(x)))
        species_pool = np.asarray(names["tree_species"], dtype=object)
        species = np.where(kind == 2, "垂柳", species_pool[(rng.random(len(x)) * len(species_pool)).astype(int)])
        crowns = shapely.buffer(shapely.points(x, y), r, quad_segs=4)
        bbox = shapely.box(*p.bounds)
        keep = shapely.contains(bbox, crowns)
        keep[STRtree(bl.geom).query(crowns, predicate="intersects")[0]] = False
        blocked = np.concatenate([roads.surfaces(), [p.river_polygon()], np.array(p.walls, dtype=object)])
        keep[STRtree(blocked).query(shapely.points(x, y), predicate="intersects")[0]] = False
        idx = np.flatnonzero(keep)
        if len(idx) > 400_000:
            idx = np.sort(rng.choice(idx, 400_000, replace=False))
        kind_names = np.array(["行道树", "公园绿地", "滨河绿地", "庭院"], dtype=object)
        return {"x": np.round(x[idx], 2), "y": np.round(y[idx], 2), "r": np.round(r[idx], 2),
                "h": np.round(h[idx], 1), "kind": kind_names[kind[idx]], "species": species[idx],
                "id": np.array([f"SM{i + 1:06d}" for i in range(len(idx))], dtype=object)}

    # -- files
    def write(self, root: Path, *, rasters: bool, ortho: bool, layers: set[str],
              footprint_format: FootprintFormat) -> SampleCity:
        self.rasters = rasters
        self.build(layers)
        entries = []
        vec_names = [k for k in VECTOR_LAYERS if k in self.tables]
        for i, name in enumerate(vec_names):
            table, geom, gtype = self.tables[name]
            fname = f"{name}.parquet" if name == "buildings" and footprint_format == "parquet" else f"{name}.gpkg"
            _write_vector(root / fname, name, table, geom)
            entries.append(_vector_entry(fname, name, table, geom, gtype))
            self.progress("vectors", 0.25 + 0.15 * (i + 1) / len(vec_names))
        p = self.plan
        if rasters:
            res_dem = _nice(max(2.0, p.side / MAX_DEM_PX))
            _write_dem_dsm(self, root / "dem.tif", root / "dsm.tif", res_dem)
            for kind, fname in (("dem", "dem.tif"), ("dsm", "dsm.tif")):
                entries.append(_raster_entry(root, fname, kind))
            self.progress("dsm", 0.55)
            if ortho:
                res_o = _nice(max(0.5, p.side / MAX_ORTHO_PX))
                _write_ortho(self, root / "ortho.tif", res_o,
                               lambda f: self.progress("ortho", 0.55 + 0.43 * f))
                entries.append(_raster_entry(root, "ortho.tif", "ortho"))
        lon, lat = lonlat(CRS, np.array([p.x0 + p.side / 2]), np.array([p.y0 + p.side / 2]))
        doc = {
            "generator": GENERATOR,
            "version": cim.__version__,
            "name": "大同市平城区示例城市",
            "name_en": "Sample city: Pingcheng District, Datong, Shanxi",
            "seed": self.seed,
            "n_buildings": self.n,
            "crs": CRS,
            "bounds": [p.x0, p.y0, p.x0 + p.side, p.y0 + p.side],
            "center_lonlat": [round(float(lon[0]), 6), round(float(lat[0]), 6)],
            "heights": "metres above the 1985 National Height Datum (approximate)",
            "files": entries,
        }
        (root / MANIFEST).write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return load(root)


# ----------------------------------------------------------------------------------------------------- rasters


def _raster_profile(n: int, transform: Any, res: float) -> dict[str, Any]:
    return {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "float32", "crs": CRS,
            "transform": transform, "nodata": -9999.0, "compress": "deflate", "predictor": 3, "zlevel": 9,
            "tiled": True, "blockxsize": 256, "blockysize": 256}


def _pixel_xy(p: _Plan, res: float, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p.x0 + (cols + 0.5) * res, p.y0 + p.side - (rows + 0.5) * res


def _tree_dome(tr: dict[str, np.ndarray], t: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Crown height above ground at points of tree `t` (a flattened dome)."""
    d = np.hypot(px - tr["x"][t], py - tr["y"][t]) / tr["r"][t]
    return tr["h"][t] * (0.6 + 0.4 * np.sqrt(np.clip(1 - d * d, 0, 1)))


def _write_dem_dsm(gen: _Generator, dem_path: Path, dsm_path: Path, res: float) -> None:
    """DEM from the terrain function; DSM = terrain + roofs (same roof model as the heights) + tree crowns."""
    import rasterio
    import rasterio.features
    from rasterio.transform import from_origin

    p, bl, tr = gen.plan, gen.bl, gen.trees
    n = int(round(p.side / res))
    transform = from_origin(p.x0, p.y0 + p.side, res, res)
    dem = np.empty((n, n), np.float32)
    cols = np.arange(n)
    for r0, r1 in _iter_chunks(n, 256):
        px, py = _pixel_xy(p, res, np.arange(r0, r1)[:, None], cols[None, :])
        dem[r0:r1] = np.round(gen.terrain(np.broadcast_to(px, (r1 - r0, n)), np.broadcast_to(py, (r1 - r0, n))), 2)
    dsm = dem.copy()
    ids = rasterio.features.rasterize(zip(bl.geom, range(1, len(bl.geom) + 1)), out_shape=(n, n),
                                      transform=transform, fill=0, dtype="int32")
    rows, cc = np.nonzero(ids)
    b = ids[rows, cc] - 1
    px, py = _pixel_xy(p, res, rows, cc)
    roof = bl.base[b] + bl.eave[b] + (bl.ridge[b] - bl.eave[b]) * _roof_fraction(bl, b, px, py)
    dsm[rows, cc] = roof
    crowns = shapely.buffer(shapely.points(tr["x"], tr["y"]), tr["r"], quad_segs=4)
    if len(crowns):
        tid = rasterio.features.rasterize(zip(crowns, range(1, len(crowns) + 1)), out_shape=(n, n),
                                          transform=transform, fill=0, dtype="int32")
        tid[ids > 0] = 0
        rows, cc = np.nonzero(tid)
        px, py = _pixel_xy(p, res, rows, cc)
        dsm[rows, cc] = dem[rows, cc] + _tree_dome(tr, tid[rows, cc] - 1, px, py)
    dsm = np.round(np.maximum(dsm, dem), 2)
    for path, data, desc in ((dem_path, dem, "terrain height"), (dsm_path, dsm, "surface height")):
        with rasterio.open(path, "w", **_raster_profile(n, transform, res)) as dst:
            dst.write(data, 1)
            dst.set_band_description(1, desc)
            dst.update_tags(1, units="m")
            dst.update_tags(GENERATOR=GENERATOR, SEED=str(gen.seed), N_BUILDINGS=str(gen.n))


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Per-pixel white noise in [0, 1) from global pixel indices (independent of how the image is cut)."""
    h = (ix.astype(np.uint32) * np.uint32(0x8DA6B343)) ^ (iy.astype(np.uint32) * np.uint32(0xD8163841))
    h = h ^ np.uint32((salt * 0x9E3779B1) & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(2**24)


def _value_noise(ix: np.ndarray, iy: np.ndarray, cell: float, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1) with features about `cell` pixels wide."""
    fx, fy = ix / cell, iy / cell
    x0, y0 = np.floor(fx), np.floor(fy)
    tx, ty = _smoothstep(fx - x0).astype(np.float32), _smoothstep(fy - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _hash01(x0, y0, salt), _hash01(x0 + 1, y0, salt)
    c, d = _hash01(x0, y0 + 1, salt), _hash01(x0 + 1, y0 + 1, salt)
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


class _Burner:
    """Geometries with a value each, rasterised window by window (STRtree lookup, draw order kept)."""

    def __init__(self, geoms: np.ndarray, values: np.ndarray) -> None:
        self.geoms, self.values = np.asarray(geoms, dtype=object), np.asarray(values)
        self.tree = STRtree(self.geoms)

    def burn(self, out: np.ndarray, window: Any, transform: Any, all_touched: bool = False) -> None:
        import rasterio.features

        idx = np.sort(self.tree.query(window))
        if len(idx):
            rasterio.features.rasterize(zip(self.geoms[idx], self.values[idx].tolist()), out=out,
                                        transform=transform, all_touched=all_touched)


# land-cover classes of the orthophoto and their colours (RGB) and texture strength
_GROUND, _PARK, _YARD_OLD, _YARD_NEW, _YARD_WORK, _ASPHALT, _STONE, _LANE, _BANK, _WATER, _WALL = range(11)
_COVER_RGB = np.array([[112, 124, 80], [80, 120, 60], [150, 145, 136], [126, 136, 108], [162, 160, 152],
                       [74, 76, 80], [120, 116, 110], [134, 128, 120], [128, 124, 102], [50, 78, 86],
                       [140, 122, 100]], np.float32)
_COVER_NOISE = np.array([22, 20, 14, 16, 12, 9, 12, 14, 18, 5, 16], np.float32)


def _write_ortho(gen: _Generator, path: Path, res: float, progress: Callable[[float], None]) -> None:
    """Render the orthophoto in strips of rows into a tiled GeoTIFF, then copy it to a JPEG COG."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    p, bl, tr = gen.plan, gen.bl, gen.trees
    n = int(round(p.side / res))
    transform = from_origin(p.x0, p.y0 + p.side, res, res)
    lot_zone = gen.lots["zone"]
    yard = np.full(len(lot_zone), _YARD_NEW)
    yard[np.isin(lot_zone, (_Z["courtyard"], _Z["oldshop"], _Z["temple"]))] = _YARD_OLD
    yard[np.isin(lot_zone, (_Z["commercial"], _Z["office"], _Z["industrial"], _Z["village"]))] = _YARD_WORK
    road_cls = np.where(np.asarray(p.roads.cls) == "街巷", _LANE, _ASPHALT)
    oldtown = (np.abs(np.asarray(p.roads.width) - 24) < 1e-6) | (np.asarray(p.roads.cls) == "支路")
    road_cls[oldtown] = _STONE
    river = p.river_polygon()
    cover = [
        _Burner(np.array([g for g, _ in p.parks], dtype=object), np.full(len(p.parks), _PARK)),
        _Burner(shapely.box(gen.lots["x0"], gen.lots["y0"], gen.lots["x1"], gen.lots["y1"]), yard),
        _Burner(np.array([shapely.buffer(river, p.bank)]), np.array([_BANK])),
        _Burner(np.array([river]), np.array([_WATER])),
        _Burner(p.roads.surfaces(), road_cls),
        _Burner(np.array(p.walls, dtype=object), np.full(len(p.walls), _WALL)),
    ]
    marks = _Burner(p.roads.lines()[road_cls == _ASPHALT], np.ones(int((road_cls == _ASPHALT).sum()), np.uint8))
    buildings = _Burner(bl.geom, np.arange(1, len(bl.geom) + 1))
    trees = _Burner(shapely.buffer(shapely.points(tr["x"], tr["y"]), tr["r"], quad_segs=4),
                    np.arange(1, len(tr["x"]) + 1))
    tan_el = math.tan(math.radians(_SUN_ELEVATION))
    tallest = float(np.max(bl.ridge, initial=20.0)) + 20.0
    halo = int(math.ceil(tallest / (res * tan_el * math.sqrt(2)))) + 2
    strip = 1024
    tmp = path.with_name(path.stem + ".render.tif")
    profile = {"driver": "GTiff", "width": n, "height": n, "count": 3, "dtype": "uint8", "crs": CRS,
               "transform": transform, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "photometric": "RGB", "compress": "deflate", "zlevel": 1}
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0, r1 in _iter_chunks(n, strip):
            a, b = max(0, r0 - 2), min(n, r1 + halo)
            rgb = _render_rows(gen, res, n, a, b, cover, marks, buildings, trees, tan_el)
            dst.write(rgb[:, r0 - a: r1 - a], window=Window(0, r0, n, r1 - r0))
            progress(r1 / n * 0.85)
    rasterio.shutil.copy(tmp, path, driver="COG", compress="JPEG", quality=75, blocksize=512,
                         overview_resampling="average", overviews="AUTO")
    tmp.unlink()
    progress(1.0)


def _render_rows(gen: _Generator, res: float, n: int, a: int, b: int, cover: list[_Burner], marks: _Burner,
                 buildings: _Burner, trees: _Burner, tan_el: float) -> np.ndarray:
    """RGB (3, b - a, n) uint8 of orthophoto rows a..b: land cover, roofs, crowns, texture, hillshade, shadows."""
    from rasterio.transform import from_origin

    p, bl, tr = gen.plan, gen.bl, gen.trees
    h = b - a
    top = p.y0 + p.side - a * res
    wt = from_origin(p.x0, top, res, res)
    window = shapely.box(p.x0, top - h * res, p.x0 + p.side, top)
    cls = np.zeros((h, n), np.uint8)
    for burner in cover:
        burner.burn(cls, window, wt)
    bid = np.zeros((h, n), np.int32)
    buildings.burn(bid, window, wt)
    tid = np.zeros((h, n), np.int32)
    trees.burn(tid, window, wt)
    tid[bid > 0] = 0
    iy = np.arange(a, b)[:, None]
    ix = np.arange(n)[None, :]
    px, py = _pixel_xy(p, res, iy, ix)
    ground = gen.terrain(np.broadcast_to(px, (h, n)), np.broadcast_to(py, (h, n)))
    surface = ground.copy()
    surface[cls == _WALL] += 12.0
    rows, cols = np.nonzero(bid)
    bi = bid[rows, cols] - 1
    bx, by = _pixel_xy(p, res, rows + a, cols)
    surface[rows, cols] = bl.base[bi] + bl.eave[bi] + (bl.ridge[bi] - bl.eave[bi]) * _roof_fraction(bl, bi, bx, by)
    trow, tcol = np.nonzero(tid)
    ti = tid[trow, tcol] - 1
    tx, ty = _pixel_xy(p, res, trow + a, tcol)
    surface[trow, tcol] = ground[trow, tcol] + _tree_dome(tr, ti, tx, ty)
    # hillshade (sun from the south-east) and cast shadows by doubling the ray length each pass
    gy, gx = np.gradient(surface, res)
    gy = -gy
    az, el = math.radians(_SUN_AZIMUTH), math.radians(_SUN_ELEVATION)
    sun = np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])
    shade = ((-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1) / sun[2]).astype(np.float32)
    steep = np.hypot(gx, gy) > 3.0
    shade = np.where(steep, 0.85, np.clip(shade, 0.3, 1.35)).astype(np.float32)
    reach = surface.astype(np.float32)
    s, drop = 1, res * math.sqrt(2) * tan_el
    while s < h:
        shifted = np.full_like(reach, -np.inf)
        shifted[: h - s, : n - s] = reach[s:, s:] - s * drop
        np.maximum(reach, shifted, out=reach)
        s *= 2
        if s * drop > 400:
            break
    shadow = reach > surface + 0.3
    # colours: land cover with texture, then roofs and crowns
    fine = _hash01(ix, iy, 1) - 0.5
    cell = max(1.0, 3.0 / res)
    patch = _value_noise(ix, iy, cell, 2)
    broad = _value_noise(ix, iy, max(1.0, 30.0 / res), 3)
    rgb = _COVER_RGB[cls]
    g = cls == _GROUND
    soil = np.array([156, 142, 112], np.float32)
    t = np.clip((broad - 0.35) * 2.2, 0, 1)[g][:, None]
    rgb[g] = rgb[g] * (1 - t) + soil * t
    rgb *= (0.9 + 0.2 * patch)[..., None]
    rgb += (fine * _COVER_NOISE[cls])[..., None]
    w = cls == _WATER
    if w.any():
        depth = np.clip(1 - np.abs(px - p.river_x(py)) / p.river_half, 0, 1)
        rgb[w] *= (1 - 0.25 * np.broadcast_to(depth, (h, n))[w])[:, None]
    mk = np.zeros((h, n), np.uint8)
    if res <= 1.0:
        marks.burn(mk, window, wt)
        dash = ((ix + iy) // max(1, int(3 / res))) % 2 == 0
        rgb[(mk > 0) & dash & (cls == _ASPHALT)] = (222, 222, 212)
    roof_rgb = bl.color[bi] * (1 + 0.10 * (fine[rows, cols] + patch[rows, cols] - 0.5))[:, None]
    tiled = np.isin(bl.zone[bi], (_Z["courtyard"], _Z["oldshop"], _Z["temple"])) & (bl.roof[bi] != _FLAT)
    along_x = np.abs(gx[rows, cols]) < np.abs(gy[rows, cols])
    stripe = np.where(along_x, cols % 2, (rows + a) % 2)
    roof_rgb[tiled] *= (1 - 0.12 * stripe[tiled])[:, None]
    rgb[rows, cols] = roof_rgb
    tree_tone = 0.75 + 0.5 * _hash01(ti, ti, 4)[:, None]
    rgb[trow, tcol] = np.array([52, 84, 46], np.float32) * tree_tone * (0.8 + 0.4 * patch[trow, tcol])[:, None]
    rgb *= shade[..., None]
    rgb[shadow] *= np.array([0.5, 0.53, 0.6], np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _nice(res: float) -> float:
    return next((r for r in _NICE_RES if r >= res - 1e-9), _NICE_RES[-1])


def _geometry_types(geom: np.ndarray) -> list[str]:
    names = {0: "Point", 1: "LineString", 3: "Polygon", 5: "MultiLineString", 6: "MultiPolygon", 4: "MultiPoint"}
    return sorted({names[int(t)] for t in np.unique(shapely.get_type_id(geom))})


def _write_vector(path: Path, layer: str, table: pa.Table, geom: np.ndarray) -> None:
    """One layer per file: GeoPackage through pyogrio's Arrow path, or GeoParquet (WKB, PROJJSON CRS)."""
    import pyogrio

    wkb = pa.array(shapely.to_wkb(geom, output_dimension=2), pa.binary())
    full = table.append_column("geometry", wkb)
    if path.suffix == ".parquet":
        meta = {"version": "1.1.0", "primary_column": "geometry",
                "columns": {"geometry": {"encoding": "WKB", "geometry_types": _geometry_types(geom),
                                         "crs": parse_crs(CRS).to_json_dict(),
                                         "bbox": [float(v) for v in shapely.total_bounds(geom)]}}}
        full = full.replace_schema_metadata({b"geo": json.dumps(meta).encode()})
        pq.write_table(full, path, compression="zstd")
        return
    types = _geometry_types(geom)
    gtype = types[0] if len(types) == 1 else "Unknown"
    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2024-01-01T00:00:00.000Z"})  # reproducible bytes
    try:
        pyogrio.write_arrow(full, path, layer=layer, driver="GPKG", geometry_name="geometry", geometry_type=gtype,
                            crs=CRS)
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})


def _vector_entry(fname: str, name: str, table: pa.Table, geom: np.ndarray, family: str) -> dict[str, Any]:
    zh, en, theme, dept, sec = _META[name]
    return {
        "kind": "vector", "path": fname, "layer": name, "title_zh": zh, "title_en": en, "theme": theme,
        "department": dept, "security": sec, "geometry_type": family, "geometry_types": _geometry_types(geom),
        "feature_count": len(geom), "crs": CRS,
        "bounds": [round(float(v), 3) for v in shapely.total_bounds(geom)],
        "fields": {f.name: str(f.type) for f in table.schema},
    }


def _raster_entry(root: Path, fname: str, kind: str) -> dict[str, Any]:
    import rasterio

    zh, en, theme, dept, sec = _META[kind]
    with rasterio.open(root / fname) as src:
        return {
            "kind": kind, "path": fname, "layer": kind, "title_zh": zh, "title_en": en, "theme": theme,
            "department": dept, "security": sec, "geometry_type": None, "feature_count": None, "crs": CRS,
            "bounds": [round(float(v), 3) for v in src.bounds], "width": src.width, "height": src.height,
            "resolution": float(src.res[0]), "dtype": src.dtypes[0], "bands": src.count, "nodata": src.nodata,
        }


def _iter_chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)


__all__ = [
    "CRS",
    "DEFAULT_BUILDINGS",
    "DEFAULT_SEED",
    "MANIFEST",
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
