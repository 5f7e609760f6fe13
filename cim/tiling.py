"""The tile quadtree and the tile job runner that every model builder uses.

A building model is tiled as an ADD-refinement quadtree over footprint centroids (`quadtree`, `walk`): each
node shows its most prominent buildings and hands the rest to its quadrants. Tiles are meshed, encoded and
written by `run_tile_jobs`, and `nest_tiles` links the written tiles into one subtree with volumes grown upward.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cim.geodesy import union_regions
from tiles.tileset import BoundingVolume, Tile

Progress = Callable[[str, int, int], None]


@dataclass
class QuadNode:
    bounds: tuple[float, float, float, float]
    content: np.ndarray  # building indices shown by this tile
    children: list[QuadNode]
    error: float  # size of the largest building left to descendants


def quadtree(cx: np.ndarray, cy: np.ndarray, size: np.ndarray, idx: np.ndarray,
             bounds: tuple[float, float, float, float], capacity: int, depth: int = 0) -> QuadNode:
    """ADD-refinement quadtree: each node shows its `capacity` largest buildings, children the rest."""
    order = idx[np.argsort(-size[idx], kind="stable")]
    content, rest = order[:capacity], order[capacity:]
    node = QuadNode(bounds, content, [], float(size[rest].max()) if len(rest) else 0.0)
    if len(rest) == 0:
        return node
    if depth >= 24:  # all centroids coincide: keep the rest here
        node.content, node.error = order, 0.0
        return node
    if len(rest) <= capacity // 2:  # four thin tiles would cost more than they save
        node.children.append(quadtree(cx, cy, size, rest, bounds, capacity, depth + 1))
        return node
    x0, y0, x1, y1 = bounds
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    east = cx[rest] >= mx
    north = cy[rest] >= my
    for qe, qn, qb in ((False, False, (x0, y0, mx, my)), (True, False, (mx, y0, x1, my)),
                       (False, True, (x0, my, mx, y1)), (True, True, (mx, my, x1, y1))):
        sel = rest[(east == qe) & (north == qn)]
        if len(sel):
            node.children.append(quadtree(cx, cy, size, sel, qb, capacity, depth + 1))
    return node


def walk(node: QuadNode, path: str = "0") -> Iterator[tuple[QuadNode, str]]:
    yield node, path
    for k, child in enumerate(node.children):
        yield from walk(child, f"{path}{k}")



def run_tile_jobs(fn: Callable[[Any], Any], jobs: list[Any], state: dict[str, Any], *, workers: int | None = None,
                  progress: Progress | None = None, stage: str = "tiles") -> list[Any]:
    """Run `fn` over `jobs` in forked worker processes (one per core by default) that inherit `state`.

    `fn` reads the build's arrays from `state` (a module-level dict it knows); forking shares them instead of
    pickling them per job. Results come back in completion order.
    """
    n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: list[Any] = []
    try:
        if n > 1:
            with multiprocessing.get_context("fork").Pool(n) as pool:
                for done, res in enumerate(pool.imap_unordered(fn, jobs)):
                    results.append(res)
                    if progress:
                        progress(stage, done + 1, len(jobs))
        else:
            for done, job in enumerate(jobs):
                results.append(fn(job))
                if progress:
                    progress(stage, done + 1, len(jobs))
    finally:
        state.clear()
    return results


def nest_tiles(nodes: list[tuple[QuadNode, str]], tiles: dict[str, Tile]) -> Tile:
    """Attach each tile to its parent (paths are quadtree paths) and grow bounding volumes upward; the root."""
    for node, path in reversed(nodes):  # children before parents
        tile = tiles[path]
        kids = [tiles[f"{path}{k}"] for k in range(len(node.children))]
        if kids:
            tile.children = kids
            tile.bounding_volume = BoundingVolume(
                region=union_regions([tile.bounding_volume.region] + [k.bounding_volume.region for k in kids])
            )
    return tiles[nodes[0][1]]
