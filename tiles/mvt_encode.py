"""Vector tile layers written as protocol buffers, vectorised (`tiles.pbf`): properties dictionary-encoded once per
layer version (`PropertyColumn`), then a tile's points (`encode_points`) or its lines and polygons
(`encode_features`) with their tags gathered as bytes. Used by `tiles.mvt`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiles import pbf

@dataclass(frozen=True)
class PropertyColumn:
    """One property of many features, dictionary-encoded with each distinct value already written as a Layer
    `values` entry, so a tile only gathers bytes.

    Attributes:
        name: the property (MVT key).
        codes: (n,) int32 index of each feature's value in the dictionary, -1 for null.
        entries: uint8 bytes of every distinct value's entry (field 4 of a Layer wrapping a Value message).
        offsets: (k,) int64 start of each entry in `entries`.
        lengths: (k,) int64 bytes of each entry.
    """

    name: str
    codes: np.ndarray
    entries: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_arrow(cls, name: str, column: pa.Array | pa.ChunkedArray) -> PropertyColumn:
        """Encode an Arrow column of an MVT type (string, bool, integer, float32 or float64)."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        enc = pc.dictionary_encode(column)
        codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        entries, lengths = _value_entries(enc.dictionary)
        return cls(name, codes, entries, np.cumsum(lengths) - lengths, lengths)

    def take(self, rows: np.ndarray) -> PropertyColumn:
        """The same dictionary with the codes of `rows` only."""
        return PropertyColumn(self.name, self.codes[rows], self.entries, self.offsets, self.lengths)


