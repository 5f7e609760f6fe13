"""Structural checks of a 3D Tiles tileset, beyond what a glTF validator sees.

`check_tileset` walks a tileset (and the external tilesets it references) and reports every broken rule:
- every content URI resolves to a file inside the tileset folder;
- transforms are affine and finite;
- geometric error never grows from a tile to its children, leaves have 0 (when asked);
- children, content bounding volumes and the content's actual vertices lie inside their tile's bounding volume;
- glb metadata is consistent: feature IDs within EXT_mesh_features' featureCount and the property table's count,
  string offsets monotonic and within their buffer (the Khronos validator does not check these extensions);
- implicit tilesets (3D Tiles 1.1 implicit tiling) are followed through their subtree files: the implicit root's
  constraints (no children, no content volume, a region to subdivide), each subtree's binary layout (header,
  8-byte aligned chunks and buffer views) and availability (counts, content only where a tile is), every available
  content present as a file and no content or subtree file present that availability does not reach; then every
  implied tile is checked like an explicit one (content volumes and vertices inside the implied or metadata
  volume, children inside parents, errors halving).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.geodesy import ecef_to_geodetic, region_of
from tiles.errors import TilesError, TilesetCheckError
from tiles.gltf import read_glb
from tiles.implicit import expand

_R = 6378137.0


@dataclass
class Problem:
    """One broken rule: where (a JSON-pointer-like path), which rule, and what was seen."""

    where: str
    rule: str
    message: str


@dataclass
class CheckReport:
    tileset: Path
    tiles: int = 0
    contents: int = 0
    vertices_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "tileset": str(self.tileset),
            "tiles": self.tiles,
            "contents": self.contents,
            "vertices_checked": self.vertices_checked,
            "ok": self.ok,
            "problems": [p.__dict__ for p in self.problems],
        }

    def raise_for_problems(self) -> None:
        if self.problems:
            lines = "\n".join(f"  {p.where}: [{p.rule}] {p.message}" for p in self.problems[:20])
            raise TilesetCheckError(f"tileset {self.tileset} breaks {len(self.problems)} rule(s):\n{lines}")


def check_tileset(
    path: str | os.PathLike[str], *, check_content: bool = True, leaves_zero: bool = True, tolerance_m: float = 0.01
) -> CheckReport:
    """Check a tileset.json and everything it references.

    Args:
        path: the tileset.json.
        check_content: also read every glb and check its vertices and metadata.
        leaves_zero: require geometric error 0 on tiles without children.
        tolerance_m: slack in metres for containment tests.
    """
    root_path = Path(path)
    report = CheckReport(tileset=root_path)
    _check_file(root_path, root_path.parent.resolve(), np.eye(4), None, report, check_content, leaves_zero,
                tolerance_m, "", set())
    return report


def _check_file(path: Path, top: Path, parent_tf: np.ndarray, parent_error: float | None, report: CheckReport,
                check_content: bool, leaves_zero: bool, tol: float, where: str, seen: set[Path]) -> list[float] | None:
    resolved = path.resolve()
    if resolved in seen:
        report.problems.append(Problem(where or "/", "uri", f"{path} references itself (cycle)"))
        return None
    seen = seen | {resolved}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(Problem(where or "/", "json", f"cannot read {path}: {exc}"))
        return None
    version = (doc.get("asset") or {}).get("version")
    if version not in ("1.0", "1.1"):
        report.problems.append(Problem(f"{where}/asset", "asset", f"asset.version is {version!r}, not 1.0/1.1"))
    root = doc.get("root")
    if not isinstance(root, dict):
        report.problems.append(Problem(where or "/", "json", f"{path} has no root tile"))
        return None
    ts_error = doc.get("geometricError", 0)
    if float(root.get("geometricError", 0)) > float(ts_error) + 1e-9:
        report.problems.append(Problem(f"{where}/root", "geometric-error",
                                       f"root error {root.get('geometricError')} > tileset error {ts_error}"))
    if parent_error is not None and float(ts_error) > parent_error + 1e-9:
        report.problems.append(Problem(f"{where}/root", "geometric-error",
                                       f"external tileset error {ts_error} > referencing tile's {parent_error}"))
    return _check_tile(root, path.parent, top, parent_tf, None, report, check_content, leaves_zero, tol,
                       f"{where}/root", seen)


def _check_tile(tile: dict[str, Any], base: Path, top: Path, parent_tf: np.ndarray, parent_error: float | None,
                report: CheckReport, check_content: bool, leaves_zero: bool, tol: float, where: str,
                seen: set[Path]) -> list[float] | None:
    if "implicitTiling" in tile:
        return _check_implicit(tile, base, top, parent_tf, parent_error, report, check_content, tol, where, seen)
    report.tiles += 1
    tf = parent_tf
    if "transform" in tile:
        m = np.asarray(tile["transform"], dtype=np.float64)
        if m.shape != (16,) or not np.all(np.isfinite(m)):
            report.problems.append(Problem(where, "transform", "transform is not 16 finite numbers"))
        else:
            local = m.reshape(4, 4).T
            if not np.allclose(local[3], [0, 0, 0, 1]):
                report.problems.append(Problem(where, "transform", "transform's last row is not [0, 0, 0, 1]"))
            tf = parent_tf @ local
    error = float(tile.get("geometricError", -1))
    if error < 0:
        report.problems.append(Problem(where, "geometric-error", "geometricError missing or negative"))
    if parent_error is not None and error > parent_error + 1e-9:
        report.problems.append(Problem(where, "geometric-error", f"error {error} > parent's {parent_error}"))
    children = tile.get("children") or []
    content = tile.get("content")
    if leaves_zero and not children and error != 0 and not (content and content.get("uri", "").endswith(".json")):
        report.problems.append(Problem(where, "leaf-error", f"leaf tile has geometricError {error}, not 0"))
    region = _region(tile.get("boundingVolume"), tf, report, where)
    if content:
        uri = content.get("uri", "")
        target = (base / uri).resolve()
        if not str(target).startswith(str(top)):
            report.problems.append(Problem(f"{where}/content", "uri", f"{uri!r} points outside the tileset folder"))
        elif not target.is_file():
            report.problems.append(Problem(f"{where}/content", "uri", f"{uri!r} does not resolve to a file"))
        else:
            report.contents += 1
            inner = None
            if "boundingVolume" in content:
                inner = _region(content["boundingVolume"], tf, report, f"{where}/content")
                if inner and region and not _inside(inner, region, tol):
                    report.problems.append(Problem(f"{where}/content", "bounds",
                                                   "content bounding volume is not inside the tile's"))
            if uri.endswith(".json"):
                ext = _check_file(target, top, tf, error, report, check_content, leaves_zero, tol,
                                  f"{where}/content", seen)
                if ext and region and not _inside(ext, region, tol):
                    report.problems.append(Problem(f"{where}/content", "bounds",
                                                   "external tileset's root volume is not inside the tile's"))
            elif check_content and uri.endswith(".glb"):
                _check_glb(target, tf, inner or region, report, tol, f"{where}/content")
    for k, child in enumerate(children):
        child_region = _check_tile(child, base, top, tf, error, report, check_content, leaves_zero, tol,
                                   f"{where}/children/{k}", seen)
        if child_region and region and not _inside(child_region, region, tol):
            report.problems.append(Problem(f"{where}/children/{k}", "bounds",
                                           "child bounding volume is not inside its parent's"))
    return region


def _check_implicit(tile: dict[str, Any], base: Path, top: Path, parent_tf: np.ndarray, parent_error: float | None,
                    report: CheckReport, check_content: bool, tol: float, where: str,
                    seen: set[Path]) -> list[float] | None:
    """An implicit root tile: its constraints, its subtree files, then its implied tiles as explicit ones."""
    if tile.get("children"):
        report.problems.append(Problem(where, "implicit", "an implicit root tile must not have children"))
    content = tile.get("content") or {}
    if "boundingVolume" in content:
        report.problems.append(Problem(f"{where}/content", "implicit",
                                       "an implicit root's content must not have a boundingVolume"))
    if content.get("uri", "").endswith(".json"):
        report.problems.append(Problem(f"{where}/content", "implicit",
                                       "an implicit root's content must not be an external tileset"))
    try:
        tree = expand(base, tile)
    except (TilesError, KeyError, ValueError) as exc:
        report.problems.append(Problem(where, "subtree", str(exc)))
        return _region(tile.get("boundingVolume"), parent_tf, report, where)
    if "transform" in tile:
        tree["transform"] = tile["transform"]
    region = _check_tile(tree, base, top, parent_tf, parent_error, report, check_content, False, tol, where, seen)
    # files the templates name that availability does not reach (a stale or half-written build)
    imp = tile["implicitTiling"]
    contents: set[Path] = set()

    def collect(t: dict[str, Any]) -> None:
        if "content" in t:
            contents.add((base / t["content"]["uri"]).resolve())
        for c in t.get("children") or []:
            collect(c)

    collect(tree)
    subtrees = {(base / imp["subtrees"]["uri"].format(level=lv, x=x, y=y)).resolve()
                for lv, x, y in _implicit_keys(tree)}
    for kind, template, known in (("content", content.get("uri"), contents),
                                  ("subtree", imp["subtrees"]["uri"], subtrees)):
        if not template:
            continue
        pattern = template.replace("{level}", "*").replace("{x}", "*").replace("{y}", "*").replace("{z}", "*")
        extra = sorted(str(p.relative_to(base)) for p in base.glob(pattern) if p.resolve() not in known)
        if extra:
            report.problems.append(Problem(where, "availability", f"{len(extra)} {kind} file(s) present that no "
                                                                   f"availability reaches: {extra[:3]}"))
    return region


def _implicit_keys(tree: dict[str, Any]) -> set[tuple[int, int, int]]:
    """The coordinates of the subtree roots an expanded implicit tree was read from."""
    out: set[tuple[int, int, int]] = set()

    def walk(t: dict[str, Any], parent_subtree: str | None) -> None:
        if t["subtree"] != parent_subtree:
            out.add(tuple(t["implicit"]))  # type: ignore[arg-type]
        for c in t.get("children") or []:
            walk(c, t["subtree"])

    walk(tree, None)
    return out


def _region(volume: dict[str, Any] | None, tf: np.ndarray, report: CheckReport, where: str) -> list[float] | None:
    """Any bounding volume as a region (boxes and spheres via their corners, placed by the tile transform)."""
    if not volume:
        report.problems.append(Problem(where, "bounds", "no boundingVolume"))
        return None
    if "region" in volume:
        r = [float(v) for v in volume["region"]]
        if len(r) != 6 or r[0] > r[2] or r[1] > r[3] or r[4] > r[5]:
            report.problems.append(Problem(where, "bounds", f"malformed region {r}"))
            return None
        return r
    if "box" in volume:
        b = np.asarray(volume["box"], np.float64)
        c, axes = b[:3], b[3:].reshape(3, 3)
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
        corners = c + signs @ axes
    elif "sphere" in volume:
        s = np.asarray(volume["sphere"], np.float64)
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
        corners = s[:3] + signs * s[3]
    else:
        report.problems.append(Problem(where, "bounds", f"unknown bounding volume {list(volume)}"))
        return None
    ecef = corners @ tf[:3, :3].T + tf[:3, 3]
    return region_of(ecef)


def _inside(inner: list[float], outer: list[float], tol: float) -> bool:
    ang = tol / _R
    return (inner[0] >= outer[0] - ang and inner[1] >= outer[1] - ang and inner[2] <= outer[2] + ang
            and inner[3] <= outer[3] + ang and inner[4] >= outer[4] - tol and inner[5] <= outer[5] + tol)


def _check_glb(path: Path, tf: np.ndarray, region: list[float] | None, report: CheckReport, tol: float,
               where: str) -> None:
    try:
        glb = read_glb(path.read_bytes(), join_parts=False)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a finding, not a crash
        report.problems.append(Problem(where, "glb", f"cannot decode {path.name}: {exc}"))
        return
    problems = check_glb_metadata(glb)
    report.problems.extend(Problem(where, "metadata", p) for p in problems)
    if region is None:
        return
    for prim in glb["primitives"]:
        pos = prim["positions"]
        ecef = pos @ tf[:3, :3].T + tf[:3, 3]
        report.vertices_checked += len(pos)
        g = ecef_to_geodetic(ecef)
        lon, lat, h = np.radians(g[:, 0]), np.radians(g[:, 1]), g[:, 2]
        ang = tol / _R
        outside = ((lon < region[0] - ang) | (lon > region[2] + ang) | (lat < region[1] - ang)
                   | (lat > region[3] + ang) | (h < region[4] - tol) | (h > region[5] + tol))
        if outside.any():
            report.problems.append(Problem(where, "bounds", f"{int(outside.sum())} of {len(pos)} vertices of "
                                                            f"{path.name} lie outside the bounding volume"))


def check_glb_metadata(glb: dict[str, Any]) -> list[str]:
    """Consistency of EXT_mesh_features / EXT_structural_metadata in a decoded glb (see tiles.gltf.read_glb)."""
    problems: list[str] = []
    js = glb["json"]
    meta = (js.get("extensions") or {}).get("EXT_structural_metadata")
    tables = meta.get("propertyTables", []) if meta else []
    for m, mesh in enumerate(js.get("meshes", [])):
        for p, prim in enumerate(mesh.get("primitives", [])):
            ext = (prim.get("extensions") or {}).get("EXT_mesh_features")
            if not ext:
                continue
            decoded = glb["primitives"][sum(len(x["primitives"]) for x in js["meshes"][:m]) + p]
            for fid in ext.get("featureIds", []):
                count = int(fid.get("featureCount", 0))
                attribute = fid.get("attribute", 0)
                extra = decoded.get("extra_feature_ids") or []
                ids = decoded["feature_ids"] if attribute == 0 else (
                    extra[attribute - 1] if attribute is not None and 0 < attribute <= len(extra) else None)
                if ids is not None and fid.get("nullFeatureId") is not None:
                    ids = ids[ids != fid["nullFeatureId"]]  # "no feature": neither a row nor a counted feature
                if ids is None:
                    problems.append(f"mesh {m} primitive {p}: featureIds names an attribute the primitive lacks")
                    continue
                table = fid.get("propertyTable")
                # IDs index the property table's rows when there is one (a primitive may use any subset of them);
                # without a table they number the primitive's features 0..featureCount-1
                rows = tables[table]["count"] if table is not None and table < len(tables) else count
                if len(ids) and (ids.min() < 0 or ids.max() >= rows or np.any(ids != np.floor(ids))):
                    problems.append(f"mesh {m} primitive {p}: feature IDs outside 0..{rows - 1}")
                distinct = len(np.unique(ids))
                if count != distinct and not (distinct == 0 and count == 1):  # featureCount is at least 1
                    problems.append(f"mesh {m} primitive {p}: featureCount {count} but {distinct} "
                                    f"distinct IDs are used")
                if table is not None:
                    if table >= len(tables):
                        problems.append(f"mesh {m} primitive {p}: property table {table} does not exist")
                    elif tables[table]["count"] < count:
                        problems.append(f"property table {table} has {tables[table]['count']} rows for "
                                        f"{count} features")
                acc = js["accessors"][prim["attributes"].get(f"_FEATURE_ID_{fid.get('attribute', 0)}", 0)]
                if acc.get("componentType") not in (5121, 5123, 5126) or acc.get("normalized"):
                    problems.append(f"mesh {m} primitive {p}: feature ID accessor must be unnormalized UNSIGNED_BYTE, "
                                    f"UNSIGNED_SHORT or FLOAT")
    if meta:
        classes = meta.get("schema", {}).get("classes", {})
        views = js.get("bufferViews", [])
        for t, table in enumerate(tables):
            cls = classes.get(table.get("class"))
            if cls is None:
                problems.append(f"property table {t}: class {table.get('class')!r} is not in the schema")
                continue
            for name in table.get("properties", {}):
                if name not in cls.get("properties", {}):
                    problems.append(f"property table {t}: property {name!r} is not in class {table['class']!r}")
            for name, entry in table.get("properties", {}).items():
                for key in ("values", "stringOffsets"):
                    if key in entry and entry[key] >= len(views):
                        problems.append(f"property {name!r}: {key} buffer view {entry[key]} does not exist")
                    elif key in entry and views[entry[key]].get("byteOffset", 0) % 8:
                        problems.append(f"property {name!r}: {key} buffer view is not 8-byte aligned")
            for name, values in (glb.get("tables") or {}).get(table.get("class"), glb["properties"]).items():
                if len(values) != table["count"]:
                    problems.append(f"property {name!r} decodes to {len(values)} values, count is {table['count']}")
    return problems
