"""The predictive coder's per-value arithmetic, compiled (numba): the decoder's whole walk
through a region (with the online filter, ``online``, where the payload has one), the
learned prior's logistic of every value, predictors, blend and contexts (the encoder's
searches are in ``search``).

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

import math

import numpy as np

from ..compiled import jit
from ..entropy.rans import pop_segment, pop_value
from . import online

__all__ = [
    "BAD_PIXEL",
    "BAD_STREAM",
    "SCALE_BIN_LOW",
    "SCALE_BIN_WIDTH",
    "blend",
    "contexts",
    "decode_region",
    "logistics",
    "predict",
    "scale_contexts",
]

BAD_PIXEL = 1
""":func:`decode_region` status: a value decoded outside its plane's range."""
BAD_STREAM = 2
""":func:`decode_region` status: the entropy stream cannot be decoded (an overflow too long)."""

_FEATURES = 25
_HIDDEN = 32
_BAND = 64
_CONTEXTS = 16
# Filters 6, 7: shifts per bin of the prior's log-scale index, 16 of 5 grid steps from 20,
# where the network's indices lie (docs/HISTORY.md, "Shifts by scale").
SCALE_BIN_LOW, SCALE_BIN_WIDTH = 20, 5
_ACTIVATION_MAX = float((1 << 16) - 1)
_MEAN_REACH = 16 * 255
_LOGSCALE_CENTRE = 72
_MEAN_STEPS = 16


_ROOTS = np.array([math.isqrt(i) for i in range(1 << 16)], dtype=np.uint8)
# floor(sqrt(a)) of the small arguments that almost all features have: a lookup, a third
# of the time of a square root and its corrections


@jit(inline="always")
def _root(x: int) -> int:
    """floor(sqrt(|x|)) with the sign of x (``prior.signed_root``)."""
    a = abs(x)
    if a < _ROOTS.size:
        r = np.int64(_ROOTS[a])
    else:
        r = int(np.sqrt(float(a)))
        if r * r > a:
            r -= 1
        if (r + 1) * (r + 1) <= a:
            r += 1
    return -r if x < 0 else r


