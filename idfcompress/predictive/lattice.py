"""Where each value of a predictive region sits: its neighbours' cells and its coding step.

The encoder predicts a whole region at once, so it indexes every pixel (:func:`neighbours`,
:func:`steps`). The decoder walks the steps one by one and keeps only the last ``ring``
columns of every row of every plane (:class:`Lanes`), so its working set grows with the
region's height, not its area. The index tables of recent shapes are kept in one cache of
at most ``CACHE_BYTES`` (:data:`CACHE`), which the codec empties after every encode and
decode (:func:`release`): a table never outlives the image it was built for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np

__all__ = [
    "BAND",
    "CACHE",
    "CACHE_BYTES",
    "ByteCache",
    "Lanes",
    "cached_bytes",
    "neighbours",
    "release",
    "schedule",
    "steps",
]

BAND = 64
"""Rows per band (after any transposition); the bands of a region are coded side by side."""

CACHE_BYTES = 64 << 20
"""The most the index tables of recent region shapes may hold (a 256-px RGB tile's: 22 MiB)."""

_SCHEDULE_BYTES = 11 * 8  # per value: plane, cell, first, before, destination, 6 neighbours


class ByteCache:
    """A least-recently-used cache bounded by the bytes of its values (numpy arrays, or
    tuples and lists of them); a value larger than the bound is built but not kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value of ``key``, built by ``build()`` when not cached."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = build()
        size = _size(value)
        if size <= self.limit:
            with self._lock:
                if key not in self._items:
                    self._items[key] = (value, size)
                    self.nbytes += size
                while self.nbytes > self.limit:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self.nbytes -= dropped
        return value

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _size(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple | list):
        return sum(_size(v) for v in value)
    return 64


CACHE = ByteCache(CACHE_BYTES)


def release() -> None:
    """Drop the cached index tables (the codec calls this after each encode and decode)."""
    CACHE.clear()


def cached_bytes() -> int:
    """Bytes held by the cached index tables."""
    return CACHE.nbytes


def neighbours(h: int, w: int) -> np.ndarray:
    """(h w, 6) indices of each pixel's W, N, NW, NE, WW and NN within a plane's cells
    (pixel (y, x) in cell ``1 + y w + x``; cell 0 holds 0), those outside the pixel's band
    replaced by neighbours inside it, or by cell 0."""
    return CACHE.get(("neighbours", h, w), lambda: _neighbours(h, w))


def _neighbours(h: int, w: int) -> np.ndarray:
    row, x = (a.ravel() for a in np.mgrid[0:h, 0:w])
    at = 1 + row * w + x
    y = row % BAND
    west = np.where(x > 0, at - 1, np.where(y > 0, at - w, 0))
    north = np.where(y > 0, at - w, west)
    northwest = np.where((x > 0) & (y > 0), at - w - 1, north)
    northeast = np.where((y > 0) & (x < w - 1), at - w + 1, north)
    westwest = np.where(x > 1, at - 2, west)
    northnorth = np.where(y > 1, at - 2 * w, north)
    table = np.stack([west, north, northwest, northeast, westwest, northnorth], axis=1)
    table.setflags(write=False)
    return table


def steps(h: int, w: int, planes: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices (``plane (h w + 1) + 1 + y w + x``) of all values in coding order (step,
    then plane, then row) and the boundaries between the steps."""
    return CACHE.get(("steps", h, w, planes), lambda: _steps(h, w, planes))


def _steps(h: int, w: int, planes: int) -> tuple[np.ndarray, np.ndarray]:
    p, row, x = (a.ravel() for a in np.mgrid[0:planes, 0:h, 0:w])
    step = x + 2 * (row % BAND) + p
    order = np.lexsort((row, p, step))
    cells = (p * (h * w + 1) + 1 + row * w + x)[order]
    bounds = np.cumsum(np.bincount(step))[:-1] if cells.size else np.zeros(0, np.int64)
    cells.setflags(write=False)
    return cells, bounds


class Lanes:
    """The rows ("lanes") of an (h, w) region of c planes as the decoder walks them.

    Lane (p, row) is plane p's row; its value in column x is coded in step x + delay. Only
    the last ``ring`` columns of every lane are kept: a value's neighbours were coded at
    most 4 steps before it and the earlier planes at its pixel at most c - 1 steps before,
    so ``cells`` = 1 + c h ring (cell 0 is the zero cell), whatever the region's width.
    Within a step every read comes before every write.
    """

    def __init__(self, h: int, w: int, c: int) -> None:
        self.h, self.w, self.c = h, w, c
        # a cell is read at most 4 steps (NN) or c - 1 steps (the later planes) after it is
        # written, and rewritten `ring` steps after, once that step's reads are done
        self.ring = max(4, c)
        self.cells = 1 + c * h * self.ring
        self.count = (w - 1) + 2 * (min(h, BAND) - 1) + (c - 1) + 1 if h * w * c else 0
        plane = np.repeat(np.arange(c, dtype=np.int64), h)
        row = np.tile(np.arange(h, dtype=np.int64), c)
        band_row = row % BAND
        self._delay = 2 * band_row + plane
        self._plane = plane
        self._base = 1 + (plane * h + row) * self.ring  # the lane's column 0 in the ring
        self._up, self._up2 = band_row > 0, band_row > 1
        self._out = plane * (h * w) + row * w  # the lane's column 0 in the (c, h w) values

    def step(self, s: int) -> tuple[np.ndarray, ...] | None:
        """Step ``s`` (None when it codes nothing): the planes of its values (segment
        order), their cells in the ring, the cells of the first and of the previous plane at
        the same pixels, their positions in the (c, h w) values and their neighbours' cells
        (n, 6), replaced as :func:`neighbours` replaces them."""
        lanes = np.flatnonzero((self._delay <= s) & (self._delay > s - self.w))
        if not lanes.size:
            return None
        x = s - self._delay[lanes]
        base, up, up2 = self._base[lanes], self._up[lanes], self._up2[lanes]
        plane = self._plane[lanes]
        ring = self.ring
        here = base + x % ring
        above = base - ring  # the lane of the row above (when up)
        west = np.where(x > 0, base + (x - 1) % ring, np.where(up, here - ring, 0))
        north = np.where(up, here - ring, west)
        northwest = np.where((x > 0) & up, above + (x - 1) % ring, north)
        northeast = np.where(up & (x < self.w - 1), above + (x + 1) % ring, north)
        westwest = np.where(x > 1, base + (x - 2) % ring, west)
        northnorth = np.where(up2, here - 2 * ring, north)
        nbr = np.stack([west, north, northwest, northeast, westwest, northnorth], axis=1)
        plane_size = self.h * ring
        first = here - plane * plane_size
        before = here - (plane > 0) * plane_size
        return plane, here, first, before, self._out[lanes] + x, nbr


def schedule(h: int, w: int, c: int) -> tuple[Lanes, Iterable[tuple[np.ndarray, ...] | None]]:
    """The lanes of an (h, w) region of c planes and its steps (:meth:`Lanes.step`), cached
    when they fit in the cache, else computed one by one as they are used."""
    lanes = Lanes(h, w, c)
    if h * w * c * _SCHEDULE_BYTES > CACHE_BYTES:
        return lanes, (lanes.step(s) for s in range(lanes.count))
    return lanes, CACHE.get(
        ("schedule", h, w, c), lambda: [lanes.step(s) for s in range(lanes.count)]
    )
