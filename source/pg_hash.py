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


# lookup3's mix() and final() as PostgreSQL writes them, one step a line, each step on the next
# of (a, b, c) in turn; the numbers are the rotations of hashfn.c.
_MIX_ROTATIONS = (4, 6, 8, 16, 19, 4)
_FINAL_ROTATIONS = (14, 11, 25, 16, 4, 14, 24)


def _mix(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """mix(a, b, c): `x -= z; x ^= rot(z, k); z += y` for (x, y, z) = (a, b, c), (b, c, a),
    (c, a, b), … (in place)."""
    words = (a, b, c)
    for step, k in enumerate(_MIX_ROTATIONS):
        x, y, z = words[step % 3], words[(step + 1) % 3], words[(step + 2) % 3]
        x -= z
        x ^= _rot(z, k)
        z += y


def _final(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """final(a, b, c): `x ^= y; x -= rot(y, k)` for (x, y) = (c, b), (a, c), (b, a), …
    (in place)."""
    words = (c, a, b)
    for step, k in enumerate(_FINAL_ROTATIONS):
        x, y = words[step % 3], words[(step + 2) % 3]
        x ^= y
        x -= _rot(y, k)


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
