"""Probability tables shared by the encoder and the decoder.

Every table is a 1-D float64 probability vector whose entries are exact multiples of
``2**-PROB_BITS`` (each at least one unit) that sum to exactly 1. Snapping to this grid makes
the tables insensitive to last-bit differences of ``exp``/``log1p`` between machines and lets
the entropy coder use the exact integer weights (constriction's format, ``rans``).

Two families exist:

* the discretized logistic grid (:func:`logistic_tables`), indexed by a table id obtained from
  :func:`quantize_logistic` (or :func:`logistic_indices` and :func:`grid_ids`);
* per-channel mixtures of discretized logistics over a fixed value range
  (:func:`mixture_table`).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from ..once import once

__all__ = [
    "HALF_WIDTHS",
    "LOGSCALE_COUNT",
    "LOGSCALE_MAX",
    "LOGSCALE_MIN",
    "LOGSCALE_STEP",
    "MAX_TABLE_SIZE",
    "MEAN_LIMIT",
    "MEAN_STEPS",
    "NUM_LOGISTIC_TABLES",
    "PROB_BITS",
    "PROB_TOTAL",
    "FIT_MIN_LOGSCALE",
    "fit_logistic",
    "grid_ids",
    "heaviest_fit_weight",
    "logistic_grid_fingerprint",
    "logistic_indices",
    "logistic_tables",
    "mixture_table",
    "quantize_logistic",
    "quantize_weights",
]

MEAN_STEPS = 16
LOGSCALE_MIN = -3.0
LOGSCALE_STEP = 1.0 / 16.0
LOGSCALE_COUNT = 145
LOGSCALE_MAX = LOGSCALE_MIN + (LOGSCALE_COUNT - 1) * LOGSCALE_STEP  # 6.0
NUM_LOGISTIC_TABLES = LOGSCALE_COUNT * MEAN_STEPS

MEAN_LIMIT = float(2**20)
"""Means are clipped to [-MEAN_LIMIT, MEAN_LIMIT] before quantisation."""

PROB_BITS = 24
PROB_TOTAL = 1 << PROB_BITS
"""Tables are multiples of 1/PROB_TOTAL, the ANS coder's precision (``rans.PRECISION``)."""

MAX_TABLE_SIZE = 1 << 20


_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_EXP_COEFFICIENTS = [1.0 / math.factorial(n) for n in range(14, -1, -1)]


def portable_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) in float64 from + - * / rint and ldexp only: the same bits on every IEEE 754
    machine (libm and SIMD ``exp`` differ in the last bit between CPUs)."""
    x = np.clip(np.asarray(x, dtype=np.float64), -745.0, 709.0)
    k = np.rint(x * 1.4426950408889634)  # 1 / ln 2
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= 0.35
    p = np.full_like(r, _EXP_COEFFICIENTS[0])
    for c in _EXP_COEFFICIENTS[1:]:
        p = p * r + c
    return np.ldexp(p, k.astype(np.int64))


def _scales() -> np.ndarray:
    return portable_exp(LOGSCALE_MIN + np.arange(LOGSCALE_COUNT, dtype=np.float64) * LOGSCALE_STEP)


_SCALES = _scales()
_SCALES.setflags(write=False)

HALF_WIDTHS: np.ndarray = np.maximum(4, np.ceil(12.0 * _SCALES)).astype(np.int64)
"""W_g per log-scale index g: the grid table g covers relative values -W_g .. W_g."""
HALF_WIDTHS.setflags(write=False)


# --------------------------------------------------------------------------------------------
# numerics


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, accurate in both tails."""
    e = portable_exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _binned_logistic(z: np.ndarray) -> np.ndarray:
    """Bin masses of a standard logistic cut at the standardised edges ``z[..., j]``.

    ``z`` has shape (..., n-1), increasing along the last axis; the result has shape (..., n):
    bin 0 takes everything below z[0], the last bin everything above z[-1].
    """
    cdf = _sigmoid(z)
    sf = _sigmoid(-z)
    lo_cdf, hi_cdf = cdf[..., :-1], cdf[..., 1:]
    lo_sf, hi_sf = sf[..., :-1], sf[..., 1:]
    centre = z[..., :-1] + z[..., 1:]
    # Subtract the two smaller tail values so that far tails keep their relative accuracy.
    interior = np.where(centre > 0, lo_sf - hi_sf, hi_cdf - lo_cdf)
    return np.concatenate([cdf[..., :1], interior, sf[..., -1:]], axis=-1)


