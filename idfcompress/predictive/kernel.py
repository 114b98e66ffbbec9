"""The predictive coder's per-value arithmetic, compiled (numba): the decoder's whole walk
through a region, the learned prior's logistic of every value, and the encoder's search
of the per-context shifts.

The same two functions turn a value's causal inputs into its features (:func:`_features`)
and run the prior's integer network on a batch of them (:func:`_network`); the encoder
(:func:`logistics`, every value of a plane) and the decoder (:func:`decode_region`, step
by step) both call them, so they cannot disagree. The arithmetic is the one docs/FORMAT.md
specifies ("Predictive payload", "Learned prior"): integers, and the network's sums of
integer products carried in float64, exact in any order.

Why compiled: the decoder walks 384 steps per 256-px RGB tile, and as numpy passes every
step cost about 30 calls on a few hundred values. One compiled walk is about three times
faster, releases the GIL (tiles decode side by side on threads) and allocates only the
region's arrays. tests/predictive/test_kernel.py checks it against the numpy reference
(``prior.features``, ``Prior.logistic``).
"""

from __future__ import annotations

import numba
import numpy as np

from ..entropy.rans import pop_segment

__all__ = ["BAD_PIXEL", "BAD_STREAM", "decode_region", "logistics"]

BAD_PIXEL = 1
""":func:`decode_region` status: a value decoded outside its plane's range."""
BAD_STREAM = 2
""":func:`decode_region` status: the entropy stream cannot be decoded (an overflow too long)."""

_FEATURES = 25
_HIDDEN = 32
_BAND = 64
_CONTEXTS = 16
_ACTIVATION_MAX = float((1 << 16) - 1)
_MEAN_REACH = 16 * 255
_LOGSCALE_CENTRE = 72
_MEAN_STEPS = 16


@numba.njit(cache=True, nogil=True, inline="always")
def _root(x: int) -> int:
    """floor(sqrt(|x|)) with the sign of x (``prior.signed_root``)."""
    a = abs(x)
    r = int(np.sqrt(float(a)))
    if r * r > a:
        r -= 1
    if (r + 1) * (r + 1) <= a:
        r += 1
    return -r if x < 0 else r


