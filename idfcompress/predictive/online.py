"""The online filter: a linear correction of the learned prior's mean, learnt while coding.

The prior's network is trained offline and the per-context shifts are fitted per region;
neither follows what changes from one part of a region to the next. This filter does: each
value's mean (sixteenths) gets ``w . u`` added, where ``u`` (:data:`TAPS` integers) holds
the residuals left by the prior at the six neighbours (16 x coded value - prior mean), the
neighbours' values minus the rounded prediction, and, in later planes, the first and the
previous plane's residuals at the same pixel. After every value the weights ``w`` move
towards what would have predicted its residual (normalised LMS, rate 2^-k for the plane's
rate index), in integers (docs/FORMAT.md, "Online filter"), so encoder and decoder agree on
every machine. One filter per plane, learnt in coding order (step, plane, row); the
encoder picks each plane's rate from :data:`RATES` (0: off) by the estimated bits.

Why: a probe (HISTORY.md, "The online filter") found it takes 0.5-3 % off the shipped coder,
where a least-squares predictor fitted per tile took under 0.5 % off the hand-made one.
The decoder runs the filter value by value after each step's batched network, so the
network stays batched; only the entropy decoding becomes value by value (every value is
its own segment).
"""

from __future__ import annotations

import numpy as np

from ..compiled import jit

__all__ = [
    "RATES", "RATE_RANGE", "TAPS", "corrected", "gather", "means", "output", "power", "update",
    "walk",
]  # fmt: skip

TAPS = 14
RATES = np.array([0, 8], dtype=np.int64)
"""The rates the encoder tries per plane: k of the learning rate 2^-k, 0 for no filter.
(Adding 6, 7, 9 and 10 took under 0.05 % more off and cost a pass each.)"""
RATE_RANGE = (4, 12)
"""The rates k a payload may give besides 0."""

_ONE = 16  # weights in units of 2^-16
_INPUT = 1 << 14  # inputs clipped to +-2^14 sixteenths
_WEIGHT = 1 << 18  # weights clipped to +-4
_OUTPUT = 1 << 12  # corrections clipped to +-256 levels
_ERROR = 1 << 15
_GAIN = 16  # the step's common factor is kept in units of 2^-16
_MEAN_REACH = 16 * 255


@jit(inline="always")
def gather(u, resid, values, cells, first, previous, rounded):
    """Writes the filter's inputs of one value into ``u``: ``resid`` and ``values`` at its
    six neighbour ``cells`` (cell 0: nothing there, inputs 0), the ``first`` and
    ``previous`` planes' residuals at its pixel (0 in the first plane) and its ``rounded``
    prediction."""
    for k in range(6):
        c = cells[k]
        u[k] = min(max(resid[c], -_INPUT), _INPUT)
        u[6 + k] = min(max(16 * (values[c] - rounded), -_INPUT), _INPUT) if c else 0
    u[12] = min(max(first, -_INPUT), _INPUT)
    u[13] = min(max(previous, -_INPUT), _INPUT)


@jit(inline="always")
def output(weights, u):
    """The correction (sixteenths) of weights ``weights`` for inputs ``u``."""
    acc = 0
    for k in range(TAPS):
        acc += weights[k] * u[k]
    return min(max((acc + (1 << (_ONE - 1))) >> _ONE, -_OUTPUT), _OUTPUT)


@jit(inline="always")
def power(u):
    """The inputs' power that normalises the filter's steps: 256 + sum u^2."""
    total = 256
    for k in range(TAPS):
        total += u[k] * u[k]
    return total


@jit(inline="always")
def update(weights, u, error, rate, norm):
    """Moves ``weights`` by the normalised LMS step of rate 2^-``rate`` for the residual
    ``error`` (sixteenths) left by the correction; ``norm`` is :func:`power` of ``u``."""
    e = min(max(error, -_ERROR), _ERROR)
    g = (abs(e) << (_ONE - rate + _GAIN)) // norm  # one division per value
    g = -g if e < 0 else g
    for k in range(TAPS):
        step = (g * u[k] + (1 << (_GAIN - 1))) >> _GAIN
        weights[k] = min(max(weights[k] + step, -_WEIGHT), _WEIGHT)


@jit(inline="always")
def corrected(mean, correction):
    """The prior's mean moved by the filter's correction, within the network's reach."""
    return min(max(mean + correction, -_MEAN_REACH), _MEAN_REACH)


@jit(inline="always")
def walk(cell, n, values, coded, mean, resid, nbr, u):
    """The encoder's step to the value at ``cell`` (``plane (n + 1) + 1 + pixel``) of its
    walk in coding order: writes the filter's inputs into ``u`` and the value's residual
    into ``resid`` (planes, n + 1); returns the plane, the pixel and the residual."""
    p = cell // (n + 1)
    j = cell - p * (n + 1) - 1
    rounded = values[p, j + 1] - coded[p, j]
    first = resid[0, j + 1] if p else 0
    previous = resid[p - 1, j + 1] if p else 0
    gather(u, resid[p], values[p], nbr[j], first, previous, rounded)
    r = 16 * coded[p, j] - mean[p, j]
    resid[p, j + 1] = r
    return p, j, r


@jit()
def means(
    order, n, values, coded, mean, scale, nbr, costs, starts, sizes, half_widths, fit_min, top
):  # fmt: skip
    """The encoder's pass of the filter at every rate of :data:`RATES` over a region of
    ``coded.shape[0]`` planes of ``n`` values, in coding ``order`` (cells ``plane (n + 1) +
    1 + pixel``): each rate's corrected means (rates, planes, n) and the estimated cost of
    each plane at each rate (planes, rates; the grid tables' fixed-point ``costs``, the
    prior's log-scale ``scale`` clipped to ``fit_min .. top``). ``values`` (planes, n + 1)
    by cell, ``nbr`` the (n, 6) neighbour cells, ``mean`` the prior's means."""
    planes = coded.shape[0]
    rates = RATES.size
    weights = np.zeros((rates, planes, TAPS), dtype=np.int64)
    resid = np.zeros((planes, n + 1), dtype=np.int64)
    out = np.empty((rates, planes, n), dtype=np.int64)
    cost = np.zeros((planes, rates), dtype=np.int64)
    u = np.zeros(TAPS, dtype=np.int64)
    escape = costs[-1]
    for t in range(order.size):
        p, j, r = walk(order[t], n, values, coded, mean, resid, nbr, u)
        g = min(max(scale[p, j], fit_min), top)
        norm = power(u)
        for i in range(rates):
            c = output(weights[i, p], u) if RATES[i] else 0
            m = corrected(mean[p, j], c)
            out[i, p, j] = m
            # the cost of the value under the logistic of mean m and log-scale g
            d = 16 * coded[p, j] - m
            tid = g * 16 + ((-d) & 15)
            at = ((d + 15) >> 4) + half_widths[g]
            inside = min(max(at, 0), sizes[tid] - 1)
            cost[p, i] += costs[starts[tid] + inside] + (escape if at != inside else 0)
            if RATES[i]:
                update(weights[i, p], u, r - c, RATES[i], norm)
    return out, cost