def quantize_weights(probabilities: np.ndarray) -> np.ndarray:
    """Integer weights (int64, each >= 1, summing to ``PROB_TOTAL``) closest to the input.

    Accepts a 1-D array or a 2-D batch of rows (each row normalised on its own). Nonnegative
    finite input is required; it need not be normalised. Weights that are already on the grid
    (``p * PROB_TOTAL`` integers >= 1 summing to ``PROB_TOTAL``) are returned unchanged.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    squeeze = p.ndim == 1
    if squeeze:
        p = p[None, :]
    if p.ndim != 2:
        raise ValueError("probabilities must be 1-D or 2-D")
    rows, n = p.shape
    if n < 2 or n > MAX_TABLE_SIZE:
        raise ValueError(f"a table needs 2..{MAX_TABLE_SIZE} bins, got {n}")
    if rows == 0:
        out = np.zeros((0, n), dtype=np.int64)
        return out[0] if squeeze else out
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probabilities must be finite and nonnegative")
    totals = _exact_row_sums(p)
    if np.any(totals <= 0):
        raise ValueError("probabilities must not all be zero")
    scaled = p * (PROB_TOTAL / totals)[:, None]
    w = np.rint(scaled).astype(np.int64)
    np.maximum(w, 1, out=w)
    diff = PROB_TOTAL - w.sum(axis=1)
    if np.any(diff != 0):
        _fix_sums(w, diff)
    return w[0] if squeeze else w


def _exact_row_sums(p: np.ndarray) -> np.ndarray:
    """Correctly rounded row sums, so that the result never depends on summation order."""
    scaled = p * PROB_TOTAL
    on_grid = np.all(scaled == np.rint(scaled), axis=1)
    totals = np.empty(p.shape[0])
    # Integers below 2**53 sum exactly in any order.
    totals[on_grid] = scaled[on_grid].sum(axis=1) / PROB_TOTAL
    for i in np.flatnonzero(~on_grid):
        totals[i] = math.fsum(p[i].tolist())
    return totals


def _fix_sums(w: np.ndarray, diff: np.ndarray) -> None:
    """Adds ``diff[i]`` to row i in steps of +-1 on its largest weights (deterministic order)."""
    while True:
        rows = np.flatnonzero(diff)
        if rows.size == 0:
            return
        sub = w[rows]
        d = diff[rows]
        # Only weights > 1 may be decreased; the largest ones always qualify unless all are 1.
        eligible = np.where(d < 0, (sub > 1).sum(axis=1), sub.shape[1])
        if np.any(eligible == 0):
            raise ValueError("table has too many bins for the probability precision")
        k = np.minimum(np.abs(d), eligible)
        kmax = int(k.max())
        # Largest weights first, ties by index: integer keys make the order exact.
        top = np.argsort(-sub, axis=1, kind="stable")[:, :kmax]
        step = np.sign(d)[:, None] * (np.arange(kmax)[None, :] < k[:, None])
        np.add.at(sub, (np.arange(rows.size)[:, None], top), step)
        w[rows] = sub
        diff[rows] = d - np.sign(d) * k


def _snap(probabilities: np.ndarray) -> np.ndarray:
    return quantize_weights(probabilities).astype(np.float64) / PROB_TOTAL


# --------------------------------------------------------------------------------------------
# discretized logistic grid


def quantize_logistic(mean: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid table ids (int32) and offsets (int64) for logistic parameters of any shape.

    A value x is coded as bin ``x - offset`` of table ``table_id``. NaN maps to 0, means are
    clipped to +-MEAN_LIMIT and log-scales to the grid's range.
    """
    return grid_ids(*logistic_indices(mean, log_scale))