@numba.njit(cache=True, nogil=True)
def _features(
    near, predictors, prediction, near_errors, first, previous, earlier, kind, feats, v
):  # fmt: skip
    """Writes column ``v`` of ``feats`` (FEATURES, n): one value's ``prior.features``."""
    for j in range(8):
        feats[j, v] = _root(predictors[j] - prediction)
    for j in range(6):
        feats[8 + j, v] = _root(near_errors[j])
    gradient = abs(near[0] - near[2]) + abs(near[1] - near[2]) + abs(near[1] - near[3])
    feats[14, v] = _root(16 * gradient)
    feats[15, v] = _root(first)
    feats[16, v] = _root(previous)
    feats[17, v] = _root(earlier)
    feats[18, v] = prediction - 16 * ((prediction + 8) >> 4)
    for j in range(5):
        feats[19 + j, v] = 16 if kind == j else 0
    total = near_errors[0] + near_errors[1] + near_errors[2] + near_errors[3]
    total += (near_errors[4] + near_errors[5]) // 2
    feats[24, v] = _root(total + 8 * gradient + (3 * earlier) // 2)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _network(feats, n, w0, b0, w1, b1, w2, b2, scale, h1, h2, means, scales):
    """The prior's (mean relative to the rounded prediction, log-scale index) of the first
    ``n`` columns of ``feats`` into ``means`` and ``scales`` (``Prior.logistic``); ``h1``,
    ``h2`` (HIDDEN, n) are scratch. Loops run over the values innermost, so that they
    vectorise without reordering any sum (sums of integers, exact in any order anyway)."""
    for j in range(_HIDDEN):
        for v in range(n):
            h1[j, v] = b0[j]
            h2[j, v] = b1[j]
    for i in range(_FEATURES):
        for j in range(_HIDDEN):
            wij = w0[i, j]
            for v in range(n):
                h1[j, v] += wij * feats[i, v]
    for i in range(_HIDDEN):
        for v in range(n):
            h1[i, v] = min(max(np.floor(h1[i, v] * scale[0] + 0.5), 0.0), _ACTIVATION_MAX)
        for j in range(_HIDDEN):
            wij = w1[i, j]
            for v in range(n):
                h2[j, v] += wij * h1[i, v]
    for v in range(n):
        means[v] = b2[0]
        scales[v] = b2[1]
    for i in range(_HIDDEN):
        w_mean = w2[i, 0]
        w_scale = w2[i, 1]
        for v in range(n):
            f = min(max(np.floor(h2[i, v] * scale[1] + 0.5), 0.0), _ACTIVATION_MAX)
            means[v] += w_mean * f
            scales[v] += w_scale * f
    for v in range(n):
        m = min(max(np.floor(means[v] * scale[2] + 0.5), -_MEAN_REACH), _MEAN_REACH)
        means[v] = m + feats[18, v]
        scales[v] = np.floor(scales[v] * scale[2] + 0.5) + _LOGSCALE_CENTRE


_BLOCK = 256  # values per network pass in :func:`logistics`


@numba.njit(cache=True, nogil=True)
def logistics(
    near, predictors, prediction, near_errors, first, previous, earlier, kind,
    w0, b0, w1, b1, w2, b2, scale,
):  # fmt: skip
    """The prior's mean (sixteenths, relative to the rounded prediction) and log-scale
    index of n values (int64 arrays), from the arguments of ``prior.features`` (``kind``
    one int for all) and the network's float64 weights, biases and ``2 ** -shifts``."""
    n = prediction.size
    means = np.empty(n, dtype=np.int64)
    scales = np.empty(n, dtype=np.int64)
    feats = np.empty((_FEATURES, _BLOCK), dtype=np.float64)
    h1 = np.empty((_HIDDEN, _BLOCK), dtype=np.float64)
    h2 = np.empty((_HIDDEN, _BLOCK), dtype=np.float64)
    mean = np.empty(_BLOCK, dtype=np.float64)
    log_scale = np.empty(_BLOCK, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        size = min(_BLOCK, n - start)
        for k in range(size):
            v = start + k
            _features(
                near[:, v], predictors[:, v], prediction[v], near_errors[:, v],
                first[v], previous[v], earlier[v], kind, feats, k,
            )  # fmt: skip
        _network(feats, size, w0, b0, w1, b1, w2, b2, scale, h1, h2, mean, log_scale)
        for k in range(size):
            means[start + k] = int(mean[k])
            scales[start + k] = int(log_scale[k])
    return means, scales


@numba.njit(cache=True, nogil=True, inline="always")
def _neighbour_cells(x, band_row, base, ring, w, cell):
    """Writes the cells of W, N, NW, NE, WW and NN of column ``x`` of the lane starting at
    ``base`` into ``cell`` (those outside the band replaced as ``lattice.neighbours``
    replaces them) and returns the value's own cell."""
    here = base + x % ring
    up = band_row > 0
    west = base + (x - 1) % ring if x > 0 else (here - ring if up else 0)
    north = here - ring if up else west
    cell[0] = west
    cell[1] = north
    cell[2] = base - ring + (x - 1) % ring if x > 0 and up else north
    cell[3] = base - ring + (x + 1) % ring if up and x < w - 1 else north
    cell[4] = base + (x - 2) % ring if x > 1 else west
    cell[5] = here - 2 * ring if band_row > 1 else north
    return here


@numba.njit(cache=True, nogil=True, inline="always")
def _blend(near, cell, errors, matrix, weights, preds):
    """The blend (``coder.blend``) of the predictors of one value, written to ``preds``."""
    num = 0
    den = 0
    for p in range(8):
        pred = 0
        for k in range(6):
            pred += matrix[p, k] * near[k]
        preds[p] = pred
        total = 2 * (
            errors[cell[0], p] + errors[cell[1], p] + errors[cell[2], p] + errors[cell[3], p]
        ) + errors[cell[4], p] + errors[cell[5], p]  # fmt: skip
        weight = weights[total]
        num += weight * pred
        den += weight
    return (2 * num + den) // (2 * den)


@numba.njit(cache=True, nogil=True, inline="always")
def _context_of(near, near_err, below, thresholds):
    """The context (``coder._context``) of one value."""
    gradient = abs(near[0] - near[2]) + abs(near[1] - near[2]) + abs(near[1] - near[3])
    total = near_err[0] + near_err[1] + near_err[2] + near_err[3]
    total += (near_err[4] + near_err[5]) // 2 + 8 * gradient + (3 * below) // 2
    context = 0
    while context < thresholds.size and thresholds[context] <= total:
        context += 1
    return context


@numba.njit(cache=True, nogil=True)
def decode_region(
    h, w, c, gains, shifts, ranges, kinds, thresholds, weights, matrix,
    learned, rule_ids, rule_offsets, w0, b0, w1, b1, w2, b2, scale,
    fit_min, logscale_top, half_widths, cdf, starts, sizes, state, words, pos,
):  # fmt: skip
    """Decodes one (h, w) region of c planes (already in coding orientation) from the
    entropy stream at (``state``, ``pos``) of ``words``; returns the (c, h, w) int16 coded
    planes, the stream's new state and position, and a status (0, :data:`BAD_PIXEL` or
    :data:`BAD_STREAM`).

    ``learned``: each value's logistic is the prior's moved by its context's ``shifts``
    ((c * 16, 2) mean and log-scale shifts); otherwise (format 7) it is table
    ``rule_ids[context]`` at ``rule_offsets[context]`` from the rounded prediction.
    """
    out = np.zeros((c, h, w), dtype=np.int16)
    # Each lane (a plane's row) keeps its last `ring` columns; cell 0 is the zero cell. A
    # value's neighbours were coded at most 4 steps before it, the earlier planes at its
    # pixel at most c - 1 steps before, and a step reads everything before it writes.
    ring = max(4, c)
    plane_cells = h * ring
    cells = 1 + c * plane_cells
    values = np.zeros(cells, dtype=np.int64)
    errors = np.zeros((cells, 8), dtype=np.int64)
    errors16 = np.zeros(cells, dtype=np.int64)
    signed = np.zeros(cells, dtype=np.int64)
    earlier_of = np.zeros(cells, dtype=np.int64)
    lanes = c * h
    # per value of the current step: cell, lane, column, predictors, blend, earlier errors,
    # context, table and offset, decoded difference
    per_value = np.empty((9, lanes), dtype=np.int64)
    at, lane_of, column, blended, below_of, contexts, tid, off, got = per_value
    preds = np.empty((lanes, 8), dtype=np.int64)
    near, cell, near_err = np.empty((3, 6), dtype=np.int64)
    feats = np.empty((_FEATURES, lanes), dtype=np.float64)
    h1 = np.empty((_HIDDEN, lanes), dtype=np.float64)
    h2 = np.empty((_HIDDEN, lanes), dtype=np.float64)
    mean = np.empty(lanes, dtype=np.float64)
    log_scale = np.empty(lanes, dtype=np.float64)
    count = (w - 1) + 2 * (min(h, _BAND) - 1) + (c - 1) + 1
    for s in range(count):
        n = 0
        for lane in range(lanes):
            plane = lane // h
            band_row = (lane - plane * h) % _BAND
            x = s - (2 * band_row + plane)
            if x < 0 or x >= w:
                continue
            here = _neighbour_cells(x, band_row, 1 + lane * ring, ring, w, cell)
            for k in range(6):
                near[k] = values[cell[k]]
                near_err[k] = errors16[cell[k]]
            prediction = _blend(near, cell, errors, matrix, weights, preds[n])
            first, previous, below = 0, 0, 0
            if plane > 0:
                first = signed[here - plane * plane_cells]
                previous = signed[here - plane_cells]
                below = earlier_of[here - plane_cells] + errors16[here - plane_cells]
                prediction += (gains[plane, 0] * first) >> 3
                prediction += (gains[plane, 1] * previous) >> 3
            prediction = min(max(prediction, ranges[plane, 0]), ranges[plane, 1])
            contexts[n] = plane * _CONTEXTS + _context_of(near, near_err, below, thresholds)
            if learned:
                _features(
                    near, preds[n], prediction, near_err, first, previous, below, kinds[plane],
                    feats, n,
                )  # fmt: skip
            at[n], lane_of[n], column[n] = here, lane, x
            blended[n], below_of[n] = prediction, below
            n += 1
        if n == 0:
            continue
        if learned:
            _network(feats, n, w0, b0, w1, b1, w2, b2, scale, h1, h2, mean, log_scale)
            for i in range(n):
                m = int(mean[i]) + shifts[contexts[i], 0]
                g = min(max(int(log_scale[i]) + shifts[contexts[i], 1], fit_min), logscale_top)
                k = m // _MEAN_STEPS
                tid[i] = g * _MEAN_STEPS + (m - k * _MEAN_STEPS)
                off[i] = k - half_widths[g]
        else:
            for i in range(n):
                tid[i] = rule_ids[contexts[i]]
                off[i] = rule_offsets[contexts[i]]
        state, pos, bad = pop_segment(
            tid[:n], off[:n], cdf, starts, sizes, state, words, pos, got[:n]
        )
        if bad:
            return out, state, pos, BAD_STREAM
        for i in range(n):
            plane = lane_of[i] // h
            value = ((blended[i] + 8) >> 4) + got[i]
            if 16 * value < ranges[plane, 0] or 16 * value > ranges[plane, 1]:
                return out, state, pos, BAD_PIXEL
            here = at[i]
            values[here] = value
            for p in range(8):
                errors[here, p] = abs(16 * value - preds[i, p])
            signed[here] = 16 * value - blended[i]
            errors16[here] = abs(signed[here])
            earlier_of[here] = below_of[i]
            out[plane, lane_of[i] - plane * h, column[i]] = value
    return out, state, pos, 0


@numba.njit(cache=True, nogil=True)
def _cost(coded, mean, scale, idx, dm, dl, costs, starts, sizes, half_widths, fit_min, top):
    """The cost (table units) of the values ``idx`` with their logistics moved by (dm, dl);
    a value past its table's edge costs as the edge plus 8 bits."""
    total = 0
    escape = costs[-1]
    for v in idx:
        g = min(max(scale[v] + dl, fit_min), top)
        q = mean[v] + dm
        k = q // _MEAN_STEPS
        t = g * _MEAN_STEPS + (q - k * _MEAN_STEPS)
        at = coded[v] - (k - half_widths[g])
        inside = min(max(at, 0), sizes[t] - 1)
        total += costs[starts[t] + inside]
        if at != inside:
            total += escape
    return total


@numba.njit(cache=True, nogil=True)
def fit_shifts(
    coded, mean, scale, contexts, count, costs, starts, sizes, half_widths, fit_min, top,
    reach, scale_steps, mean_steps, passes,
):  # fmt: skip
    """Per context 0 .. count - 1 of one plane, the mean shift (sixteenths) and log-scale
    shift (grid steps) found by a coordinate search (``passes`` times: the log-scale shift
    by ``scale_steps``, then the mean shift by ``mean_steps``, each within +-``reach``);
    returns the (count, 2) shifts, every value's moved mean and log-scale index, and the
    total cost. ``costs`` are the grid tables' bins' costs in fixed point, flattened (table
    t from ``starts[t]``), its last entry the escape's extra cost."""
    shifts = np.zeros((count, 2), dtype=np.int64)
    order = np.argsort(contexts, kind="mergesort")
    bounds = np.zeros(count + 1, dtype=np.int64)
    for v in range(contexts.size):
        bounds[contexts[v] + 1] += 1
    for k in range(count):
        bounds[k + 1] += bounds[k]
    args = (costs, starts, sizes, half_widths, fit_min, top)
    total = 0
    for k in range(count):
        idx = order[bounds[k] : bounds[k + 1]]
        if idx.size == 0:
            continue
        dm, dl = 0, 0
        best = _cost(coded, mean, scale, idx, 0, 0, *args)
        for _ in range(passes):
            for step in scale_steps:
                for cand in (dl - step, dl + step):
                    if abs(cand) <= reach:
                        c = _cost(coded, mean, scale, idx, dm, cand, *args)
                        if c < best:
                            best, dl = c, cand
            for step in mean_steps:
                for cand in (dm - step, dm + step):
                    if abs(cand) <= reach:
                        c = _cost(coded, mean, scale, idx, cand, dl, *args)
                        if c < best:
                            best, dm = c, cand
        shifts[k, 0], shifts[k, 1] = dm, dl
        total += best
    moved_mean = np.empty_like(mean)
    moved_scale = np.empty_like(scale)
    for v in range(contexts.size):
        k = contexts[v]
        moved_mean[v] = mean[v] + shifts[k, 0]
        moved_scale[v] = min(max(scale[v] + shifts[k, 1], fit_min), top)
    return shifts, moved_mean, moved_scale, total
