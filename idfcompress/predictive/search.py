"""The encoder's searches, compiled (numba): the gains between planes and the per-context
shifts of the learned prior's logistics.

The shift search sums fixed-point costs (int32 units of 2^-20 bits), so its sums are exact
in any order and every machine picks the same shifts.
"""

from __future__ import annotations

import numpy as np

from ..compiled import jit

__all__ = ["best_gain", "fit_shifts"]

_MEAN_STEPS = 16


@jit()
def best_gain(target, base, error, low, high, reach):
    """The gain g in -reach .. reach (eighths; the first of equals) whose prediction
    ``clip(base + (g error >> 3), low, high)`` is closest to ``target`` in absolute sum."""
    best, chosen = -1, 0
    for g in range(-reach, reach + 1):
        total = 0
        for v in range(target.size):
            total += abs(target[v] - min(max(base[v] + ((g * error[v]) >> 3), low), high))
        if best < 0 or total < best:
            best, chosen = total, g
    return chosen


@jit()
def _cost(residual, scale, dm, dl, costs, starts, sizes, half_widths, fit_min, top):
    """The cost (table units) of values whose distance from their logistic's mean is
    ``residual`` (sixteenths) and whose log-scale index is ``scale``, with the logistics
    moved by (dm, dl); a value past its table's edge costs as the edge plus its escape."""
    total = 0
    escape = costs[-1]
    for v in range(residual.size):
        g = min(max(scale[v] + dl, fit_min), top)
        r = residual[v] - dm
        # with q = mean + dm: table g 16 + q % 16, bin (value - q // 16) + half width
        t = g * _MEAN_STEPS + ((-r) & (_MEAN_STEPS - 1))
        at = ((r + _MEAN_STEPS - 1) >> 4) + half_widths[g]
        inside = min(max(at, 0), sizes[t] - 1)
        total += costs[starts[t] + inside]
        if at != inside:
            total += escape
    return total


@jit(inline="always")
def _search(residual, g, dm, dl, best, steps, of_mean, reach, args):
    """One coordinate of the shift search: the mean shift (``of_mean``) or the log-scale
    shift moved by each of ``steps`` either way (within +-``reach``) while that lowers the
    cost ``best``; returns both shifts and the cost."""
    for step in steps:
        at = dm if of_mean else dl
        for cand in (at - step, at + step):
            if abs(cand) <= reach:
                c = (
                    _cost(residual, g, cand, dl, *args)
                    if of_mean
                    else _cost(residual, g, dm, cand, *args)
                )
                if c < best:
                    best = c
                    if of_mean:
                        dm = cand
                    else:
                        dl = cand
    return dm, dl, best


@jit()
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
        residual = 16 * coded[idx] - mean[idx]  # the context's values, gathered once
        g = scale[idx]
        dm, dl = 0, 0
        best = _cost(residual, g, 0, 0, *args)
        for _ in range(passes):
            dm, dl, best = _search(residual, g, dm, dl, best, scale_steps, False, reach, args)
            dm, dl, best = _search(residual, g, dm, dl, best, mean_steps, True, reach, args)
        shifts[k, 0], shifts[k, 1] = dm, dl
        total += best
    moved_mean = np.empty_like(mean)
    moved_scale = np.empty_like(scale)
    for v in range(contexts.size):
        k = contexts[v]
        moved_mean[v] = mean[v] + shifts[k, 0]
        moved_scale[v] = min(max(scale[v] + shifts[k, 1], fit_min), top)
    return shifts, moved_mean, moved_scale, total
