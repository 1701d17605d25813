"""Per-segment weighted means Σ v·w / Σ w, exact to 1e-10 relative for any finite values.

Each segment's values are scaled by a power of two that brings its largest magnitude into
[0.5, 1), so no product or sum overflows (±1.8e308 is an ordinary value) and subnormals are
no longer subnormal. Scaling by 2^k is exact: it changes no bit of the plain float sum, which
a column of ordinary magnitudes (normal, below 2^900) therefore computes unscaled. Where a
segment's sum may have lost more than 1e-10 of itself to cancellation (mixed signs whose mean
is far smaller than their magnitudes) it is recomputed with integers; that is rare in real
data, so a Python loop over just those segments is cheap.
"""

from __future__ import annotations

import numpy as np

from tagflow.transforms.segments import segment_ends, segment_sums

# The float sum is kept where its error bound is below this fraction of itself.
_KEPT_RELATIVE_ERROR = 1e-10
_EPS = float(np.finfo(np.float64).eps)
_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)
_SMALLEST_SUBNORMAL = 2.0**-1074
# Below this magnitude a value times 2^63 µs, summed over 2^40 rows, stays finite.
_ORDINARY = 2.0**900


def _exact_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Σ v·w / Σ w correctly rounded: each v is M·2^k with an integer M of 53 bits, so the sum
    is an integer over a power of two, and int / int rounds correctly."""
    mantissa, exponent = np.frexp(values)
    significand = np.ldexp(mantissa, 53).astype(np.int64).tolist()
    power = (exponent.astype(np.int64) - 53).tolist()
    lowest = min(power)
    numerator = sum(
        m * w << (k - lowest) for m, w, k in zip(significand, weights.tolist(), power, strict=True)
    )
    denominator = int(weights.sum())
    if lowest >= 0:
        return (numerator << lowest) / denominator
    return numerator / (denominator << -lowest)


def weighted_means(
    values: np.ndarray,
    weights: np.ndarray,
    starts: np.ndarray,
    total: np.ndarray,
    minimum: np.ndarray,
    maximum: np.ndarray,
) -> np.ndarray:
    """Per segment of rows beginning at `starts`, Σ values·weights / Σ weights (NaN where the
    weights sum to 0). `weights` are non-negative integers below 2^53; a row of weight 0 is
    ignored whatever its value, every other value must be finite. The caller has per segment
    `total` (Σ weights) and the `minimum` and `maximum` of the values of positive weight (+inf
    and -inf where there are none)."""
    # A value of weight 0 may be NaN, and NaN·0 is NaN.
    value = np.where(weights > 0, values, 0.0)
    rows = np.diff(np.append(starts, len(value)))
    # Most columns need no scaling: no product of a value by a day in µs, nor any sum of them,
    # can overflow, and a product of a normal value by a positive integer is normal. (An
    # uncovered segment's minimum is +inf and its maximum -inf, so neither counts here.)
    largest = max(float(maximum.max(initial=-np.inf)), -float(minimum.min(initial=np.inf)))
    subnormal = np.count_nonzero(np.abs(value) < _SMALLEST_NORMAL) - np.count_nonzero(value == 0.0)
    ordinary = largest < _ORDINARY and subnormal == 0
    if ordinary:
        scaled = value
    else:
        segment_largest = np.maximum(np.abs(minimum), np.abs(maximum))
        _, exponent = np.frexp(np.where(total > 0, segment_largest, 0.0))
        scaled = np.ldexp(value, -np.repeat(exponent, rows))
    terms = scaled * weights
    sums = np.add.reduceat(terms, starts)
    # Error of the float sum: each product and each addition rounds by at most eps/2 of the
    # magnitudes summed, which is |sum| itself where the values share a sign.
    doubtful = (rows > _KEPT_RELATIVE_ERROR / _EPS - 2) & (total > 0)
    mixed = np.flatnonzero((minimum < 0.0) & (maximum > 0.0))
    if len(mixed):
        magnitudes = np.add.reduceat(np.abs(terms), starts)[mixed]
        bound = (rows[mixed] + 2) * _EPS * magnitudes
        doubtful[mixed] |= bound > _KEPT_RELATIVE_ERROR * np.abs(sums[mixed])
    del terms
    if not ordinary:
        # A value scaled into the subnormals (2^1021 below its segment's largest) and its
        # product lose up to one subnormal step each, times its weight.
        lost = (scaled != 0.0) & (np.abs(scaled) < _SMALLEST_NORMAL)
        lost_steps = segment_sums(np.where(lost, weights + 1, 0), starts)
        doubtful |= lost_steps * _SMALLEST_SUBNORMAL > _KEPT_RELATIVE_ERROR * np.abs(sums)
    del scaled
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / total if ordinary else np.ldexp(sums / total, exponent)
    if bool(doubtful.any()):
        ends = segment_ends(starts, len(value))
        for segment in np.flatnonzero(doubtful).tolist():
            span = slice(starts[segment], ends[segment])
            means[segment] = _exact_mean(value[span], weights[span])
    return means
