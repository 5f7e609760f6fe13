"""A tiny 3D Tiles 1.1 tileset built by hand, to prove the test harness (validators, server, browser) works.

The fixture is written from the specifications directly, not with the project's own writers, so that a harness test
does not depend on the code it will later judge: one glb holding boxes on the ground near a given longitude/latitude,
each box one feature (`EXT_mesh_features`, per-vertex `_FEATURE_ID_0`) with a row in an `EXT_structural_metadata`
property table (`code` string, `height` float64). The root tile's `transform` is the east-north-up frame at the
origin, whose ECEF position comes from `cim.sources.crs.to_ecef`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cim.sources.crs import from_ecef, to_ecef

GLB_MAGIC = 0x46546C67
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942
_FLOAT = 5126
_UNSIGNED_SHORT = 5123
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963


@dataclass(frozen=True)
class Box:
    """One box feature: centre offset from the tileset origin in metres (east, north), footprint and height."""

    code: str
    east: float
    north: float
    size: float = 20.0
    height: float = 20.0


@dataclass(frozen=True)
class PlacedBox:
    """A box of a written tileset with the geographic position of its centre (WGS 84 degrees, ellipsoidal m)."""

    box: Box
    lon: float
    lat: float
    mid_height: float


@dataclass(frozen=True)
class BoxTileset:
    """What `write_box_tileset` wrote."""

    root: Path
    tileset_path: Path
    content_path: Path
    transform: np.ndarray  # (4, 4) float64, local east/north/up metres -> ECEF
    boxes: tuple[PlacedBox, ...]


DEFAULT_BOXES = (Box("A-001", east=-20.0, north=0.0), Box("B-002", east=20.0, north=0.0, height=30.0))


def enu_transform(lon: float, lat: float, height: float = 0.0) -> np.ndarray:
    """The east-north-up frame at a WGS 84 point as a 4x4 matrix (local metres -> ECEF metres).

    Returns:
        (4, 4) float64; columns are east, north, up and the ECEF origin.
    """
    origin = to_ecef("EPSG:4326", np.array([lon]), np.array([lat]), np.array([height]))[0]
    lam, phi = np.radians(lon), np.radians(lat)
    east = np.array([-np.sin(lam), np.cos(lam), 0.0])
    north = np.array([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    up = np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = east, north, up, origin
    return m


def _box_mesh(box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat-shaded box in glTF axes (x east, y up, z south).

    Returns:
        positions (24, 3) float32, normals (24, 3) float32, indices (36,) uint16 (counter-clockwise outside).
    """
    h = box.size / 2.0
    x0, x1 = box.east - h, box.east + h
    z0, z1 = -box.north - h, -box.north + h
    y0, y1 = 0.0, box.height
    faces = [  # four corners counter-clockwise seen from outside, outward normal
        ([(x0, y1, z1), (x1, y1, z1), (x1, y1, z0), (x0, y1, z0)], (0, 1, 0)),
        ([(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)], (0, -1, 0)),
        ([(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)], (0, 0, 1)),
        ([(x1, y0, z0), (x0, y0, z0), (x0, y1, z0), (x1, y1, z0)], (0, 0, -1)),
        ([(x1, y0, z1), (x1, y0, z0), (x1, y1, z0), (x1, y1, z1)], (1, 0, 0)),
        ([(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)], (-1, 0, 0)),
    ]
    positions = np.array([c for corners, _ in faces for c in corners], np.float32)
    normals = np.repeat(np.array([n for _, n in faces], np.float32), 4, axis=0)
    quad = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    indices = np.concatenate([quad + 4 * i for i in range(6)]).astype(np.uint16)
    return positions, normals, indices


