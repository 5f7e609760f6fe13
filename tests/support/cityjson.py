"""Generated CityJSON for tests and benchmarks: every geometry type, semantics, materials and texture mappings, and
a LoD2 city of any size.

`every_geometry(tmp)` writes a document (and its texture images) whose objects cover what the reader must handle,
with the answers the tests check against in `EXPECTED`; `lod2_city(n)` is a grid of gabled houses (LoD 1 and 2.2 per
house, semantic surfaces) as the benchmark's input.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

ORIGIN = (500_000.0, 4_400_000.0)  # EPSG:4547 / UTM-like metres (a place in northern China)
CRS_URL = "https://www.opengis.net/def/crs/EPSG/0/4547"


class _Doc:
    """A CityJSON document under construction: real-world vertices, objects, appearance."""

    def __init__(self) -> None:
        self.vertices: list[tuple[float, float, float]] = []
        self.objects: dict[str, Any] = {}
        self.uv: list[tuple[float, float]] = []

    def add(self, pts: list[tuple[float, float, float]]) -> list[int]:
        start = len(self.vertices)
        self.vertices.extend(pts)
        return list(range(start, start + len(pts)))

    def add_uv(self, pts: list[tuple[float, float]]) -> list[int]:
        start = len(self.uv)
        self.uv.extend(pts)
        return list(range(start, start + len(pts)))

    def to_json(self, *, version: str = "2.0", crs: str | None = CRS_URL, scale: float = 0.001,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        v = np.asarray(self.vertices, np.float64).reshape(-1, 3)
        doc: dict[str, Any] = {"type": "CityJSON", "version": version, "CityObjects": self.objects}
        if scale:
            translate = v.min(axis=0) if len(v) else np.zeros(3)
            ints = np.round((v - translate) / scale).astype(np.int64)
            doc["transform"] = {"scale": [scale] * 3, "translate": translate.tolist()}
            doc["vertices"] = ints.tolist()
        else:
            doc["vertices"] = v.tolist()
        if crs is not None:
            doc["metadata"] = {"referenceSystem": crs}
        doc.update(extra or {})
        return doc


def house(doc: _Doc, x: float, y: float, w: float = 10.0, d: float = 8.0, eave: float = 6.0, ridge: float = 9.0,
          base: float = 50.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """A gabled house (ridge along x) as LoD 1 and LoD 2.2 Solids with semantic surfaces; returns both geometries."""
    p = doc.add([(x, y, base), (x + w, y, base), (x + w, y + d, base), (x, y + d, base),
                 (x, y, base + eave), (x + w, y, base + eave), (x + w, y + d, base + eave), (x, y + d, base + eave),
                 (x, y + d / 2, base + ridge), (x + w, y + d / 2, base + ridge)])
    g0, g1, g2, g3, e0, e1, e2, e3, r0, r1 = p
    shell = [
        [[g0, g3, g2, g1]],  # ground, seen from below (outward normal down)
        [[g0, g1, e1, e0]],  # south wall
        [[g1, g2, e2, r1, e1]],  # east gable wall (pentagon)
        [[g2, g3, e3, e2]],  # north wall
        [[g3, g0, e0, r0, e3]],  # west gable wall
        [[e0, e1, r1, r0]],  # south roof
        [[e2, e3, r0, r1]],  # north roof
    ]
    lod2 = {"type": "Solid", "lod": "2.2", "boundaries": [shell],
            "semantics": {"surfaces": [{"type": "GroundSurface"}, {"type": "WallSurface"}, {"type": "RoofSurface"}],
                          "values": [[0, 1, 1, 1, 1, 2, 2]]}}
    t = doc.add([(x, y, base + ridge), (x + w, y, base + ridge), (x + w, y + d, base + ridge),
                 (x, y + d, base + ridge)])
    lod1 = {"type": "Solid", "lod": "1", "boundaries": [[
        [[g0, g3, g2, g1]], [[g0, g1, t[1], t[0]]], [[g1, g2, t[2], t[1]]], [[g2, g3, t[3], t[2]]],
        [[g3, g0, t[0], t[3]]], [[t[0], t[1], t[2], t[3]]]]]}
    return lod1, lod2


def png_bytes(colour: tuple[int, int, int], size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(colour: tuple[int, int, int], size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG")
    return buf.getvalue()


#: What `every_geometry` holds: the tests' reference answers.
EXPECTED = {
    "objects": {  # id -> (type, lod used by default, surfaces at that lod)
        "house": ("Building", "2.2", 7),
        "road": ("Road", "1", 2),
        "water": ("WaterBody", "1", 2),
        "part_a": ("BuildingPart", "1", 6),
        "part_b": ("BuildingPart", "1", 12),
        "tree": ("SolitaryVegetationObject", "2", 4),
        "textured": ("Building", "2", 6),
    },
    "skipped": {
        "lines": "no surface geometry (only MultiLineString)",
        "broken_index": "unreadable geometry: geometry 0 (Solid): surface 1 ring 0 refers to vertex 99999",
        "broken_shape": "unreadable geometry: geometry 0 (MultiSurface): surface 0 ring 0 is not a list",
        "broken_semantics": "unreadable geometry: geometry 0 (MultiSurface): semantics.values has 1 values for 2",
        "empty": "no geometry",
    },
    # the road: a 20 x 10 rectangle with a 4 x 4 hole, and a concave L-shape of 4 x 4 - 2 x 2
    "road_area": 20 * 10 - 4 * 4 + (4 * 4 - 2 * 2),
}


def every_geometry(folder: Path, *, version: str = "2.0", name: str = "every.city.json") -> Path:
    """Write a CityJSON document with every surface geometry type, semantics, a material theme and a texture theme
    (PNG, JPEG, a missing image), several LoDs, parts, a geometry template, and broken objects; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "appearance").mkdir(exist_ok=True)
    (folder / "appearance" / "red.png").write_bytes(png_bytes((200, 40, 30)))
    (folder / "appearance" / "wall.jpg").write_bytes(jpeg_bytes((240, 230, 200)))
    doc = _Doc()
    x0, y0 = ORIGIN
    lod1, lod2 = house(doc, x0, y0)
    lod2["material"] = {"colours": {"values": [[0, 1, 1, 1, 1, 2, 2]]}}
    doc.objects["house"] = {"type": "Building", "attributes": {"measuredHeight": 9.0, "roofType": "gabled",
                                                              "建筑高度": 9.0, "usage": {"main": "residential"}},
                            "geometry": [lod1, lod2]}
    # a road: MultiSurface with a hole in the first surface and a concave second surface
    r = doc.add([(x0, y0 - 30, 50), (x0 + 20, y0 - 30, 50), (x0 + 20, y0 - 20, 50), (x0, y0 - 20, 50)])
    h = doc.add([(x0 + 8, y0 - 27, 50), (x0 + 8, y0 - 23, 50), (x0 + 12, y0 - 23, 50), (x0 + 12, y0 - 27, 50)])
    L = doc.add([(x0 + 30, y0 - 30, 50), (x0 + 34, y0 - 30, 50), (x0 + 34, y0 - 28, 50), (x0 + 32, y0 - 28, 50),
                 (x0 + 32, y0 - 26, 50), (x0 + 30, y0 - 26, 50)])
    doc.objects["road"] = {"type": "Road", "attributes": {"name": "长安街"}, "geometry": [{
        "type": "MultiSurface", "lod": "1", "boundaries": [[r, h], [L]],
        "semantics": {"surfaces": [{"type": "TrafficArea"}, {"type": "AuxiliaryTrafficArea"}], "values": [0, 1]}}]}
    # water: CompositeSurface of two triangles
    w = doc.add([(x0 - 40, y0, 49), (x0 - 30, y0, 49), (x0 - 30, y0 + 10, 49), (x0 - 40, y0 + 10, 49)])
    doc.objects["water"] = {"type": "WaterBody", "geometry": [{
        "type": "CompositeSurface", "lod": "1", "boundaries": [[[w[0], w[1], w[2]]], [[w[0], w[2], w[3]]]]}]}
    # a building of two parts: a MultiSolid (one box) and a CompositeSolid (two boxes)
    boxes = [_box(doc, x0 + 40 + 12 * i, y0, 10, 10, 50, 60) for i in range(3)]
    doc.objects["parted"] = {"type": "Building", "attributes": {"floors": 3}, "children": ["part_a", "part_b"]}
    doc.objects["part_a"] = {"type": "BuildingPart", "parents": ["parted"], "attributes": {"层数": 3},
                             "geometry": [{"type": "MultiSolid", "lod": "1", "boundaries": [[boxes[0]]]}]}
    doc.objects["part_b"] = {"type": "BuildingPart", "parents": ["parted"], "geometry": [{
        "type": "CompositeSolid", "lod": "1", "boundaries": [[boxes[1]], [boxes[2]]]}]}
    # a tree: GeometryInstance of a pyramid template
    ref = doc.add([(x0 - 20, y0 - 20, 50)])[0]
    doc.objects["tree"] = {"type": "SolitaryVegetationObject", "geometry": [{
        "type": "GeometryInstance", "template": 0, "boundaries": [ref],
        "transformationMatrix": [2.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 2.0, 0, 0, 0, 0, 1]}]}
    templates = {"templates": [{"type": "MultiSurface", "lod": "2", "boundaries": [
        [[0, 1, 4]], [[1, 2, 4]], [[2, 3, 4]], [[3, 0, 4]]]}],
        "vertices-templates": [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 3]]}
    # a textured box: walls from the JPEG, roof from the PNG, one wall names a missing image
    tb = _box(doc, x0, y0 + 30, 6, 6, 50, 56)
    quad = doc.add_uv([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    tex_values = []
    for i, surface in enumerate(tb):
        t = 0 if i == 5 else (2 if i == 4 else 1)
        tex_values.append([[t, *quad[:len(surface[0])]]])
    doc.objects["textured"] = {"type": "Building", "geometry": [{
        "type": "Solid", "lod": "2", "boundaries": [tb],
        "texture": {"rgb": {"values": [tex_values]}, "winter": {"values": [[[[None]]] * 6]}}}]}
    # objects the reader must leave out, with a reason each
    doc.objects["lines"] = {"type": "GenericCityObject", "geometry": [{
        "type": "MultiLineString", "lod": "1", "boundaries": [[r[0], r[1]]]}]}
    doc.objects["broken_index"] = {"type": "Building", "geometry": [{
        "type": "Solid", "lod": "1", "boundaries": [[[[r[0], r[1], r[2]]], [[99999, r[1], r[2]]]]]}]}
    doc.objects["broken_shape"] = {"type": "Building", "geometry": [{
        "type": "MultiSurface", "lod": "1", "boundaries": [[5]]}]}
    doc.objects["broken_semantics"] = {"type": "Road", "geometry": [{
        "type": "MultiSurface", "lod": "1", "boundaries": [[r], [h]],
        "semantics": {"surfaces": [{"type": "TrafficArea"}], "values": [0]}}]}
    doc.objects["empty"] = {"type": "CityFurniture"}
    appearance = {
        "materials": [{"name": "ground", "diffuseColor": [0.4, 0.4, 0.4]},
                      {"name": "wall", "diffuseColor": [0.9, 0.9, 0.85]},
                      {"name": "roof", "diffuseColor": [0.7, 0.2, 0.1], "transparency": 0.0}],
        "textures": [{"type": "PNG", "image": "appearance/red.png"},
                     {"type": "JPG", "image": "appearance/wall.jpg"},
                     {"type": "PNG", "image": "appearance/missing.png"}],
        "vertices-texture": [list(uv) for uv in doc.uv],
        "default-theme-texture": "rgb",
    }
    extra: dict[str, Any] = {"appearance": appearance, "geometry-templates": templates}
    out = folder / name
    data = doc.to_json(version=version, extra=extra)
    if version == "1.0":
        data["metadata"]["referenceSystem"] = "urn:ogc:def:crs:EPSG::4547"
        for obj in data["CityObjects"].values():
            for g in obj.get("geometry", []):
                if "lod" in g:
                        g["lod"] = float(g["lod"]) if "." in str(g["lod"]) else int(g["lod"])
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def _box(doc: _Doc, x: float, y: float, w: float, d: float, z0: float, z1: float) -> list[list[list[int]]]:
    """One closed box shell: 6 surfaces (bottom, 4 walls, top), outward-facing."""
    b = doc.add([(x, y, z0), (x + w, y, z0), (x + w, y + d, z0), (x, y + d, z0)])
    t = doc.add([(x, y, z1), (x + w, y, z1), (x + w, y + d, z1), (x, y + d, z1)])
    return [[[b[0], b[3], b[2], b[1]]], [[b[0], b[1], t[1], t[0]]], [[b[1], b[2], t[2], t[1]]],
            [[b[2], b[3], t[3], t[2]]], [[b[3], b[0], t[0], t[3]]], [[t[0], t[1], t[2], t[3]]]]


def to_sequence(doc_path: Path, out: Path) -> Path:
    """The same model as CityJSONSeq: a header line, then one CityJSONFeature per top-level object (with its parts),
    each with its own vertices (and appearance when it is textured)."""
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    header = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices", "appearance")}
    header.update({"CityObjects": {}, "vertices": []})
    lines = [json.dumps(header, ensure_ascii=False)]
    objects = doc["CityObjects"]
    app = doc.get("appearance")
    for oid, obj in objects.items():
        if obj.get("parents"):
            continue
        members = {oid: obj, **{c: objects[c] for c in obj.get("children", [])}}
        used: dict[int, int] = {}
        feature_objects = json.loads(json.dumps(members))
        for o in feature_objects.values():
            for g in o.get("geometry", []):
                if g["type"] == "GeometryInstance":
                    g["boundaries"] = [_renumber(g["boundaries"][0], used)]
                else:
                    g["boundaries"] = _renumber_nested(g["boundaries"], used)
        verts = [None] * len(used)
        for old, new in used.items():
            verts[new] = doc["vertices"][old]
        feature = {"type": "CityJSONFeature", "id": oid, "CityObjects": feature_objects, "vertices": verts}
        if app and any("texture" in g or "material" in g for o in feature_objects.values()
                       for g in o.get("geometry", [])):
            feature["appearance"] = app
        lines.append(json.dumps(feature, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _renumber(v: int, used: dict[int, int]) -> int:
    if v not in used:
        used[v] = len(used)
    return used[v]


def _renumber_nested(b: Any, used: dict[int, int]) -> Any:
    if isinstance(b, list):
        return [_renumber_nested(x, used) for x in b]
    if isinstance(b, int) and not isinstance(b, bool):
        return _renumber(b, used) if b < 99999 else b
    return b


def lod2_city(n: int, *, seed: int = 7, attributes: bool = True) -> dict[str, Any]:
    """A CityJSON 2.0 document of `n` gabled houses on a grid (LoD 1 and 2.2 Solids, semantic surfaces, a few
    attributes), EPSG:4547 around `ORIGIN`."""
    rng = np.random.default_rng(seed)
    doc = _Doc()
    side = int(np.ceil(np.sqrt(n)))
    w = rng.uniform(8, 16, n)
    d = rng.uniform(6, 12, n)
    eave = rng.uniform(3, 12, n)
    ridge = eave + rng.uniform(1.5, 4, n)
    for i in range(n):
        x = ORIGIN[0] + (i % side) * 25.0
        y = ORIGIN[1] + (i // side) * 25.0
        lod1, lod2 = house(doc, x, y, float(w[i]), float(d[i]), float(eave[i]), float(ridge[i]))
        obj: dict[str, Any] = {"type": "Building", "geometry": [lod1, lod2]}
        if attributes:
            obj["attributes"] = {"measuredHeight": round(float(ridge[i]), 2), "storeysAboveGround": int(eave[i] // 3),
                                 "roofType": "1030", "yearOfConstruction": int(1950 + i % 70)}
        doc.objects[f"house_{i}"] = obj
    return doc.to_json()
