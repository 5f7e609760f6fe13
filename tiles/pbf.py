"""Vectorised protocol-buffer writing: many small messages of the same shape encoded at once with numpy.

A message is described as a row of *segments* per record: varints, fixed bytes and byte strings. `assemble` lays the
segments of every record side by side and the records one after another, without a Python loop over records. Used by
`tiles.mvt` to encode thousands of point features per tile in about a millisecond.

    >>> import numpy as np
    >>> ids = np.array([1, 300], dtype=np.uint64)
    >>> data, lengths = assemble([const(b"\\x08", 2), varints(ids)])
    >>> data.tobytes(), lengths.tolist()
    (b'\\x08\\x01\\x08\\xac\\x02', [2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAX_VARINT = 10


@dataclass(frozen=True)
class Segment:
    """One field of every record: record i contributes `lengths[i]` bytes.

    Attributes:
        lengths: (n,) int64 bytes per record (0: the record has no such field).
        matrix: (n, w) uint8, record i's bytes in `matrix[i, :lengths[i]]`; or None for a byte-string segment.
        data: uint8 bytes of every record back to back (record i's at `offsets[i]:offsets[i] + lengths[i]`), for a
            byte-string segment.
        offsets: (n,) int64 start of each record's bytes in `data`.
    """

    lengths: np.ndarray
    matrix: np.ndarray | None = None
    data: np.ndarray | None = None
    offsets: np.ndarray | None = None


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """(n,) int64 bytes of each unsigned value as a protobuf varint (1-10)."""
    v = np.asarray(values, dtype=np.uint64)
    n = np.ones(v.shape, dtype=np.int64)
    top = int(v.max()) if v.size else 0
    for k in range(1, _MAX_VARINT):
        if top < 1 << (7 * k):
            break
        n += v >= np.uint64(1 << (7 * k))
    return n


def varints(values: np.ndarray, present: np.ndarray | None = None) -> Segment:
    """Unsigned values (uint64, or int64 read as two's complement) as varints; `present` (n,) bool drops records."""
    v = np.asarray(values).astype(np.uint64, copy=False)
    n = varint_lengths(v)
    width = int(n.max()) if n.size else 1
    shifts = (np.arange(width, dtype=np.uint64) * np.uint64(7))[None, :]
    groups = ((v[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    more = np.arange(width)[None, :] < (n[:, None] - 1)
    matrix = groups | (more.astype(np.uint8) << 7)
    if present is not None:
        n = np.where(present, n, 0)
    return Segment(n, matrix=matrix)


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed int64 values zigzag-encoded (protobuf sint) as uint64."""
    v = np.asarray(values, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def const(raw: bytes, n: int, present: np.ndarray | None = None) -> Segment:
    """The same bytes (a field key, a constant value) in every record."""
    matrix = np.broadcast_to(np.frombuffer(raw, dtype=np.uint8), (n, len(raw)))
    lengths = np.full(n, len(raw), dtype=np.int64)
    if present is not None:
        lengths = np.where(present, lengths, 0)
    return Segment(lengths, matrix=matrix)


def fixed(values: np.ndarray) -> Segment:
    """Little-endian fixed-width values (float32, float64, ...) as their raw bytes."""
    v = np.ascontiguousarray(np.asarray(values).astype(np.asarray(values).dtype.newbyteorder("<"), copy=False))
    matrix = v.view(np.uint8).reshape(len(v), v.dtype.itemsize)
    return Segment(np.full(len(v), v.dtype.itemsize, dtype=np.int64), matrix=matrix)


def strings(data: np.ndarray, offsets: np.ndarray) -> Segment:
    """Byte strings: record i is `data[offsets[i]:offsets[i + 1]]` (`offsets` (n + 1,), as in Arrow)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return Segment(np.diff(offsets), data=np.asarray(data, dtype=np.uint8), offsets=offsets[:-1])


def record_lengths(segments: list[Segment]) -> np.ndarray:
    """(n,) int64 total bytes of each record."""
    total = np.zeros(len(segments[0].lengths), dtype=np.int64)
    for s in segments:
        total += s.lengths
    return total


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths),) int64 indices start..start + length - 1 of every range, ranges one after another."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    return np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)


def assemble(segments: list[Segment]) -> tuple[np.ndarray, np.ndarray]:
    """Write every record's segments in order, records one after another.

    Args:
        segments: the fields of a record, in order; all of the same record count n.

    Returns:
        (bytes uint8 (total,), lengths (n,) int64 of each record).
    """
    lengths = record_lengths(segments)
    if all(s.matrix is not None for s in segments):
        # row-major boolean indexing of the side-by-side matrices is the concatenation itself
        matrix = np.hstack([s.matrix for s in segments])
        mask = np.hstack([np.arange(s.matrix.shape[1])[None, :] < s.lengths[:, None] for s in segments])
        return matrix[mask], lengths
    starts = np.cumsum(lengths) - lengths
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    at = starts.copy()
    for s in segments:
        if s.matrix is not None:
            width = s.matrix.shape[1]
            mask = np.arange(width)[None, :] < s.lengths[:, None]
            rows, cols = np.nonzero(mask)
            out[at[rows] + cols] = s.matrix[rows, cols]
        elif s.lengths.sum():
            nz = s.lengths > 0
            src_start, dst_start, ln = s.offsets[nz], at[nz], s.lengths[nz]
            src = ranges(src_start, ln)  # every byte's source index, shifted below to its destination
            out[src + np.repeat(dst_start - src_start, ln)] = s.data[src]
        at += s.lengths
    return out, lengths


def varint_rows(values: np.ndarray, present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Records made only of varints (field keys below 128 are one-byte varints too), written in one pass.

    Args:
        values: (n, k) uint64 (or int64, read as two's complement): record i is the varints of row i in order.
        present: (n, k) bool, False leaves a value out of its record.

    Returns:
        (bytes uint8, lengths (n,) int64 of each record).
    """
    v = np.asarray(values).astype(np.uint64, copy=False).ravel()
    lens = varint_lengths(v)
    if present is not None:
        lens = lens * np.asarray(present).ravel()
    starts = np.cumsum(lens) - lens  # row-major order of (n, k) is the order of the bytes
    out = np.empty(int(lens.sum()), dtype=np.uint8)
    for i in range(int(lens.max()) if lens.size else 0):
        sel = np.flatnonzero(lens > i)
        byte = ((v[sel] >> np.uint64(7 * i)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= (lens[sel] > i + 1).astype(np.uint8) << 7
        out[starts[sel] + i] = byte
    return out, lens.reshape(np.shape(values)).sum(axis=1)


def field_key(number: int, wire_type: int) -> bytes:
    """The key byte(s) of a field (number << 3 | wire type)."""
    return encode_varint((number << 3) | wire_type)


def encode_varint(value: int) -> bytes:
    """One unsigned value as a varint."""
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return field_key(number, 2) + encode_varint(len(payload)) + payload


__all__ = ["Segment", "assemble", "const", "encode_varint", "field_key", "fixed", "length_delimited",
           "ranges", "record_lengths", "strings", "varint_lengths", "varint_rows", "varints", "zigzag"]