def logistic_indices(mean: np.ndarray, log_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid point of logistic parameters of any shape: the mean in 16ths ``q`` and the
    log-scale index ``g`` (int64 arrays; :func:`grid_ids` turns them into tables)."""
    mean = np.asarray(mean, dtype=np.float64)
    log_scale = np.asarray(log_scale, dtype=np.float64)
    if mean.shape != log_scale.shape:
        raise ValueError(f"shape mismatch: mean {mean.shape} vs log_scale {log_scale.shape}")
    m = np.clip(np.nan_to_num(mean, nan=0.0), -MEAN_LIMIT, MEAN_LIMIT)
    q = np.floor(m * MEAN_STEPS).astype(np.int64)
    ls = np.clip(np.nan_to_num(log_scale, nan=0.0), LOGSCALE_MIN - 1.0, LOGSCALE_MAX + 1.0)
    gf = np.clip(np.rint((ls - LOGSCALE_MIN) / LOGSCALE_STEP), 0, LOGSCALE_COUNT - 1)
    return q, gf.astype(np.int64)


def grid_ids(q: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table ids (int32) and offsets (int64) of the grid logistics with mean ``q / 16`` and
    log-scale index ``g`` (integer arrays of one shape, ``0 <= g < LOGSCALE_COUNT``)."""
    q = np.asarray(q, dtype=np.int64)
    g = np.asarray(g, dtype=np.int64)
    k = q // MEAN_STEPS
    table_ids = (g * MEAN_STEPS + (q - k * MEAN_STEPS)).astype(np.int32)
    return table_ids, k - HALF_WIDTHS[g]


FIT_MIN_LOGSCALE = 28
"""Smallest log-scale index :func:`fit_logistic` chooses (scale 0.29): no symbol then takes
less than about half a bit, which keeps a floor under the size of a first-stage payload."""
_FIT_SPAN = 1 << 11  # values further than this from a row's median cost as if this far


@once
def heaviest_fit_weight() -> int:
    """The largest integer weight of the grid tables :func:`fit_logistic` may choose."""
    return max(int(w.max()) for w in _logistic_weights()[FIT_MIN_LOGSCALE * MEAN_STEPS :])


@once
def _fit_costs() -> np.ndarray:
    """Bits of each relative value -_FIT_SPAN.._FIT_SPAN under the grid table of each
    log-scale index (mean 0), overflow bits approximated; shape (LOGSCALE_COUNT, 2 span + 1)."""
    tables = _logistic_tables()
    d = np.arange(-_FIT_SPAN, _FIT_SPAN + 1)
    costs = np.empty((LOGSCALE_COUNT, d.size))
    for g in range(LOGSCALE_COUNT):
        w = int(HALF_WIDTHS[g])
        b = np.clip(d + w, 0, 2 * w)
        overflow = np.abs(d + w - b)
        costs[g] = -np.log2(tables[g * MEAN_STEPS][b]) + np.where(
            overflow > 0, np.log2(62.0) + np.floor(np.log2(overflow + 1.0)), 0.0
        )
    costs.setflags(write=False)
    return costs


def fit_logistic(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of an integer (C, N) array: ``(q, g, bits)`` of the grid logistic that codes
    the row in the fewest bits among those with their mean at the row's (lower) median and a
    log-scale index of at least ``FIT_MIN_LOGSCALE``; ``bits`` estimates its code length."""
    v = np.asarray(values, dtype=np.int64)
    rows, n = v.shape
    if not n:
        raise ValueError("nothing to fit")
    median = np.partition(v, (n - 1) // 2, axis=1)[:, (n - 1) // 2]
    width = 2 * _FIT_SPAN + 1
    rel = np.clip(v - median[:, None], -_FIT_SPAN, _FIT_SPAN) + _FIT_SPAN
    rel += np.arange(rows)[:, None] * width
    hist = np.bincount(rel.ravel(), minlength=rows * width).reshape(rows, width)
    used = np.flatnonzero(hist.any(axis=0))
    lo, hi = int(used[0]), int(used[-1]) + 1
    # einsum's own loops, not BLAS: OpenBLAS threads would compete with torch's for the cores
    costs = _fit_costs()[FIT_MIN_LOGSCALE:, lo:hi]
    bits = np.einsum("cd,gd->cg", hist[:, lo:hi].astype(np.float64), costs)
    best = np.argmin(bits, axis=1)
    return median * MEAN_STEPS, best + FIT_MIN_LOGSCALE, bits[np.arange(rows), best]


def _grid_rows(g: int) -> np.ndarray:
    """The MEAN_STEPS float tables of log-scale index g, shape (MEAN_STEPS, 2*W_g + 1)."""
    w = int(HALF_WIDTHS[g])
    s = _SCALES[g]
    edges = np.arange(-w, w, dtype=np.float64) + 0.5  # right edges of bins 0 .. 2w-1
    means = np.arange(MEAN_STEPS, dtype=np.float64) / MEAN_STEPS
    z = (edges[None, :] - means[:, None]) / s
    return _binned_logistic(z)


@once
def _logistic_weights() -> tuple[np.ndarray, ...]:
    weights: list[np.ndarray] = []
    for g in range(LOGSCALE_COUNT):
        weights.extend(quantize_weights(_grid_rows(g)))
    for w in weights:
        w.setflags(write=False)
    return tuple(weights)


@once
def _logistic_tables() -> tuple[np.ndarray, ...]:
    tables = []
    for w in _logistic_weights():
        t = w.astype(np.float64) / PROB_TOTAL
        t.setflags(write=False)
        tables.append(t)
    return tuple(tables)


def logistic_tables() -> list[np.ndarray]:
    """All NUM_LOGISTIC_TABLES grid tables (read-only), indexed by table id; built once."""
    return list(_logistic_tables())


def logistic_grid_fingerprint() -> str:
    """SHA-256 (hex) of the grid's integer weights; equal fingerprints mean identical tables."""
    h = hashlib.sha256()
    for w in _logistic_weights():
        h.update(np.ascontiguousarray(w, dtype="<i8").tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# mixtures


def mixture_table(
    logits: np.ndarray,
    means: np.ndarray,
    log_scales: np.ndarray,
    low: int,
    high: int,
) -> np.ndarray:
    """Table over the integers low..high for a mixture of discretized logistics.

    Component weights are softmax(logits). Bin 0 holds all mass below ``low + 0.5``, the last
    bin all mass above ``high - 0.5``. NaN parameters map to 0; means are clipped to
    +-MEAN_LIMIT and log-scales to [LOGSCALE_MIN, LOGSCALE_MAX].
    """
    logits = np.atleast_1d(np.asarray(logits, dtype=np.float64))
    means = np.atleast_1d(np.asarray(means, dtype=np.float64))
    log_scales = np.atleast_1d(np.asarray(log_scales, dtype=np.float64))
    if not (logits.ndim == means.ndim == log_scales.ndim == 1):
        raise ValueError("mixture parameters must be 1-D")
    if not (logits.shape == means.shape == log_scales.shape) or logits.size == 0:
        raise ValueError("mixture parameters must have the same nonzero length")
    low, high = int(low), int(high)
    n = high - low + 1
    if n < 2 or n > MAX_TABLE_SIZE:
        raise ValueError(f"a table needs 2..{MAX_TABLE_SIZE} bins, got low={low}, high={high}")
    if abs(low) > 2**40 or abs(high) > 2**40:
        raise ValueError("low/high out of range")

    logits = np.nan_to_num(logits, nan=0.0, posinf=1e300, neginf=-1e300)
    logits = np.clip(logits, -1e300, 1e300)
    mixw = portable_exp(logits - logits.max())
    mixw /= math.fsum(mixw.tolist())
    mu = np.clip(np.nan_to_num(means, nan=0.0), -MEAN_LIMIT, MEAN_LIMIT)
    ls = np.clip(np.nan_to_num(log_scales, nan=0.0), LOGSCALE_MIN, LOGSCALE_MAX)
    s = portable_exp(ls)

    edges = np.arange(low, high, dtype=np.float64) + 0.5
    z = (edges[None, :] - mu[:, None]) / s[:, None]
    bins = _binned_logistic(z)  # (K, n)
    p = bins[0] * mixw[0]
    for c in range(1, mixw.size):  # fixed summation order (no BLAS)
        p += bins[c] * mixw[c]
    return _snap(np.maximum(p, 0.0))
