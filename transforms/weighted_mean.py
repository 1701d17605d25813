"""Per-segment weighted means Σ v·w / Σ w, exact to 1e-10 relative for any finite values.

Each segment's values are scaled by a power of two that brings its largest magnitude into
[0.5, 1), so no product or sum overflows (±1.8e308 is an ordinary value) and subnormals are
no longer subnormal; scaling by 2^k is exact, so values of ordinary range give the same bits
as the plain float sum. Where a segment's sum may have lost more than 1e-10 of itself to
cancellation (mixed signs whose mean is far smaller than their magnitudes) it is recomputed
with integers; that is rare in real data, so a Python loop over just those segments is cheap.
"""

from __future__ import annotations

import numpy as np

from tagflow.transforms.segments import segment_ends, segment_sums

# The float sum is kept where its error bound is below this fraction of itself.
_KEPT_RELATIVE_ERROR = 1e-10
_EPS = float(np.finfo(np.float64).eps)
_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)
_SMALLEST_SUBNORMAL = 2.0**-1074


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


def weighted_means(values: np.ndarray, weights: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment of rows beginning at `starts`, Σ values·weights / Σ weights (NaN where the
    weights sum to 0). `weights` are non-negative integers below 2^53; a row of weight 0 is
    ignored whatever its value, every other value must be finite."""
    used = weights > 0
    value = np.where(used, values, 0.0)
    weight = np.where(used, weights, 0)
    total = segment_sums(weight, starts)
    _, exponent = np.frexp(np.maximum.reduceat(np.abs(value), starts))
    rows_per_segment = np.diff(np.append(starts, len(value)))
    scaled = np.ldexp(value, -np.repeat(exponent, rows_per_segment))
    terms = scaled * weight
    sums = np.add.reduceat(terms, starts)
    # Error of the float sum: each product and each addition rounds by at most eps/2 of the
    # magnitudes summed; a value scaled into the subnormals (2^1021 below its segment's
    # largest) and its product lose up to one subnormal step each, times its weight.
    magnitudes = np.add.reduceat(np.abs(terms), starts)
    del terms
    lost = (scaled != 0.0) & (np.abs(scaled) < _SMALLEST_NORMAL)
    lost_steps = segment_sums(np.where(lost, weight + 1, 0), starts)
    del scaled, lost
    bound = (rows_per_segment + 2) * _EPS * magnitudes + lost_steps * _SMALLEST_SUBNORMAL
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.ldexp(sums / total, exponent)
    doubtful = np.flatnonzero(bound > _KEPT_RELATIVE_ERROR * np.abs(sums))
    if len(doubtful):
        ends = segment_ends(starts, len(value))
        for segment in doubtful.tolist():
            rows = slice(starts[segment], ends[segment])
            means[segment] = _exact_mean(value[rows], weight[rows])
    return means