@jit()
def _features(
    near, predictors, near_errors, v, prediction, first, previous, earlier, kind, feats, k
):  # fmt: skip
    """Writes column ``k`` of ``feats`` (FEATURES, n): ``prior.features`` of the value in
    column ``v`` of ``near`` (6, n), ``predictors`` (8, n) and ``near_errors`` (6, n)."""
    for j in range(8):
        feats[j, k] = _root(predictors[j, v] - prediction)
    for j in range(6):
        feats[8 + j, k] = _root(near_errors[j, v])
    gradient = abs(near[0, v] - near[2, v]) + abs(near[1, v] - near[2, v])
    gradient += abs(near[1, v] - near[3, v])
    feats[14, k] = _root(16 * gradient)
    feats[15, k] = _root(first)
    feats[16, k] = _root(previous)
    feats[17, k] = _root(earlier)
    feats[18, k] = prediction - 16 * ((prediction + 8) >> 4)
    for j in range(5):
        feats[19 + j, k] = 16 if kind == j else 0
    total = near_errors[0, v] + near_errors[1, v] + near_errors[2, v] + near_errors[3, v]
    total += (near_errors[4, v] + near_errors[5, v]) // 2
    feats[24, k] = _root(total + 8 * gradient + (3 * earlier) // 2)


@jit(fastmath=True)
def _accumulate(x, n, w, b, out):
    """``out[j, v] = b[j] + sum_i x[i, v] w[i, j]`` for the first ``n`` columns of ``x``.

    Two outputs and eight inputs per pass over the values, the values innermost: each
    input is loaded once for two outputs, each partial sum loaded and stored once per eight
    products, and the loop over the values is vectorised (three times numpy's speed here).
    fastmath lets the compiler reorder and fuse these sums; they are sums of integer
    products below 2**53, exact in any order, so every machine gets the same bits
    (tests/predictive/test_kernel.py checks them against numpy's)."""
    inputs, outputs = w.shape
    for j in range(outputs):
        for v in range(n):
            out[j, v] = b[j]
    full = inputs - inputs % 8
    for i in range(0, full, 8):
        for j in range(0, outputs, 2):
            k = min(j + 1, outputs - 1)  # an odd last output is summed twice, kept once
            a0, a1, a2, a3 = w[i, j], w[i + 1, j], w[i + 2, j], w[i + 3, j]
            a4, a5, a6, a7 = w[i + 4, j], w[i + 5, j], w[i + 6, j], w[i + 7, j]
            c0, c1, c2, c3 = w[i, k], w[i + 1, k], w[i + 2, k], w[i + 3, k]
            c4, c5, c6, c7 = w[i + 4, k], w[i + 5, k], w[i + 6, k], w[i + 7, k]
            for v in range(n):
                x0, x1, x2, x3 = x[i, v], x[i + 1, v], x[i + 2, v], x[i + 3, v]
                x4, x5, x6, x7 = x[i + 4, v], x[i + 5, v], x[i + 6, v], x[i + 7, v]
                first = a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                first += a4 * x4 + a5 * x5 + a6 * x6 + a7 * x7
                second = c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
                second += c4 * x4 + c5 * x5 + c6 * x6 + c7 * x7
                if k != j:
                    out[k, v] += second
                out[j, v] += first
    for i in range(full, inputs):
        for j in range(outputs):
            wij = w[i, j]
            for v in range(n):
                out[j, v] += wij * x[i, v]


@jit()
def _activate(h, n, scale):
    """Rounds the first ``n`` columns of ``h`` to the next layer's unit (``* scale``, half
    up) and clips them to 0 .. ACTIVATION_MAX."""
    for j in range(h.shape[0]):
        for v in range(n):
            h[j, v] = min(max(np.floor(h[j, v] * scale + 0.5), 0.0), _ACTIVATION_MAX)


@jit()
def _network(feats, n, w0, b0, w1, b1, w2, b2, scale, h1, h2, out, means, scales):
    """The prior's (mean relative to the rounded prediction, log-scale index) of the first
    ``n`` columns of ``feats`` into ``means`` and ``scales`` (``Prior.logistic``); ``h1``,
    ``h2`` (HIDDEN, n) and ``out`` (2, n) are scratch."""
    _accumulate(feats, n, w0, b0, h1)
    _activate(h1, n, scale[0])
    _accumulate(h1, n, w1, b1, h2)
    _activate(h2, n, scale[1])
    _accumulate(h2, n, w2, b2, out)
    for v in range(n):
        m = min(max(np.floor(out[0, v] * scale[2] + 0.5), -_MEAN_REACH), _MEAN_REACH)
        means[v] = m + feats[18, v]
        scales[v] = np.floor(out[1, v] * scale[2] + 0.5) + _LOGSCALE_CENTRE


_BLOCK = 256  # values per network pass


@jit()
def _network_scratch():
    """Scratch for :func:`_network` on a block: features, both hidden layers, outputs."""
    return (
        np.empty((_FEATURES, _BLOCK), dtype=np.float64),
        np.empty((_HIDDEN, _BLOCK), dtype=np.float64),
        np.empty((_HIDDEN, _BLOCK), dtype=np.float64),
        np.empty((2, _BLOCK), dtype=np.float64),
    )


@jit()
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
    feats, h1, h2, out = _network_scratch()
    mean = np.empty(_BLOCK, dtype=np.float64)
    log_scale = np.empty(_BLOCK, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        size = min(_BLOCK, n - start)
        for k in range(size):
            v = start + k
            _features(
                near, predictors, near_errors, v, prediction[v], first[v], previous[v],
                earlier[v], kind, feats, k,
            )  # fmt: skip
        _network(feats, size, w0, b0, w1, b1, w2, b2, scale, h1, h2, out, mean, log_scale)
        for k in range(size):
            means[start + k] = int(mean[k])
            scales[start + k] = int(log_scale[k])
    return means, scales


@jit(inline="always")
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


@jit(inline="always")
def _blend(near, cell, errors, matrix, weights, preds, v):
    """The blend (:func:`blend`) of the predictors of the value in column ``v`` of ``near``
    (6, n), which it writes to column ``v`` of ``preds`` (8, n)."""
    num = 0
    den = 0
    for p in range(8):
        pred = 0
        for k in range(6):
            pred += matrix[p, k] * near[k, v]
        preds[p, v] = pred
        total = 2 * (
            errors[cell[0], p] + errors[cell[1], p] + errors[cell[2], p] + errors[cell[3], p]
        ) + errors[cell[4], p] + errors[cell[5], p]  # fmt: skip
        weight = weights[total]
        num += weight * pred
        den += weight
    return (2 * num + den) // (2 * den)


@jit(inline="always")
def _context_of(near, near_err, v, below, thresholds):
    """The context of one value: how many ``thresholds`` its neighbours' absolute errors
    (sixteenths), the local gradient and the earlier planes' errors at the pixel reach."""
    gradient = abs(near[0, v] - near[2, v]) + abs(near[1, v] - near[2, v])
    gradient += abs(near[1, v] - near[3, v])
    total = near_err[0, v] + near_err[1, v] + near_err[2, v] + near_err[3, v]
    total += (near_err[4, v] + near_err[5, v]) // 2 + 8 * gradient + (3 * below) // 2
    context = 0
    while context < thresholds.size and thresholds[context] <= total:
        context += 1
    return context


@jit()
def predict(values, nbr, matrix, weights):
    """A plane's neighbour values (6, n), predictors (8, n, sixteenths) and their blend
    (n) from its ``values`` by cell (cell 0 the zero cell, pixel v in cell v + 1) and the
    neighbour cells ``nbr`` (n, 6): the encoder's whole-plane form of the decoder's walk."""
    n = nbr.shape[0]
    near = np.empty((6, n), dtype=np.int64)
    predictors = np.empty((8, n), dtype=np.int64)
    errors = np.zeros((n + 1, 8), dtype=np.int64)
    for v in range(n):
        for k in range(6):
            near[k, v] = values[nbr[v, k]]
        for p in range(8):
            pred = 0
            for k in range(6):
                pred += matrix[p, k] * near[k, v]
            predictors[p, v] = pred
            errors[v + 1, p] = abs(16 * values[v + 1] - pred)
    return near, predictors, blend(predictors, errors, nbr, weights)


@jit()
def blend(predictors, errors, nbr, weights):
    """The blend (sixteenths) of n values' ``predictors`` (PREDICTORS, n), each weighted by
    its errors ``errors`` (cells, PREDICTORS) at the neighbour cells ``nbr`` (n, 6); the
    encoder's whole-plane form of what :func:`decode_region` computes value by value."""
    n = nbr.shape[0]
    out = np.empty(n, dtype=np.int64)
    for v in range(n):
        num = 0
        den = 0
        for p in range(8):
            total = 2 * (
                errors[nbr[v, 0], p] + errors[nbr[v, 1], p] + errors[nbr[v, 2], p]
                + errors[nbr[v, 3], p]
            ) + errors[nbr[v, 4], p] + errors[nbr[v, 5], p]  # fmt: skip
            weight = weights[total]
            num += weight * predictors[p, v]
            den += weight
        out[v] = (2 * num + den) // (2 * den)
    return out


@jit()
def contexts(values, nbr, errors16, earlier, thresholds):
    """The context of each of n values (:func:`_context_of`) from the plane's ``values``
    and absolute prediction errors ``errors16`` by cell, the neighbour cells ``nbr``
    (n, 6) and the earlier planes' summed errors ``earlier`` (n)."""
    n = nbr.shape[0]
    out = np.empty(n, dtype=np.int64)
    near = np.empty((6, 1), dtype=np.int64)
    near_err = np.empty((6, 1), dtype=np.int64)
    for v in range(n):
        for k in range(6):
            near[k, 0] = values[nbr[v, k]]
            near_err[k, 0] = errors16[nbr[v, k]]
        out[v] = _context_of(near, near_err, 0, earlier[v], thresholds)
    return out


@jit(inline="always")
def _scale_bin(log_scale):
    """The shift context (0 .. 15) of a value whose prior log-scale index is ``log_scale``."""
    return min(max((int(log_scale) - SCALE_BIN_LOW) // SCALE_BIN_WIDTH, 0), _CONTEXTS - 1)


@jit()
def scale_contexts(log_scale):
    """:func:`_scale_bin` of every value (the encoder's, for filters 6 and 7)."""
    return np.array([_scale_bin(v) for v in log_scale], dtype=np.int64)


@jit(inline="always")
def _scale_bins(n, h, lane_of, log_scale, contexts):
    """A step's n values' shift contexts from their prior log-scale (filters 6 and 7)."""
    for i in range(n):
        contexts[i] = (lane_of[i] // h) * _CONTEXTS + _scale_bin(log_scale[i])


@jit(inline="always")
def _table_of(mean, log_scale, context, shifts, fit_min, top, half_widths):
    """The grid table and offset of a value whose prior logistic (``mean``, ``log_scale``)
    is moved by its context's ``shifts`` and kept on the grid."""
    m = mean + shifts[context, 0]
    g = min(max(log_scale + shifts[context, 1], fit_min), top)
    k = m // _MEAN_STEPS
    return g * _MEAN_STEPS + (m - k * _MEAN_STEPS), k - half_widths[g]


@jit()
def _tables_of(
    n, learned, mean, log_scale, contexts, shifts, rule_ids, rule_offsets, fit_min, top,
    half_widths, tid, off,
):  # fmt: skip
    """The grid tables and offsets of a step's n values: the prior's logistics moved by
    their contexts' shifts (``learned``), else their contexts' rule tables."""
    for i in range(n):
        context = contexts[i]
        if learned:
            tid[i], off[i] = _table_of(
                int(mean[i]), int(log_scale[i]), context, shifts, fit_min, top, half_widths
            )
        else:
            tid[i] = rule_ids[context]
            off[i] = rule_offsets[context]


@jit(inline="always")
def _online_inputs(u, resid, values, cell, here, plane, plane_cells, prediction):
    """The online filter's inputs of the value at cell ``here`` of plane ``plane``."""
    first = resid[here - plane * plane_cells] if plane else 0
    previous = resid[here - plane_cells] if plane else 0
    online.gather(u, resid, values, cell, first, previous, (prediction + 8) >> 4)


@jit()
def _pop_online(
    n, h, lane_of, at, rates, filters, inputs, resid, mean, log_scale, contexts, shifts,
    fit_min, top, half_widths, cdf, starts, sizes, state, words, pos, got, given,
):  # fmt: skip
    """Pops a step's n values one by one, each value's prior mean corrected by its plane's
    online filter, which then learns from the value; a value with ``given[i]`` is not in
    the stream, its ``got[i]`` already known. Returns the state, the position and whether
    the stream was bad."""
    for i in range(n):
        plane = lane_of[i] // h
        rate = rates[plane]
        correction = online.output(filters[plane], inputs[i]) if rate else 0
        if not given[i]:
            m = online.corrected(int(mean[i]), correction)
            t, o = _table_of(m, int(log_scale[i]), contexts[i], shifts, fit_min, top, half_widths)
            got[i], state, pos, bad = pop_value(t, o, cdf, starts, sizes, state, words, pos)
            if bad:
                return state, pos, True
        r = 16 * got[i] - int(mean[i])
        resid[at[i]] = r
        if rate:
            norm = online.power(inputs[i])
            online.update(filters[plane], inputs[i], r - correction, rate, norm)
    return state, pos, False


@jit()
def _pop_step(
    n, h, lane_of, at, rates, filters, inputs, resid, learned, mean, log_scale, contexts,
    shifts, rule_ids, rule_offsets, fit_min, top, half_widths, tid, off, cdf, starts, sizes,
    state, words, pos, got, given, by_scale,
):  # fmt: skip
    """Pops the n values of a step into ``got``: one by one with the online filter (when
    there are ``rates``; those with ``given`` are known already), else as one segment;
    returns the state, the position and whether the stream was bad; ``by_scale``: shifts
    by the values' prior log-scale bins."""
    if by_scale:
        _scale_bins(n, h, lane_of, log_scale, contexts)
    if rates.size:
        return _pop_online(
            n, h, lane_of, at, rates, filters, inputs, resid, mean, log_scale, contexts,
            shifts, fit_min, top, half_widths, cdf, starts, sizes, state, words, pos, got,
            given,
        )  # fmt: skip
    _tables_of(
        n, learned, mean, log_scale, contexts, shifts, rule_ids, rule_offsets, fit_min, top,
        half_widths, tid, off,
    )  # fmt: skip
    return pop_segment(tid[:n], off[:n], cdf, starts, sizes, state, words, pos, got[:n])


@jit(inline="always")
def _given(known, stride, plane, row, x, prediction):
    """Whether the value at (``row``, ``x``) of ``plane`` is given (at multiples of
    ``stride`` > 0), and then its difference from the rounded ``prediction``."""
    if stride > 0 and row % stride == 0 and x % stride == 0:
        return 1, known[plane, row // stride, x // stride] - ((prediction + 8) >> 4)
    return 0, 0


@jit()
def decode_region(
    h, w, c, gains, shifts, ranges, kinds, thresholds, weights, matrix,
    learned, rates, rule_ids, rule_offsets, w0, b0, w1, b1, w2, b2, scale,
    fit_min, logscale_top, half_widths, cdf, starts, sizes, state, words, pos, known, stride,
    by_scale,
):  # fmt: skip
    """Decodes one (h, w) region of c planes (already in coding orientation) from the
    entropy stream at (``state``, ``pos``) of ``words``; returns the (c, h, w) int16 coded
    planes, the stream's new state and position, and a status (0, :data:`BAD_PIXEL` or
    :data:`BAD_STREAM`).

    ``learned``: each value's logistic is the prior's moved by its context's ``shifts``
    ((c * 16, 2) mean and log-scale shifts); otherwise (format 7) it is table
    ``rule_ids[context]`` at ``rule_offsets[context]`` from the rounded prediction.
    ``rates`` (c online rates, 0 for none; or no rates): the prior's means are first
    corrected by the online filter (``online``), and every value is a segment of its own.
    ``stride`` > 0 (with ``rates``): the values at rows and columns that are multiples of
    ``stride`` are not in the stream; they are taken from ``known``, the coded planes of
    those values alone (c, ceil(h / stride), ceil(w / stride)). ``by_scale``: each value's
    shifts are its prior log-scale's bin's, not its context's (with ``learned``)."""
    out = np.zeros((c, h, w), dtype=np.int16)
    # Each lane (a plane's row) keeps its last `ring` columns; cell 0 is the zero cell. A
    # value's neighbours were coded at most 4 steps before it, the earlier planes at its
    # pixel at most c - 1 steps before, and a step reads everything before it writes.
    ring = max(4, c)
    plane_cells = h * ring
    cells = 1 + c * plane_cells
    values = np.zeros(cells, dtype=np.int64)
    errors = np.zeros((cells, 8), dtype=np.int32)  # at most 16 (255 + 765)
    errors16 = np.zeros(cells, dtype=np.int64)
    signed = np.zeros(cells, dtype=np.int64)
    earlier_of = np.zeros(cells, dtype=np.int64)
    lanes = c * h
    # per value of the current step: cell, lane, column, predictors, blend, earlier errors,
    # context, table and offset, decoded difference
    per_value = np.zeros((10, lanes), dtype=np.int64)
    at, lane_of, column, blended, below_of, contexts, tid, off, got, given = per_value
    preds = np.empty((8, lanes), dtype=np.int64)
    near = np.empty((6, lanes), dtype=np.int64)
    near_err = np.empty((6, lanes), dtype=np.int64)
    cell = np.empty(6, dtype=np.int64)
    sequential = rates.size > 0
    resid = np.zeros(cells if sequential else 1, dtype=np.int64)
    inputs = np.zeros((lanes if sequential else 1, online.TAPS), dtype=np.int64)
    filters = np.zeros((c, online.TAPS), dtype=np.int64)
    # the network runs on blocks of a step's values, so that its scratch stays small
    feats, h1, h2, net_out = _network_scratch()
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
                near[k, n] = values[cell[k]]
                near_err[k, n] = errors16[cell[k]]
            prediction = _blend(near, cell, errors, matrix, weights, preds, n)
            first, previous, below = 0, 0, 0
            if plane > 0:
                first = signed[here - plane * plane_cells]
                previous = signed[here - plane_cells]
                below = earlier_of[here - plane_cells] + errors16[here - plane_cells]
                prediction += (gains[plane, 0] * first) >> 3
                prediction += (gains[plane, 1] * previous) >> 3
            prediction = min(max(prediction, ranges[plane, 0]), ranges[plane, 1])
            contexts[n] = plane * _CONTEXTS + _context_of(near, near_err, n, below, thresholds)
            if sequential:
                _online_inputs(inputs[n], resid, values, cell, here, plane, plane_cells, prediction)
            if learned:
                _features(
                    near, preds, near_err, n, prediction, first, previous, below, kinds[plane],
                    feats, n % _BLOCK,
                )  # fmt: skip
                if n % _BLOCK == _BLOCK - 1:
                    start = n + 1 - _BLOCK
                    _network(
                        feats, _BLOCK, w0, b0, w1, b1, w2, b2, scale, h1, h2, net_out,
                        mean[start:], log_scale[start:],
                    )  # fmt: skip
            at[n], lane_of[n], column[n] = here, lane, x
            blended[n], below_of[n] = prediction, below
            given[n], got[n] = _given(known, stride, plane, lane - plane * h, x, prediction)
            n += 1
        if n == 0:
            continue
        if learned and n % _BLOCK:
            start = n - n % _BLOCK
            _network(
                feats, n % _BLOCK, w0, b0, w1, b1, w2, b2, scale, h1, h2, net_out,
                mean[start:], log_scale[start:],
            )  # fmt: skip
        state, pos, bad = _pop_step(
            n, h, lane_of, at, rates, filters, inputs, resid, learned, mean, log_scale,
            contexts, shifts, rule_ids, rule_offsets, fit_min, logscale_top, half_widths, tid,
            off, cdf, starts, sizes, state, words, pos, got, given, by_scale,
        )  # fmt: skip
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
                errors[here, p] = abs(16 * value - preds[p, i])
            signed[here] = 16 * value - blended[i]
            errors16[here] = abs(signed[here])
            earlier_of[here] = below_of[i]
            out[plane, lane_of[i] - plane * h, column[i]] = value
    return out, state, pos, 0
