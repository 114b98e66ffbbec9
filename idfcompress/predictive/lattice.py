"""Where each value of a predictive region sits: its neighbours' cells, its coding step and
whether it is given (by a coarse level) rather than coded.

The encoder predicts a whole region at once, so it indexes every pixel (:func:`neighbours`,
:func:`steps`); the decoder's compiled walk (``kernel.decode_region``) computes the same
cells as it goes. The index tables of recent shapes are kept in one cache of at most
``CACHE_BYTES`` (:data:`CACHE`), which the codec empties after every encode and decode
(:func:`release`): a table never outlives the image it was built for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

__all__ = [
    "BAND",
    "CACHE",
    "CACHE_BYTES",
    "ByteCache",
    "cached_bytes",
    "given_count",
    "given_values",
    "neighbours",
    "release",
    "steps",
]

BAND = 64
"""Rows per band (after any transposition); the bands of a region are coded side by side."""

CACHE_BYTES = 64 << 20
"""The most the index tables of recent region shapes may hold (a 256-px RGB tile's: 22 MiB)."""


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


def given_values(h: int, w: int, stride: int) -> np.ndarray:
    """Which values of an (h, w) plane in coding orientation (bool, raster order) are given
    rather than coded: those at rows and columns that are multiples of ``stride`` (none for
    0; the same pixels in either orientation)."""
    if not stride:
        return np.zeros(h * w, dtype=bool)
    row, col = np.divmod(np.arange(h * w), w)
    return (row % stride == 0) & (col % stride == 0)


def given_count(h: int, w: int, stride: int) -> int:
    """How many values of an (h, w) plane :func:`given_values` names."""
    return -(-h // stride) * -(-w // stride) if stride else 0
