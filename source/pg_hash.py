"""PostgreSQL's own 64-bit hash functions (`hashint8extended`, `hashfloat8extended`), vectorised
with numpy, so that a checksum computed over Arrow batches on this side equals the one the
server computes in SQL over the same rows.

Both are Bob Jenkins' lookup3 as PostgreSQL implements it (src/common/hashfn.c): an int8 is
folded to 32 bits and hashed as one word, a float8's 8 bytes as two little-endian words (this
port assumes a little-endian server, like every platform PostgreSQL ships for today).
"""

from __future__ import annotations

import numpy as np

_U32 = np.uint32
_GOLDEN = 0x9E3779B9 + 3923095
# get_float8_nan(): every NaN hashes as the canonical quiet NaN.
_CANONICAL_NAN = np.uint64(0x7FF8000000000000)


def _rot(x: np.ndarray, k: int) -> np.ndarray:
    return (x << _U32(k)) | (x >> _U32(32 - k))


def _mix(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    a -= c
    a ^= _rot(c, 4)
    c += b
    b -= a
    b ^= _rot(a, 6)
    a += c
    c -= b
    c ^= _rot(b, 8)
    b += a
    a -= c
    a ^= _rot(c, 16)
    c += b
    b -= a
    b ^= _rot(a, 19)
    a += c
    c -= b
    c ^= _rot(b, 4)
    b += a


def _final(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    c ^= b
    c -= _rot(b, 14)
    a ^= c
    a -= _rot(c, 11)
    b ^= a
    b -= _rot(a, 25)
    c ^= b
    c -= _rot(b, 16)
    a ^= c
    a -= _rot(c, 4)
    b ^= a
    b -= _rot(a, 14)
    c ^= b
    c -= _rot(b, 24)


def _start(n: int, length: int, seed: np.ndarray | int) -> tuple[np.ndarray, ...]:
    """The lookup3 state for keys of `length` bytes, perturbed by the (int64) seeds."""
    a = np.full(n, (_GOLDEN + length) & 0xFFFFFFFF, dtype=_U32)
    b, c = a.copy(), a.copy()
    seed = np.broadcast_to(np.asarray(seed, dtype=np.int64), (n,)).view(np.uint64)
    seeded = seed != 0
    if seeded.any():
        sa, sb, sc = a[seeded], b[seeded], c[seeded]
        sa += (seed[seeded] >> np.uint64(32)).astype(_U32)
        sb += (seed[seeded] & np.uint64(0xFFFFFFFF)).astype(_U32)
        _mix(sa, sb, sc)
        a[seeded], b[seeded], c[seeded] = sa, sb, sc
    return a, b, c


def _result(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return ((b.astype(np.uint64) << np.uint64(32)) | c.astype(np.uint64)).view(np.int64)


def hashint8extended(values: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """`hashint8extended(value, seed)` of int64 values (int64 results, as SQL returns them)."""
    values = np.asarray(values, dtype=np.int64)
    low = values.view(np.uint64).astype(_U32)
    high = (values.view(np.uint64) >> np.uint64(32)).astype(_U32)
    folded = low ^ np.where(values >= 0, high, ~high)
    a, b, c = _start(len(values), 4, seed)
    a += folded
    _final(a, b, c)
    return _result(b, c)


def hashfloat8extended(values: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """`hashfloat8extended(value, seed)` of float64 values: ±0 hash to the seed itself and every
    NaN as the canonical NaN, as PostgreSQL does."""
    values = np.asarray(values, dtype=np.float64)
    seeds = np.broadcast_to(np.asarray(seed, dtype=np.int64), values.shape)
    bits = values.view(np.uint64).copy()
    bits[np.isnan(values)] = _CANONICAL_NAN
    a, b, c = _start(len(values), 8, seeds)
    a += (bits & np.uint64(0xFFFFFFFF)).astype(_U32)
    b += (bits >> np.uint64(32)).astype(_U32)
    _final(a, b, c)
    return np.where(values == 0.0, seeds, _result(b, c))