def _value_entries(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Layer `values` entries (field 4, each wrapping one Value message) of distinct, non-null values.

    Returns:
        (bytes uint8, lengths (k,) int64 of each entry).
    """
    n = len(values)
    t = values.type
    if n == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        width = np.int64 if pa.types.is_large_string(t) else np.int32
        offsets = np.frombuffer(values.buffers()[1], dtype=width)[values.offset:values.offset + n + 1].astype(np.int64)
        data = np.frombuffer(values.buffers()[2], dtype=np.uint8) if values.buffers()[2] else np.zeros(0, np.uint8)
        body = pbf.strings(data, offsets)
        inner = [pbf.const(b"\x0a", n), pbf.varints(body.lengths), body]  # string_value = 1
    elif pa.types.is_boolean(t):
        inner = [pbf.const(b"\x38", n), pbf.varints(values.to_numpy(zero_copy_only=False).astype(np.uint64))]
    elif pa.types.is_integer(t):
        inner = [pbf.const(b"\x20", n), pbf.varints(values.to_numpy().astype(np.int64))]  # int_value = 4
    elif pa.types.is_float32(t):
        inner = [pbf.const(b"\x15", n), pbf.fixed(values.to_numpy().astype(np.float32))]  # float_value = 2
    else:
        inner = [pbf.const(b"\x19", n), pbf.fixed(values.to_numpy().astype(np.float64))]  # double_value = 3
    return pbf.assemble([pbf.const(b"\x22", n), pbf.varints(pbf.record_lengths(inner)), *inner])


def encode_points(name: str, fid: np.ndarray, px: np.ndarray, py: np.ndarray,
                  properties: pa.Table | Sequence[PropertyColumn], extent: int) -> bytes:
    """One MVT tile (version 2) of a single layer of point features, encoded with numpy.

    Args:
        name: the layer name.
        fid: (n,) int64 feature ids (non-negative).
        px, py: (n,) int64 tile coordinates (y down), may reach into the buffer (negative or > extent).
        properties: n rows of MVT-typed columns, as an Arrow table or as `PropertyColumn`s (see `encode_features`).
        extent: tile extent in units.

    Returns:
        The tile bytes.
    """
    if isinstance(properties, pa.Table):
        properties = [PropertyColumn.from_arrow(k, properties.column(k)) for k in properties.column_names]
    n, k = len(fid), len(properties)
    tags, present, values = _tags(properties, n)
    # every field of a point feature is a varint: one (n, 13 + 2k) table written in one pass
    cols = np.zeros((n, 13 + 2 * k), dtype=np.uint64)
    mask = np.ones(cols.shape, dtype=bool)
    cols[:, 0] = 0x12  # Layer.features
    cols[:, 2] = 0x08  # id
    cols[:, 3] = fid
    cols[:, 4] = 0x12  # tags, packed
    cols[:, 6:6 + 2 * k] = tags
    mask[:, 6:6 + 2 * k] = present
    tag_len = (pbf.varint_lengths(tags) * present).sum(axis=1) if k else np.zeros(n, dtype=np.int64)
    cols[:, 5] = tag_len
    mask[:, 4] = mask[:, 5] = tag_len > 0
    g = 6 + 2 * k
    cols[:, g:g + 3] = (0x18, 1, 0x22)  # type POINT; geometry, packed
    cols[:, g + 4] = 0x09  # MoveTo(1)
    cols[:, g + 5] = pbf.zigzag(px)
    cols[:, g + 6] = pbf.zigzag(py)
    lens = pbf.varint_lengths(cols) * mask
    cols[:, g + 3] = lens[:, g + 4:].sum(axis=1)
    inner = lens[:, 2:].sum(axis=1) - lens[:, g + 3] + pbf.varint_lengths(cols[:, g + 3])
    cols[:, 1] = inner
    features, _ = pbf.varint_rows(cols, mask)
    return _layer(name, features, properties, values, extent)


def _tags(properties: Sequence[PropertyColumn], n: int) -> tuple[np.ndarray, np.ndarray, list[pbf.Segment]]:
    """Tags of n features: (n, 2k) int64 key/value indices, (n, 2k) bool presence (no tag for nulls), and the
    Layer `values` entries of the values used, property by property."""
    tags = np.zeros((n, 2 * len(properties)), dtype=np.int64)
    present = np.zeros(tags.shape, dtype=bool)
    values: list[pbf.Segment] = []
    base = 0
    for j, column in enumerate(properties):
        valid = column.codes >= 0
        used, local = np.unique(column.codes[valid], return_inverse=True)
        tags[:, 2 * j] = j
        tags[valid, 2 * j + 1] = local + base
        present[:, 2 * j] = present[:, 2 * j + 1] = valid
        base += len(used)
        values.append(pbf.Segment(column.lengths[used], data=column.entries, offsets=column.offsets[used]))
    return tags, present, values


def _layer(name: str, features: np.ndarray, properties: Sequence[PropertyColumn], values: list[pbf.Segment],
           extent: int) -> bytes:
    """A tile of one layer from its encoded features (each already wrapped as a Layer `features` field)."""
    layer = b"".join([
        pbf.field_key(15, 0) + pbf.encode_varint(2),
        pbf.length_delimited(1, name.encode()),
        features.tobytes(),
        *(pbf.length_delimited(3, c.name.encode()) for c in properties),
        *(pbf.assemble([v])[0].tobytes() for v in values if len(v.lengths)),
        pbf.field_key(5, 0) + pbf.encode_varint(extent),
    ])
    return pbf.length_delimited(3, layer)


def encode_features(name: str, fid: np.ndarray, geom_type: int, geometry: list[pbf.Segment],
                    properties: pa.Table | Sequence[PropertyColumn], extent: int) -> bytes:
    """One MVT tile (version 2) of a single layer of features of one geometry type, encoded with numpy.

    Args:
        name: the layer name.
        fid: (n,) int64 feature ids (non-negative).
        geom_type: MVT GeomType of every feature: 1 POINT, 2 LINESTRING, 3 POLYGON.
        geometry: segments whose concatenation is each feature's packed command stream (`tile_geometries`
            returns it as one byte-string segment; points pass MoveTo and the two zigzag parameters).
        properties: n rows of MVT-typed columns, as an Arrow table or as `PropertyColumn`s (whose dictionaries may
            hold more values than the tile uses: only the used ones are written); nulls are left out of a
            feature's tags.
        extent: tile extent in units.

    Returns:
        The tile bytes.
    """
    if isinstance(properties, pa.Table):
        properties = [PropertyColumn.from_arrow(k, properties.column(k)) for k in properties.column_names]
    n = len(fid)
    tag_values, present, values = _tags(properties, n)
    tag_bytes, tag_len = pbf.varint_rows(tag_values, present)
    tags = pbf.Segment(tag_len, data=tag_bytes, offsets=np.cumsum(tag_len) - tag_len)
    has_tags = tag_len > 0
    inner = [pbf.const(b"\x08", n), pbf.varints(fid),  # id = 1
             pbf.const(b"\x12", n, has_tags), pbf.varints(tag_len, has_tags), tags,  # tags = 2, packed
             pbf.const(bytes([0x18, geom_type, 0x22]), n),  # type = 3; geometry = 4, packed:
             pbf.varints(pbf.record_lengths(geometry)), *geometry]
    features, _ = pbf.assemble([pbf.const(b"\x12", n), pbf.varints(pbf.record_lengths(inner)), *inner])
    return _layer(name, features, properties, values, extent)


__all__ = ["PropertyColumn", "encode_features", "encode_points"]
