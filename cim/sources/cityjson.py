"""CityJSON city models in: objects, their surfaces (any LoD), semantics, materials and textures.

Reads CityJSON 1.0, 1.1 and 2.0 documents (`.city.json`) and CityJSON Text Sequences (`.city.jsonl`, one
`CityJSONFeature` per line after a header line). Every surface geometry type is read (MultiSurface,
CompositeSurface, Solid, MultiSolid, CompositeSolid and GeometryInstance of a geometry template), at the LoD asked
for, with `transform` applied in float64, `metadata.referenceSystem` as the CRS, the objects' attributes and the
`appearance` (materials, textures, texture coordinates) of one theme.

The result, `CityModel`, holds the surfaces as flat arrays (corners -> rings -> surfaces -> objects), so the
builders and the layer import work on the whole model at once; `triangulate` (`cim.sources.cityjson_triangles`)
turns the surfaces into triangles (convex rings as fans in bulk, the rest with earcut) and `CityModel.footprints` gives each building's outline.
Objects that cannot be used (broken boundaries, vertex indices out of range, no geometry at the chosen LoD) are
left out and listed with their reason in `CityModel.skipped`; one bad object never stops the file.

    with CityJSONReader("delft.city.json") as reader:
        model = reader.read(lod="2.2")
    tris = triangulate(model)
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from cim.errors import CRSError, InputError, InputNotFoundError
from cim.files import user_path
from cim.sources.crs import parse_crs
from cim.sources.footprints import Skipped
from cim.sources.cityjson_triangles import Triangles, triangulate  # importable from here, as before
from cim.sources.limits import load_json

#: Nesting of `boundaries` above the surface level, by geometry type (a surface is a list of rings).
SURFACE_DEPTH = {"MultiSurface": 0, "CompositeSurface": 0, "Solid": 1, "MultiSolid": 2, "CompositeSolid": 2}
NON_SURFACE = ("MultiPoint", "MultiLineString")
_MIME = {"PNG": "image/png", "JPG": "image/jpeg", "JPEG": "image/jpeg"}


@dataclass
class Texture:
    """One texture image of the appearance.

    Attributes:
        uri: the image as the file names it (relative to the CityJSON file, or absolute).
        path: the image file, None when it does not exist beside the model.
        mime: "image/png" or "image/jpeg" from the declared type (other images are converted when read).
    """

    uri: str
    path: Path | None
    mime: str


@dataclass
class CityModel:
    """A city model read into flat arrays.

    Objects are the CityObjects that carry surfaces at the chosen LoD (an aggregate without geometry, such as a
    Building made of BuildingParts, is not an object here: its parts name it in `roots`). Corners are the ring
    vertices in file order; ring r spans corners `ring_start[r]:ring_start[r+1]`, surface s spans rings
    `surface_start[s]:surface_start[s+1]` (the first is the outer ring, the others holes), surfaces are ordered by
    object.

    Attributes:
        path: the file read.
        version: the CityJSON version the file declares.
        crs: the horizontal CRS of the vertices (the horizontal part of a compound CRS), None when undeclared.
        declared_crs: the CRS as declared (compound CRSs keep their vertical part), None when undeclared.
        ids: (k,) object CityObject IDs.
        types: (k,) object CityObject types ("Building", "BuildingPart", "Road", ...).
        roots: (k,) object ID of the object's topmost parent (itself when it has none).
        parents: (k,) object ID of the direct parent, None for top-level objects.
        lods: (k,) object the LoD of the geometry used ("1", "2.2", ...).
        attributes: k dicts of the objects' attributes (as in the file).
        vertices: (n, 3) float64 real-world coordinates (`transform` applied).
        corner_vertex: (c,) int64 vertex index of each ring corner.
        corner_uv: (c,) int64 index into `uv` of each corner, -1 where untextured.
        ring_start: (r + 1,) int64 corner offsets of the rings.
        surface_start: (s + 1,) int64 ring offsets of the surfaces.
        surface_object: (s,) int64 object index of each surface.
        surface_semantic: (s,) int32 index into `semantic_types`, -1 without semantics.
        surface_material: (s,) int32 index into `materials`, -1 without a material.
        surface_texture: (s,) int32 index into `textures` (of the outer ring), -1 untextured.
        semantic_types: the semantic surface types met ("RoofSurface", "WallSurface", ...).
        materials: the appearance's materials of the chosen theme (CityJSON material objects).
        textures: the appearance's textures.
        uv: (t, 2) float64 texture coordinates (CityJSON's, origin at the image's bottom-left).
        material_theme, texture_theme: the themes used (None when the file has none).
        skipped: objects left out, by reason.
        object_types: how many CityObjects of each type the file holds.
        lods_found: how many objects offer each LoD.
    """

    path: Path
    version: str
    crs: CRS | None
    declared_crs: CRS | None
    ids: np.ndarray
    types: np.ndarray
    roots: np.ndarray
    parents: np.ndarray
    lods: np.ndarray
    attributes: list[dict[str, Any]]
    vertices: np.ndarray
    corner_vertex: np.ndarray
    corner_uv: np.ndarray
    ring_start: np.ndarray
    surface_start: np.ndarray
    surface_object: np.ndarray
    surface_semantic: np.ndarray
    surface_material: np.ndarray
    surface_texture: np.ndarray
    semantic_types: list[str]
    materials: list[dict[str, Any]]
    textures: list[Texture]
    uv: np.ndarray
    material_theme: str | None = None
    texture_theme: str | None = None
    skipped: Skipped = field(default_factory=Skipped)
    object_types: dict[str, int] = field(default_factory=dict)
    lods_found: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def surfaces(self) -> int:
        return len(self.surface_object)

    def surface_range(self, objects: np.ndarray) -> np.ndarray:
        """The surface indices of the given objects (surfaces are ordered by object)."""
        starts = np.searchsorted(self.surface_object, objects, side="left")
        ends = np.searchsorted(self.surface_object, objects, side="right")
        counts = ends - starts
        return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())

    def attribute_frame(self) -> pd.DataFrame:
        """The objects' attributes as columns: numbers, booleans and text as they are; lists and objects as JSON."""
        frame = pd.DataFrame.from_records(self.attributes, index=range(len(self.ids)))
        for col in frame.columns:
            values = frame[col]
            if values.dtype == object:
                nested = values.map(lambda v: isinstance(v, (dict, list)))
                if nested.any():
                    frame[col] = values.map(
                        lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                kinds = {type(v) for v in frame[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
                if len(kinds) > 1:  # mixed numbers and text: keep every value as text
                    frame[col] = frame[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                                else str(v))
        return frame

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        """(xmin, ymin, zmin, xmax, ymax, zmax) of the vertices the objects use."""
        used = self.vertices[np.unique(self.corner_vertex)] if len(self.corner_vertex) else np.zeros((1, 3))
        lo, hi = used.min(axis=0), used.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(lo[2]), float(hi[0]), float(hi[1]), float(hi[2]))

    def footprints(self, types: tuple[str, ...] = ("Building", "BuildingPart")) -> tuple[np.ndarray, np.ndarray,
                                                                                           dict[str, str]]:
        """Each top-level object's outline: the union of its (and its parts') surfaces seen from above.

        Args:
            types: the object types whose surfaces count (their roots become the rows).

        Returns:
            (root IDs (m,) object, (m,) (Multi)Polygons or None, reasons {root ID: why it has no outline}).
        """
        keep = np.isin(self.types, types)
        roots = self.roots[keep]
        order = list(dict.fromkeys(roots.tolist()))
        if not len(order):
            return np.array([], dtype=object), np.array([], dtype=object), {}
        surfaces = self.surface_range(np.flatnonzero(keep))
        polys = _surface_polygons(self, surfaces)
        area = shapely.area(polys)
        ok = np.isfinite(area) & (area > 1e-6)
        bad = ok & ~shapely.is_valid(polys)
        if bad.any():
            polys[bad] = shapely.make_valid(polys[bad])
        owner = self.roots[self.surface_object[surfaces]]
        by_root: dict[str, list[Any]] = {}
        for root, poly in zip(owner[ok], polys[ok], strict=True):
            by_root.setdefault(root, []).append(poly)
        geoms = np.empty(len(order), dtype=object)
        reasons: dict[str, str] = {}
        for i, root in enumerate(order):
            parts = by_root.get(root)
            if not parts:
                reasons[root] = "no surface with an area seen from above"
                continue
            g = shapely.union_all(parts)
            if g.geom_type == "GeometryCollection":
                g = shapely.union_all([p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")])
            geoms[i] = g if not g.is_empty else None
            if geoms[i] is None:
                reasons[root] = "no surface with an area seen from above"
        return np.array(order, dtype=object), geoms, reasons


def _surface_polygons(model: CityModel, surfaces: np.ndarray) -> np.ndarray:
    """(len(surfaces),) 2D polygons (outer ring and holes, x/y only) of the given surfaces; rings of fewer than
    three corners are left out, a surface without an outer ring of three corners becomes an empty polygon."""
    r0, r1 = model.surface_start[surfaces], model.surface_start[surfaces + 1]
    rings = np.repeat(r0 - np.cumsum(r1 - r0) + (r1 - r0), r1 - r0) + np.arange((r1 - r0).sum())
    ring_surface = np.repeat(np.arange(len(surfaces)), r1 - r0)
    c0, c1 = model.ring_start[rings], model.ring_start[rings + 1]
    n = c1 - c0
    usable = n >= 3
    outer = np.zeros(len(rings), bool)
    first_ring = np.r_[0, np.cumsum(r1 - r0)[:-1]]
    outer[first_ring[(r1 - r0) > 0]] = True
    has_outer = np.zeros(len(surfaces), bool)
    has_outer[ring_surface[outer & usable]] = True
    use = usable & has_outer[ring_surface]
    rings, ring_surface, c0, n = rings[use], ring_surface[use], c0[use], n[use]
    out = np.array([shapely.Polygon()] * len(surfaces), dtype=object)
    if not len(rings):
        return out
    # close every ring: its corners, then its first corner again
    closed = n + 1
    offs = np.cumsum(closed) - closed
    idx = np.repeat(c0 - offs, closed) + np.arange(closed.sum())
    last = offs + n
    idx[last] = c0
    xy = model.vertices[model.corner_vertex[idx], :2]
    lr = shapely.linearrings(xy, indices=np.repeat(np.arange(len(rings)), closed))
    polys = shapely.polygons(lr, indices=ring_surface)
    present = np.unique(ring_surface)
    out[present] = polys
    return out


class CityJSONReader:
    """A CityJSON (`.city.json`, `.json`) or CityJSONSeq (`.city.jsonl`) file.

    Cheap to construct; `open()` (or the context manager) reads the document, `read()` makes the model.

    Args:
        path: the file.
        crs: the CRS of the vertices when the file declares none (or declares a wrong one); EPSG:n, WKT, ...
    """

    def __init__(self, path: str | os.PathLike[str], *, crs: Any = None) -> None:
        self.path = user_path(path)
        self.crs_override = crs
        self._header: dict[str, Any] | None = None
        self._features: list[tuple[int, Any]] = []

    def __enter__(self) -> CityJSONReader:
        self.open()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """Read and parse the file (bounded: see `cim.sources.limits`).

        Raises:
            InputNotFoundError: no such file.
            InputError: not JSON / not CityJSON.
        """
        if self._header is not None:
            return
        if not self.path.is_file():
            raise InputNotFoundError(f"city model {self.path} does not exist")
        with gc_paused():
            self._parse()

    def _parse(self) -> None:
        if self.path.name.lower().endswith((".jsonl", ".city.jsonl")):
            self._open_sequence()
        else:
            doc = load_json(self.path, what="CityJSON")
            if not isinstance(doc, dict) or doc.get("type") != "CityJSON" or not isinstance(doc.get("CityObjects"),
                                                                                           dict):
                raise InputError(f"{self.path}: not a CityJSON document (an object with \"type\": \"CityJSON\" and "
                                 f"\"CityObjects\"); is it CityGML or GeoJSON?")
            self._header = doc

    def _open_sequence(self) -> None:
        from cim.sources.limits import MAX_JSON_BYTES

        size = self.path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise InputError(f"{self.path}: {size:,} bytes is more than the {MAX_JSON_BYTES:,} a CityJSONSeq file may "
                             f"have; split it into smaller files")
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line.decode("utf-8-sig"))
                except UnicodeDecodeError as exc:
                    raise InputError(f"{self.path}: line {number} is not UTF-8 text ({exc.reason}); CityJSON is "
                                     f"UTF-8") from exc
                except (ValueError, RecursionError) as exc:
                    if self._header is None:
                        raise InputError(f"{self.path}: line {number} is not JSON ({exc})") from exc
                    self._features.append((number, f"line {number} is not JSON ({str(exc)[:120]})"))
                    continue
                if self._header is None:
                    if not isinstance(item, dict) or item.get("type") != "CityJSON":
                        raise InputError(f"{self.path}: the first line of a CityJSONSeq file must be a CityJSON "
                                         f"object (with transform and metadata), found {str(item)[:80]!r}")
                    self._header = item
                else:
                    self._features.append((number, item))
        if self._header is None:
            raise InputError(f"{self.path}: empty CityJSONSeq file")

    def close(self) -> None:
        self._header = None
        self._features = []

    @property
    def version(self) -> str:
        self.open()
        assert self._header is not None
        return str(self._header.get("version", "1.0"))

    @property
    def declared_crs(self) -> CRS | None:
        """The CRS the file declares (`metadata.referenceSystem`), or `crs` given to the reader."""
        self.open()
        assert self._header is not None
        if self.crs_override is not None:
            return parse_crs(self.crs_override, what="--crs")
        return document_crs(self._header, self.path)

    def lods(self) -> dict[str, int]:
        """How many objects offer each LoD (to choose `lod`)."""
        counts: Counter[str] = Counter()
        for objects, _ in self._chunks():
            for obj in objects.values():
                if isinstance(obj, dict) and isinstance(obj.get("geometry"), list):
                    counts.update({_lod_text(g.get("lod")) for g in obj["geometry"] if isinstance(g, dict)})
        return dict(sorted(counts.items()))

    def _chunks(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(CityObjects, document) per unit of vertex numbering: the whole file, or one feature per line."""
        self.open()
        assert self._header is not None
        if not self._features:
            return [(self._header.get("CityObjects") or {}, self._header)]
        out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for _, item in self._features:
            if isinstance(item, dict) and isinstance(item.get("CityObjects"), dict):
                out.append((item["CityObjects"], item))
        return out

    def read(self, lod: str | float | None = None, *, theme: str | None = None) -> CityModel:
        """The model's objects with surfaces, at one LoD each.

        Args:
            lod: the LoD to use ("1", "2.2", ...); "2" also takes the highest 2.x an object has. None: each object's
                highest LoD.
            theme: the appearance theme for materials and textures; None: the file's default theme, else the first.

        Raises:
            InputError: the file is not CityJSON, or its vertices or transform are unusable.
            CRSError: the declared reference system cannot be read.
        """
        with gc_paused():
            return self._read(lod, theme)

    def _read(self, lod: str | float | None, theme: str | None) -> CityModel:
        self.open()
        assert self._header is not None
        header = self._header
        want = None if lod is None else _lod_text(lod)
        declared = self.declared_crs
        horizontal = declared.sub_crs_list[0] if declared is not None and declared.is_compound else declared
        scale, translate = _transform(header, self.path)
        templates = _templates(header, self.path)
        builder = _Builder(self.path, want, theme)
        builder.templates = templates
        if not self._features:
            verts = _vertices(header.get("vertices", []), scale, translate, f"{self.path}: 'vertices'")
            builder.add_chunk(header.get("CityObjects") or {}, verts, header.get("appearance"))
        else:
            base = builder.add_appearance(header.get("appearance"))
            for number, item in self._features:
                if isinstance(item, str):
                    builder.skipped.add(item, [f"line {number}"])
                    continue
                if not isinstance(item, dict) or not isinstance(item.get("CityObjects"), dict):
                    builder.skipped.add("not a CityJSONFeature (no CityObjects)", [f"line {number}"])
                    continue
                try:
                    verts = _vertices(item.get("vertices", []), scale, translate, f"line {number}: 'vertices'")
                except InputError as exc:
                    builder.skipped.add(str(exc), list(item["CityObjects"]))
                    continue
                builder.add_chunk(item["CityObjects"], verts, item.get("appearance"), base)
        return builder.finish(self.version, horizontal, declared)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a document's millions of lists and dicts are made and walked.

    They hold no reference cycles, and every collection the allocations trigger walks all of them again: with the
    collector on, reading a 10,000-building LoD2 city took 2.3-3x the wall time (3.3-4.2 s against 1.1-1.4 s, load
    ~15). The previous state is restored on exit (nested uses keep it off until the outermost ends).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_citymodel(path: str | os.PathLike[str], *, lod: str | float | None = None, theme: str | None = None,
                   crs: Any = None) -> CityModel:
    """Read a CityJSON or CityJSONSeq file (see `CityJSONReader.read`)."""
    with CityJSONReader(path, crs=crs) as reader:
        return reader.read(lod, theme=theme)


def is_cityjson(path: str | os.PathLike[str]) -> bool:
    """True for `.city.json`, `.city.jsonl`, `.cityjson`, `.jsonl` and `.json` files whose first bytes say CityJSON."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".city.json", ".cityjson", ".city.jsonl")):
        return True
    if name.endswith((".json", ".jsonl")) and p.is_file():
        with p.open("rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace").replace(" ", "")
        return '"type":"CityJSON"' in head
    return False


def reference_system(ref: Any, *, what: str = "referenceSystem") -> CRS:
    """The CRS of a CityJSON `referenceSystem`: an OGC URL (`https://www.opengis.net/def/crs/EPSG/0/7415`), a URN
    (`urn:ogc:def:crs:EPSG::7415`, CityJSON 1.0) or anything `parse_crs` reads.

    Raises:
        CRSError: not a CRS.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise CRSError(f"{what}: {ref!r} is not a CRS; write an OGC URL such as "
                       f"\"https://www.opengis.net/def/crs/EPSG/0/7415\", or pass --crs EPSG:n")
    text = ref.strip().rstrip("/")
    low = text.lower()
    if "opengis.net/def/crs/" in low or low.startswith("urn:ogc:def:crs:"):
        parts = [p for p in text.replace("::", ":").replace(":", "/").split("/") if p]
        lowered = [p.lower() for p in parts]
        if "crs" in lowered and lowered.index("crs") + 1 < len(parts):
            auth = parts[lowered.index("crs") + 1]
            text = f"{auth.upper()}:{parts[-1]}"
    return parse_crs(text, what=what)


def document_crs(doc: dict[str, Any], path: str | os.PathLike[str]) -> CRS | None:
    """The CRS a CityJSON document declares (`metadata.referenceSystem`, compound CRSs whole), None without one.

    Raises:
        CRSError: the declaration is not a CRS (the message names the file).
    """
    metadata = doc.get("metadata")
    ref = metadata.get("referenceSystem") if isinstance(metadata, dict) else None
    if ref is None:
        return None
    return reference_system(ref, what=f"{path} metadata.referenceSystem")


def _lod_text(lod: Any) -> str:
    if isinstance(lod, bool) or lod is None:
        return "?"
    if isinstance(lod, (int, float)):
        return format(lod, "g")
    return str(lod).strip()


def _lod_key(lod: str) -> float:
    try:
        return float(lod)
    except ValueError:
        return -1.0


def _transform(doc: dict[str, Any], path: Path) -> tuple[np.ndarray, np.ndarray]:
    tr = doc.get("transform")
    if tr is None:
        return np.ones(3), np.zeros(3)
    out = []
    for key in ("scale", "translate"):
        value = tr.get(key) if isinstance(tr, dict) else None
        try:
            arr = np.asarray(value, np.float64)
        except (ValueError, TypeError):
            arr = np.zeros(0)
        if arr.shape != (3,) or not np.isfinite(arr).all():
            raise InputError(f"{path}: 'transform' needs '{key}' as three finite numbers (found {value!r}); "
                             f"fix the file (CityJSON 1.1+: transform.scale and transform.translate)")
        out.append(arr)
    return out[0], out[1]


def document_vertices(doc: dict[str, Any], path: str | os.PathLike[str], *, finite: bool = True) -> np.ndarray:
    """(n, 3) float64 real-world vertices of a CityJSON document: its `vertices` with its `transform` applied.

    Args:
        doc: the parsed document (or a CityJSONSeq header).
        path: the file, for messages.
        finite: refuse non-finite numbers (the layer import keeps them and rejects the objects that use them).

    Raises:
        InputError: a `transform` without three finite `scale` and `translate` numbers, or `vertices` that are not
            [x, y, z] number triples.
    """
    scale, translate = _transform(doc, Path(path))
    return _vertices(doc.get("vertices", []), scale, translate, f"{path}: 'vertices'", finite=finite)


def _vertices(raw: Any, scale: np.ndarray, translate: np.ndarray, what: str, *, finite: bool = True) -> np.ndarray:
    try:
        verts = np.asarray(raw, np.float64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{what} is not a list of [x, y, z] numbers ({str(exc).splitlines()[0]})") from exc
    if verts.size == 0:
        return np.zeros((0, 3))
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise InputError(f"{what} is not a list of [x, y, z] numbers (found shape {verts.shape})")
    if finite and not np.isfinite(verts).all():
        raise InputError(f"{what} holds non-finite numbers")
    return verts * scale + translate


def _templates(doc: dict[str, Any], path: Path) -> tuple[list[Any], np.ndarray]:
    gt = doc.get("geometry-templates")
    if not isinstance(gt, dict):
        return [], np.zeros((0, 3))
    templates = gt.get("templates") if isinstance(gt.get("templates"), list) else []
    verts = _vertices(gt.get("vertices-templates", []), np.ones(3), np.zeros(3),
                      f"{path}: 'geometry-templates.vertices-templates'")
    return templates, verts


class _BadGeometry(Exception):
    """One geometry breaks the CityJSON schema; the message says where."""


def _where(path: list[int]) -> str:
    return "boundaries" + "".join(f"[{i}]" for i in path)


class _Builder:
    """Accumulates objects chunk by chunk (a whole document, or one CityJSONSeq feature) into flat lists."""

    def __init__(self, path: Path, lod: str | None, theme: str | None) -> None:
        self.path = path
        self.lod = lod
        self.theme = theme
        self.templates: tuple[list[Any], np.ndarray] = ([], np.zeros((0, 3)))
        self.skipped = Skipped()
        self.vert_chunks: list[np.ndarray] = []
        self.nverts = 0
        self.uv_chunks: list[np.ndarray] = []
        self.nuv = 0
        self.ids: list[str] = []
        self.types: list[str] = []
        self.parents: list[str | None] = []
        self.lods: list[str] = []
        self.attributes: list[dict[str, Any]] = []
        self.corners: list[int] = []
        self.corner_uv: list[int] = []
        self.ring_len: list[int] = []
        self.surf_rings: list[int] = []
        self.surf_obj: list[int] = []
        self.surf_sem: list[int] = []
        self.surf_mat: list[int] = []
        self.surf_tex: list[int] = []
        self.semantic_types: dict[str, int] = {}
        self.materials: list[dict[str, Any]] = []
        self.material_keys: dict[str, int] = {}
        self.textures: list[Texture] = []
        self.texture_keys: dict[str, int] = {}
        self.material_theme: str | None = None
        self.texture_theme: str | None = None
        self.parent_of: dict[str, str] = {}
        self.object_types: Counter[str] = Counter()
        self.lods_found: Counter[str] = Counter()
        self._current_verts: np.ndarray = np.zeros((0, 3))

    # -- appearance ----------------------------------------------------------------------------------------------
    def add_appearance(self, app: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """Register an appearance's materials, textures and UVs; returns (material map, texture map, uv offset)."""
        if not isinstance(app, dict):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), self.nuv
        if self.material_theme is None and isinstance(app.get("default-theme-material"), str):
            self.material_theme = app["default-theme-material"]
        if self.texture_theme is None and isinstance(app.get("default-theme-texture"), str):
            self.texture_theme = app["default-theme-texture"]
        mats = app.get("materials") if isinstance(app.get("materials"), list) else []
        mat_map = np.full(len(mats), -1, np.int64)
        for i, m in enumerate(mats):
            if isinstance(m, dict):
                key = json.dumps(m, sort_keys=True)
                if key not in self.material_keys:
                    self.material_keys[key] = len(self.materials)
                    self.materials.append(m)
                mat_map[i] = self.material_keys[key]
        texs = app.get("textures") if isinstance(app.get("textures"), list) else []
        tex_map = np.full(len(texs), -1, np.int64)
        for i, t in enumerate(texs):
            if isinstance(t, dict) and isinstance(t.get("image"), str):
                uri = t["image"]
                if uri not in self.texture_keys:
                    self.texture_keys[uri] = len(self.textures)
                    self.textures.append(self._texture(uri, t.get("type")))
                tex_map[i] = self.texture_keys[uri]
        uv_offset = self.nuv
        raw_uv = app.get("vertices-texture")
        if raw_uv:
            try:
                uv = np.asarray(raw_uv, np.float64)
            except (ValueError, TypeError):
                uv = np.zeros((0, 2))
            if uv.ndim == 2 and uv.shape[1] == 2 and np.isfinite(uv).all():
                self.uv_chunks.append(uv)
                self.nuv += len(uv)
        return mat_map, tex_map, uv_offset

    def _texture(self, uri: str, kind: Any) -> Texture:
        p = Path(uri)
        if not p.is_absolute():
            p = self.path.parent / uri
        mime = _MIME.get(str(kind).upper(), "")
        if not mime:
            mime = "image/png" if uri.lower().endswith(".png") else "image/jpeg" if uri.lower().endswith(
                (".jpg", ".jpeg")) else "application/octet-stream"
        return Texture(uri=uri, path=p if p.is_file() else None, mime=mime)

    # -- objects -------------------------------------------------------------------------------------------------
    def add_chunk(self, objects: dict[str, Any], verts: np.ndarray, appearance: Any,
                  base: tuple[np.ndarray, np.ndarray, int] | None = None) -> None:
        """Add one unit of vertex numbering: a document, or a CityJSONSeq feature (`base`: the header's appearance
        maps, used when the feature has no appearance of its own)."""
        if isinstance(appearance, dict) or base is None:
            mat_map, tex_map, uv_offset = self.add_appearance(appearance)
        else:
            mat_map, tex_map, uv_offset = base
        vbase = self.nverts
        nlocal = len(verts)
        self._current_verts = verts
        extra: list[np.ndarray] = []
        for oid, obj in objects.items():
            if not isinstance(obj, dict):
                self.skipped.add("not a CityObject (not a JSON object)", [oid])
                continue
            kind = str(obj.get("type", "?"))
            self.object_types[kind] += 1
            parents = obj.get("parents")
            if isinstance(parents, list) and parents and isinstance(parents[0], str):
                self.parent_of[oid] = parents[0]
            geometries = obj.get("geometry")
            if geometries is None or geometries == []:
                if not obj.get("children"):
                    self.skipped.add("no geometry", [oid])
                continue
            if not isinstance(geometries, list):
                self.skipped.add("'geometry' is not a list", [oid])
                continue
            offered = [self._geometry_lod(g) for g in geometries if isinstance(g, dict)]
            self.lods_found.update(set(offered))
            chosen = self._choose(geometries)
            if not chosen:
                kinds = sorted({str(g.get("type")) for g in geometries if isinstance(g, dict)})
                if all(k in NON_SURFACE for k in kinds):
                    self.skipped.add(f"no surface geometry (only {', '.join(kinds)})", [oid])
                else:
                    self.skipped.add(f"no LoD {self.lod} geometry (has LoD {', '.join(sorted(set(offered)))})", [oid])
                continue
            local = _Local()
            added = len(extra)
            try:
                for gi, g, lod in chosen:
                    self._geometry(local, g, gi, nlocal, mat_map, tex_map, uv_offset, extra)
            except _BadGeometry as exc:
                del extra[added:]
                self.skipped.add(f"unreadable geometry: {exc}", [oid])
                continue
            if not local.surf_rings:
                self.skipped.add("geometry without surfaces", [oid])
                continue
            idx = len(self.ids)
            self.ids.append(str(oid))
            self.types.append(kind)
            self.lods.append(chosen[0][2])
            attrs = obj.get("attributes")
            self.attributes.append(dict(attrs) if isinstance(attrs, dict) else {})
            self.corners.extend([c + vbase for c in local.corners])
            self.corner_uv.extend(local.uv)
            self.ring_len.extend(local.ring_len)
            self.surf_rings.extend(local.surf_rings)
            self.surf_obj.extend([idx] * len(local.surf_rings))
            self.surf_sem.extend(local.sem)
            self.surf_mat.extend(local.mat)
            self.surf_tex.extend(local.tex)
        self.vert_chunks.append(verts)
        self.nverts += nlocal
        for e in extra:
            self.vert_chunks.append(e)
            self.nverts += len(e)

    def _geometry_lod(self, g: dict[str, Any]) -> str:
        """A geometry's LoD; a GeometryInstance has its template's."""
        if g.get("type") == "GeometryInstance":
            t, tpls = g.get("template"), self.templates[0]
            if type(t) is int and 0 <= t < len(tpls) and isinstance(tpls[t], dict):
                return _lod_text(tpls[t].get("lod"))
        return _lod_text(g.get("lod"))

    def _choose(self, geometries: list[Any]) -> list[tuple[int, dict[str, Any], str]]:
        """The geometries of one LoD: the one asked for (an integer LoD also matches its highest sub-LoD), else
        the highest the object has; only surface geometries."""
        cands: list[tuple[int, dict[str, Any], str]] = []
        for gi, g in enumerate(geometries):
            if not isinstance(g, dict):
                continue
            kind = g.get("type")
            lod = self._geometry_lod(g)
            if kind == "GeometryInstance":
                t, tpls = g.get("template"), self.templates[0]
                if type(t) is int and 0 <= t < len(tpls) and isinstance(tpls[t], dict) \
                        and tpls[t].get("type") not in SURFACE_DEPTH:
                    continue  # a template of points or lines
            elif kind not in SURFACE_DEPTH:
                continue
            cands.append((gi, g, lod))
        if not cands:
            return []
        if self.lod is None:
            best = max(_lod_key(c[2]) for c in cands)
            return [c for c in cands if _lod_key(c[2]) == best]
        exact = [c for c in cands if c[2] == self.lod]
        if exact or "." in self.lod:
            return exact
        sub = [c for c in cands if c[2].split(".")[0] == self.lod]
        if not sub:
            return []
        best = max(_lod_key(c[2]) for c in sub)
        return [c for c in sub if _lod_key(c[2]) == best]

    def _geometry(self, local: _Local, g: dict[str, Any], gi: int, nlocal: int, mat_map: np.ndarray,
                  tex_map: np.ndarray, uv_offset: int, extra: list[np.ndarray]) -> None:
        kind = g.get("type")
        remap: np.ndarray | None = None
        if kind == "GeometryInstance":
            g, remap = self._instance(g, gi, nlocal, extra)
            kind = g.get("type")
        depth = SURFACE_DEPTH[kind]
        where = f"geometry {gi} ({kind})"
        surfaces = _at_depth(g.get("boundaries"), depth, where, "boundaries")
        n = len(surfaces)
        sem = self._semantics(g.get("semantics"), depth, n, where)
        mat = self._theme_values(g.get("material"), depth, n, where, "material", mat_map)
        tex_rings = self._texture_values(g.get("texture"), depth, n, where)
        for si, surf in enumerate(surfaces):
            if not isinstance(surf, list):
                raise _BadGeometry(f"{where}: surface {si} is not a list of rings")
            rings_here = 0
            tex_surface = -1
            tsurf = tex_rings[si] if tex_rings is not None else None
            for ri, ring in enumerate(surf):
                if not isinstance(ring, list) or not all(type(v) is int for v in ring):
                    raise _BadGeometry(f"{where}: surface {si} ring {ri} is not a list of vertex indices")
                uvs: list[int] | None = None
                if tsurf is not None:
                    t = tsurf[ri] if isinstance(tsurf, list) and ri < len(tsurf) else None
                    if isinstance(t, list) and t and type(t[0]) is int:
                        if len(t) != len(ring) + 1 or not all(type(v) is int for v in t[1:]):
                            raise _BadGeometry(f"{where}: texture values of surface {si} ring {ri} do not match "
                                               f"its {len(ring)} vertices")
                        ti = t[0]
                        if 0 <= ti < len(tex_map) and tex_map[ti] >= 0:
                            if ri == 0:
                                tex_surface = int(tex_map[ti])
                            uvs = [u + uv_offset for u in t[1:]]
                if len(ring) > 1 and ring[0] == ring[-1]:
                    ring = ring[:-1]
                    if uvs is not None:
                        uvs = uvs[:-1]
                bound = nlocal if remap is None else len(remap)
                if ring and (min(ring) < 0 or max(ring) >= bound):
                    bad = max(ring) if max(ring) >= bound else min(ring)
                    raise _BadGeometry(f"{where}: surface {si} ring {ri} refers to vertex {bad}, but there are "
                                       f"{bound} {'vertices' if remap is None else 'template vertices'}")
                if remap is not None:
                    ring = remap[ring].tolist()
                if uvs is not None and uvs and (min(uvs) < 0 or max(uvs) >= self.nuv):
                    raise _BadGeometry(f"{where}: texture values of surface {si} ring {ri} refer to a texture "
                                       f"coordinate that does not exist")
                local.corners.extend(ring)
                local.uv.extend(uvs if uvs is not None else [-1] * len(ring))
                local.ring_len.append(len(ring))
                rings_here += 1
            if rings_here == 0:
                continue
            local.surf_rings.append(rings_here)
            local.sem.append(sem[si])
            local.mat.append(mat[si])
            local.tex.append(tex_surface)

    def _instance(self, g: dict[str, Any], gi: int, nlocal: int,
                  extra: list[np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
        """A GeometryInstance: the template's vertices moved by its matrix to the reference point, appended to the
        vertices; returns the template geometry and the map from template vertex to (chunk-local) index."""
        templates, tverts = self.templates
        where = f"geometry {gi} (GeometryInstance)"
        t = g.get("template")
        if type(t) is not int or not 0 <= t < len(templates) or not isinstance(templates[t], dict):
            raise _BadGeometry(f"{where}: template {t!r} does not exist ({len(templates)} templates)")
        ref = g.get("boundaries")
        if not isinstance(ref, list) or len(ref) != 1 or type(ref[0]) is not int or not 0 <= ref[0] < nlocal:
            raise _BadGeometry(f"{where}: boundaries must be one vertex index (the reference point), found {ref!r}")
        try:
            m = np.asarray(g.get("transformationMatrix"), np.float64).reshape(4, 4)
        except (ValueError, TypeError) as exc:
            raise _BadGeometry(f"{where}: transformationMatrix is not 16 numbers") from exc
        if not np.isfinite(m).all():
            raise _BadGeometry(f"{where}: transformationMatrix holds non-finite numbers")
        point = self._current_verts[ref[0]]
        moved = tverts @ m[:3, :3].T + m[:3, 3] + point
        start = nlocal + sum(len(e) for e in extra)
        extra.append(moved)
        return templates[t], np.arange(start, start + len(moved))

    def _semantics(self, sem: Any, depth: int, n: int, where: str) -> list[int]:
        if not isinstance(sem, dict):
            return [-1] * n
        surfaces = sem.get("surfaces")
        values = sem.get("values")
        if not isinstance(surfaces, list) or values is None:
            return [-1] * n
        index = []
        for s in surfaces:
            kind = s.get("type") if isinstance(s, dict) else None
            if not isinstance(kind, str):
                index.append(-1)
                continue
            if kind not in self.semantic_types:
                self.semantic_types[kind] = len(self.semantic_types)
            index.append(self.semantic_types[kind])
        flat = _values_at_depth(values, depth, n, f"{where}: semantics.values")
        out = []
        for v in flat:
            out.append(index[v] if type(v) is int and 0 <= v < len(index) else -1)
        return out

    def _theme_values(self, spec: Any, depth: int, n: int, where: str, what: str, mapping: np.ndarray) -> list[int]:
        if not isinstance(spec, dict) or not spec:
            return [-1] * n
        theme = self._pick_theme(spec, what)
        entry = spec.get(theme) if theme is not None else None
        if not isinstance(entry, dict):
            return [-1] * n
        if "value" in entry:
            v = entry["value"]
            m = int(mapping[v]) if type(v) is int and 0 <= v < len(mapping) else -1
            return [m] * n
        flat = _values_at_depth(entry.get("values"), depth, n, f"{where}: {what}.values")
        return [int(mapping[v]) if type(v) is int and 0 <= v < len(mapping) else -1 for v in flat]

    def _pick_theme(self, spec: dict[str, Any], what: str) -> str | None:
        current = self.material_theme if what == "material" else self.texture_theme
        if self.theme is not None and self.theme in spec:
            chosen = self.theme
        elif current is not None and current in spec:
            chosen = current
        else:
            chosen = next(iter(spec))
        if what == "material" and (self.material_theme is None or chosen == self.theme):
            self.material_theme = chosen
        elif what == "texture" and (self.texture_theme is None or chosen == self.theme):
            self.texture_theme = chosen
        return chosen

    def _texture_values(self, spec: Any, depth: int, n: int, where: str) -> list[Any] | None:
        if not isinstance(spec, dict) or not spec:
            return None
        theme = self._pick_theme(spec, "texture")
        entry = spec.get(theme) if theme is not None else None
        if not isinstance(entry, dict):
            return None
        return _values_at_depth(entry.get("values"), depth, n, f"{where}: texture.values")

    def finish(self, version: str, crs: CRS | None, declared: CRS | None) -> CityModel:
        verts = np.vstack(self.vert_chunks) if self.vert_chunks else np.zeros((0, 3))
        corners = np.asarray(self.corners, np.int64)
        ring_len = np.asarray(self.ring_len, np.int64)
        surf_rings = np.asarray(self.surf_rings, np.int64)
        uv = np.vstack(self.uv_chunks) if self.uv_chunks else np.zeros((0, 2))
        ids = np.asarray(self.ids, dtype=object)
        roots = np.asarray([self._root(i) for i in self.ids], dtype=object)
        parents = np.asarray([self.parent_of.get(i) for i in self.ids], dtype=object)
        model = CityModel(
            path=self.path, version=version, crs=crs, declared_crs=declared, ids=ids,
            types=np.asarray(self.types, dtype=object), roots=roots, parents=parents,
            lods=np.asarray(self.lods, dtype=object), attributes=self.attributes, vertices=verts,
            corner_vertex=corners, corner_uv=np.asarray(self.corner_uv, np.int64),
            ring_start=np.r_[0, np.cumsum(ring_len)].astype(np.int64),
            surface_start=np.r_[0, np.cumsum(surf_rings)].astype(np.int64),
            surface_object=np.asarray(self.surf_obj, np.int64),
            surface_semantic=np.asarray(self.surf_sem, np.int32),
            surface_material=np.asarray(self.surf_mat, np.int32),
            surface_texture=np.asarray(self.surf_tex, np.int32),
            semantic_types=list(self.semantic_types), materials=self.materials, textures=self.textures, uv=uv,
            material_theme=self.material_theme if self.materials else None,
            texture_theme=self.texture_theme if self.textures else None,
            skipped=self.skipped, object_types=dict(self.object_types), lods_found=dict(sorted(self.lods_found.items())),
        )
        return model

    def _root(self, oid: str) -> str:
        seen = {oid}
        while oid in self.parent_of and self.parent_of[oid] not in seen:
            oid = self.parent_of[oid]
            seen.add(oid)
        return oid


class _Local:
    """One object's surfaces before they are accepted."""

    __slots__ = ("corners", "uv", "ring_len", "surf_rings", "sem", "mat", "tex")

    def __init__(self) -> None:
        self.corners: list[int] = []
        self.uv: list[int] = []
        self.ring_len: list[int] = []
        self.surf_rings: list[int] = []
        self.sem: list[int] = []
        self.mat: list[int] = []
        self.tex: list[int] = []


def _at_depth(node: Any, depth: int, where: str, at: str) -> list[Any]:
    """The surfaces of a boundaries array `depth` levels above the surface level, in file order."""
    if not isinstance(node, list):
        raise _BadGeometry(f"{where}: {at} is not a list")
    level = node
    for d in range(depth):
        nxt: list[Any] = []
        for i, item in enumerate(level):
            if not isinstance(item, list):
                raise _BadGeometry(f"{where}: {at} holds a {type(item).__name__} where a list of "
                                   f"{'shells' if depth - d == 2 else 'surfaces'} belongs (item {i})")
            nxt.extend(item)
        level = nxt
    return level


def _values_at_depth(values: Any, depth: int, n: int, where: str) -> list[Any]:
    """Per-surface values (semantics, materials, textures) flattened like the boundaries; null at any level means
    no value for the surfaces below it. A shape that does not match the boundaries is an error."""
    if values is None:
        return [None] * n
    if not isinstance(values, list):
        raise _BadGeometry(f"{where} is not a list")
    level: list[Any] = values
    for _ in range(depth):
        nxt: list[Any] = []
        for item in level:
            if isinstance(item, list):
                nxt.extend(item)
            elif item is None:
                nxt.append(_NULL_GROUP)
            else:
                raise _BadGeometry(f"{where} does not follow the boundaries' nesting")
        level = nxt
    if any(v is _NULL_GROUP for v in level):
        raise _BadGeometry(f"{where}: a null stands for a whole shell; write one null per surface")
    if len(level) != n:
        raise _BadGeometry(f"{where} has {len(level)} values for {n} surfaces")
    return level


_NULL_GROUP = object()


__all__ = ["CityJSONReader", "CityModel", "Texture", "Triangles", "document_crs", "document_vertices", "is_cityjson",
           "read_citymodel", "reference_system", "triangulate"]
