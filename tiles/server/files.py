"""Static 3D Tiles content of a built model: an index of its files and a bounded in-memory cache.

A model folder is indexed once when the server starts: URL paths map to files through that dictionary only, so no
request text is ever joined to a file-system path (no traversal, no symlink escape, nothing outside the index is
served). `build.json` is left out: it names the build machine's input paths. Content is read on first request and
kept (with its gzip form and a strong ETag, a digest of the bytes) in an LRU cache of bounded size.

JSON always gets a gzip form; glb and other binary content get one only when it saves at least a tenth (an
untextured building tile, uncompressed: 438,584 bytes, 145,887 gzipped; meshopt-compressed geometry still gains about
a quarter; JPEG or KTX2 textures do not). The gzip form is made once, on the first request, and cached with the
file; a Range request is answered from the identity bytes, whose ETag differs from the gzip form's.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tiles.errors import TileNotFoundError

MEDIA_TYPES: dict[str, str] = {
    ".json": "application/json",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".bin": "application/octet-stream",
    ".b3dm": "application/octet-stream",
    ".i3dm": "application/octet-stream",
    ".pnts": "application/octet-stream",
    ".cmpt": "application/octet-stream",
    ".subtree": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ktx2": "image/ktx2",
    ".terrain": "application/vnd.quantized-mesh",
}
COMPRESSIBLE = (".json", ".gltf")
# binary content worth a gzip form when it shrinks by at least this share
BINARY_GZIP = (".glb", ".b3dm", ".i3dm", ".pnts", ".cmpt", ".subtree", ".bin", ".terrain")
MIN_GZIP_SAVING = 0.1
EXCLUDED = {"build.json"}


class FileEntry(NamedTuple):
    """One cached file: its bytes, gzip form (None when not worth it), strong ETag and media type."""

    content: bytes
    gzipped: bytes | None
    etag: str
    media_type: str


def index_folder(root: str | os.PathLike[str]) -> dict[str, Path]:
    """URL paths (`terrain/0/0_0.glb`) of the servable files under `root`: known 3D Tiles media types, no hidden
    files or folders, no `build.json`, nothing that resolves outside `root`."""
    base = Path(root).resolve()
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fn in filenames:
            p = Path(dirpath, fn)
            if fn.startswith(".") or p.suffix.lower() not in MEDIA_TYPES:
                continue
            rel = p.relative_to(base).as_posix()
            if rel in EXCLUDED or not p.resolve().is_relative_to(base):
                continue
            out[rel] = p
    return out


@dataclass
class FileCache:
    """An LRU cache of file contents bounded by total bytes; thread-safe.

    Args:
        max_bytes: total size kept (files larger than a quarter of it are read each time, never cached).
        gzip_level: compression level of the JSON forms.
    """

    max_bytes: int = 256 * 1024 * 1024
    gzip_level: int = 6

    def __post_init__(self) -> None:
        self._items: OrderedDict[tuple[str, int, int], FileEntry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def cached(self, path: Path) -> FileEntry | None:
        """The entry of a file if it is in the cache and unchanged on disk, else None (no reading, no hashing)."""
        try:
            st = path.stat()
        except OSError:
            return None
        return self._lookup(path, st)[1]

    def _lookup(self, path: Path, st: os.stat_result) -> tuple[tuple[str, int, int], FileEntry | None]:
        """The cache key of a file as it is on disk, and its entry (marked recently used) if cached."""
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
        return key, hit

    def get(self, path: Path) -> FileEntry:
        """The entry of a file (read, hashed and compressed on a miss, or when the file changed on disk).

        Raises:
            TileNotFoundError: the file vanished since the index was made.
        """
        try:
            st = path.stat()
        except OSError as exc:
            raise TileNotFoundError(f"{path.name} is no longer on disk") from exc
        key, hit = self._lookup(path, st)
        if hit is not None:
            return hit
        content = path.read_bytes()
        suffix = path.suffix.lower()
        gz = None
        if suffix in COMPRESSIBLE and len(content) > 256:
            gz = gzip.compress(content, self.gzip_level, mtime=0)
        elif suffix in BINARY_GZIP and len(content) > 1024:
            gz = gzip.compress(content, self.gzip_level, mtime=0)
            if len(gz) > (1 - MIN_GZIP_SAVING) * len(content):
                gz = None
        entry = FileEntry(content, gz, '"' + hashlib.blake2b(content, digest_size=16).hexdigest() + '"',
                          MEDIA_TYPES[suffix])
        size = len(content) + len(gz or b"")
        if size <= self.max_bytes // 4:
            with self._lock:
                if key not in self._items:
                    self._items[key] = entry
                    self._size += size
                while self._size > self.max_bytes and self._items:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old.content) + len(old.gzipped or b"")
        return entry


__all__ = ["BINARY_GZIP", "COMPRESSIBLE", "FileCache", "FileEntry", "MEDIA_TYPES", "index_folder"]