class _Bin:
    """Accumulates buffer views, each starting on an 8-byte boundary (float64 columns need it)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.views: list[dict[str, Any]] = []

    def add(self, raw: bytes, target: int | None = None) -> int:
        self.data.extend(b"\0" * (-len(self.data) % 8))
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.data.extend(raw)
        self.views.append(view)
        return len(self.views) - 1


def box_gltf(boxes: tuple[Box, ...] = DEFAULT_BOXES) -> tuple[dict[str, Any], bytes]:
    """The glTF JSON and binary chunk of a mesh with one feature per box.

    Returns:
        (gltf json dict, bin chunk bytes); the dict is fresh, so tests may corrupt it.
    """
    parts = [_box_mesh(b) for b in boxes]
    positions = np.concatenate([p for p, _, _ in parts])
    normals = np.concatenate([n for _, n, _ in parts])
    indices = np.concatenate([i + 24 * k for k, (_, _, i) in enumerate(parts)]).astype(np.uint16)
    feature_ids = np.repeat(np.arange(len(boxes), dtype=np.float32), 24)

    blob = _Bin()
    accessors = [
        {"bufferView": blob.add(positions.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT,
         "count": len(positions), "type": "VEC3",
         "min": positions.min(axis=0).tolist(), "max": positions.max(axis=0).tolist()},
        {"bufferView": blob.add(normals.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT,
         "count": len(normals), "type": "VEC3"},
        {"bufferView": blob.add(feature_ids.tobytes(), _ARRAY_BUFFER), "componentType": _FLOAT,
         "count": len(feature_ids), "type": "SCALAR"},
        {"bufferView": blob.add(indices.tobytes(), _ELEMENT_ARRAY_BUFFER), "componentType": _UNSIGNED_SHORT,
         "count": len(indices), "type": "SCALAR"},
    ]
    codes = [b.code.encode("utf-8") for b in boxes]
    offsets = np.cumsum([0] + [len(c) for c in codes]).astype(np.uint32)
    code_values = blob.add(b"".join(codes))
    code_offsets = blob.add(offsets.tobytes())
    heights = blob.add(np.array([b.height for b in boxes], np.float64).tobytes())

    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "cim-engine tests/support/fixtures.py"},
        "extensionsUsed": ["EXT_mesh_features", "EXT_structural_metadata"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "boxes"}],
        "meshes": [{"primitives": [{
            "attributes": {"POSITION": 0, "NORMAL": 1, "_FEATURE_ID_0": 2},
            "indices": 3,
            "material": 0,
            "mode": 4,
            "extensions": {"EXT_mesh_features": {"featureIds": [
                {"featureCount": len(boxes), "attribute": 0, "propertyTable": 0},
            ]}},
        }]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.9, 0.6, 0.3, 1.0],
                                                "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
        "accessors": accessors,
        "bufferViews": blob.views,
        "buffers": [{"byteLength": len(blob.data)}],
        "extensions": {"EXT_structural_metadata": {
            "schema": {"id": "boxes", "classes": {"box": {"properties": {
                "code": {"type": "STRING", "required": True},
                "height": {"type": "SCALAR", "componentType": "FLOAT64"},
            }}}},
            "propertyTables": [{
                "class": "box",
                "count": len(boxes),
                "properties": {
                    "code": {"values": code_values, "stringOffsets": code_offsets},
                    "height": {"values": heights},
                },
            }],
        }},
    }
    return gltf, bytes(blob.data)


def glb_bytes(gltf: dict[str, Any], bin_chunk: bytes) -> bytes:
    """Pack glTF JSON and a binary chunk into a GLB container (chunks padded to 4 bytes)."""
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    bn = bin_chunk + b"\0" * (-len(bin_chunk) % 4)
    total = 12 + 8 + len(js) + (8 + len(bn) if bn else 0)
    out = struct.pack("<III", GLB_MAGIC, 2, total) + struct.pack("<II", len(js), _JSON_CHUNK) + js
    if bn:
        out += struct.pack("<II", len(bn), _BIN_CHUNK) + bn
    return out


def write_box_tileset(
    root: Path,
    *,
    lon: float = 113.30,
    lat: float = 40.09,
    height: float = 0.0,
    boxes: tuple[Box, ...] = DEFAULT_BOXES,
) -> BoxTileset:
    """Write `tileset.json` (3D Tiles 1.1) and `boxes.glb` into `root`.

    Args:
        root: output folder (created).
        lon, lat, height: WGS 84 position of the local origin on the ground.
        boxes: the features; box centres are east/north offsets from the origin.

    Returns:
        Paths, the root transform and every box's geographic centre.
    """
    root.mkdir(parents=True, exist_ok=True)
    transform = enu_transform(lon, lat, height)
    gltf, bin_chunk = box_gltf(boxes)
    content = root / "boxes.glb"
    content.write_bytes(glb_bytes(gltf, bin_chunk))

    lo = np.array([[b.east - b.size / 2, b.north - b.size / 2, 0.0] for b in boxes]).min(axis=0)
    hi = np.array([[b.east + b.size / 2, b.north + b.size / 2, b.height] for b in boxes]).max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    tileset = {
        "asset": {"version": "1.1"},
        "geometricError": 100.0,
        "root": {
            "transform": transform.T.ravel().tolist(),  # column-major
            "boundingVolume": {"box": [*centre, half[0], 0, 0, 0, half[1], 0, 0, 0, half[2]]},
            "geometricError": 0.0,
            "refine": "ADD",
            "content": {"uri": content.name},
        },
    }
    tileset_path = root / "tileset.json"
    tileset_path.write_text(json.dumps(tileset, indent=1), encoding="utf-8")

    local = np.array([[b.east, b.north, b.height / 2] for b in boxes])
    ecef = local @ transform[:3, :3].T + transform[:3, 3]
    geo = from_ecef("EPSG:4326", ecef)
    placed = tuple(PlacedBox(b, float(g[0]), float(g[1]), float(g[2])) for b, g in zip(boxes, geo, strict=True))
    return BoxTileset(root, tileset_path, content, transform, placed)
