"""Rendered tiles kept in memory: an LRU of bytes bounded by total size, keyed by what names the bytes.

Vector and raster tiles are keyed by the string their strong ETag digests (a layer version's table and cutting
options, or a COG's path, size and mtime, plus the tile address and format), so an entry cannot outlive the data it
was rendered from; access is checked before the cache is read, and the bytes do not depend on the caller. A gzip
form is its own entry (key + `|gzip`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict


def _cost(key: str, value: bytes) -> int:
    return len(value) + len(key) + 64  # an empty tile (204) still takes its key and dictionary slot


class TileCache:
    """A thread-safe LRU of bytes bounded by their total size.

    Args:
        max_bytes: total size kept; 0 disables the cache (every `get` misses, `put` keeps nothing).
    """

    def __init__(self, max_bytes: int = 128 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: str, value: bytes) -> bytes:
        """Keep `value` under `key` (a value larger than an eighth of the cache is not kept); returns it."""
        if self.max_bytes <= 0 or _cost(key, value) > self.max_bytes // 8:
            return value
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= _cost(key, old)
            self._items[key] = value
            self._size += _cost(key, value)
            while self._size > self.max_bytes and self._items:
                k, dropped = self._items.popitem(last=False)
                self._size -= _cost(k, dropped)
        return value

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["TileCache"]
