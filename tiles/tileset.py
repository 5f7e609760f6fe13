"""3D Tiles 1.1 tileset documents: pydantic models with the spec's field names on the wire.

Python code uses snake_case (`geometric_error`); `to_json()` writes the spec's names (`geometricError`) and drops
unset fields. Bounding volumes are `region`s (EPSG:4979 radians and ellipsoidal metres), which do not depend on any
tile transform, so containment between parents, children and content is checked in one frame.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cim.files import apply_umask


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class BoundingVolume(_Model):
    """`region`: [west, south, east, north, minimum height, maximum height] (radians, metres); or box/sphere."""

    region: list[float] | None = None
    box: list[float] | None = None
    sphere: list[float] | None = None


class Content(_Model):
    uri: str
    bounding_volume: BoundingVolume | None = None


class Subtrees(_Model):
    uri: str


class ImplicitTiling(_Model):
    """A tile's `implicitTiling` (3D Tiles 1.1): its descendants are described by subtree files."""

    subdivision_scheme: Literal["QUADTREE", "OCTREE"]
    subtree_levels: int = Field(ge=1)
    available_levels: int = Field(ge=1)
    subtrees: Subtrees


class Tile(_Model):
    bounding_volume: BoundingVolume
    geometric_error: float = Field(ge=0)
    refine: Literal["ADD", "REPLACE"] | None = None
    content: Content | None = None
    children: list[Tile] | None = None
    transform: list[float] | None = None
    implicit_tiling: ImplicitTiling | None = None

    def walk(self, depth: int = 0) -> Iterator[tuple[Tile, int]]:
        """Every tile below and including this one, with its depth (0 for self)."""
        yield self, depth
        for child in self.children or []:
            yield from child.walk(depth + 1)


class Asset(_Model):
    version: str = "1.1"
    generator: str | None = "cim-engine"
    tileset_version: str | None = None


class Tileset(_Model):
    asset: Asset = Field(default_factory=Asset)
    geometric_error: float = Field(ge=0)
    root: Tile
    properties: dict[str, Any] | None = None
    extras: dict[str, Any] | None = None
    metadata_schema: dict[str, Any] | None = Field(default=None, alias="schema")  # implicit tiles' metadata

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write tileset.json atomically (temp file + rename)."""
        return write_atomic(Path(path), self.to_json().encode("utf-8"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Tileset:
        return cls.model_validate_json(Path(path).read_bytes())

    def tiles(self) -> Iterator[tuple[Tile, int]]:
        return self.root.walk()


def relative_transforms(tile: Tile, parent: np.ndarray | None = None) -> Tile:
    """Turn absolute tile transforms (local frame -> ECEF) into the spec's parent-relative ones, in place.

    Builders give each tile the absolute transform of its own local frame; 3D Tiles multiplies transforms down the
    tree, so each stored transform must be inverse(parent's absolute) @ own absolute, computed in float64.
    """
    parent = np.eye(4) if parent is None else parent
    absolute = parent
    if tile.transform is not None:
        absolute = np.asarray(tile.transform, np.float64).reshape(4, 4).T
        rel = np.linalg.solve(parent, absolute)
        rel[3] = (0.0, 0.0, 0.0, 1.0)
        tile.transform = None if np.allclose(rel, np.eye(4), rtol=0, atol=1e-12) else [float(v) for v in rel.T.ravel()]
    for child in tile.children or []:
        relative_transforms(child, absolute)
    return tile


def rebase_uris(tile: Tile, prefix: str) -> Tile:
    """Strip a folder prefix from every content URI of a subtree, in place (for a tileset written in that folder)."""
    for t, _ in tile.walk():
        if t.content is not None and t.content.uri.startswith(prefix):
            t.content.uri = t.content.uri[len(prefix):]
        if t.implicit_tiling is not None and t.implicit_tiling.subtrees.uri.startswith(prefix):
            t.implicit_tiling.subtrees.uri = t.implicit_tiling.subtrees.uri[len(prefix):]
    return tile


def write_atomic(path: Path, data: bytes) -> Path:
    """Write bytes to `path` through a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        apply_umask(fd)  # mkstemp makes 0600: outputs get the mode the user's umask gives new files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


Tile.model_rebuild()
