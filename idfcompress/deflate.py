"""Deflate coding of pixel regions the flow does not code: tile margins and raw cores.

A payload is a filter byte and one zlib stream of the regions' bytes (each an (H, W, C)
uint8 array), region by region in row-major order (docs/FORMAT.md, "Deflate payloads").
Filter 0 stores the pixels as they are; filter 1 delta-filters each region on its own,
without looking outside it: the first row by the left neighbour (the first pixel against
0), every other row by the pixel above, modulo 256 (PNG's "Sub" and "Up" filters). The
encoder keeps whichever is smaller: the delta filter wins on photographs, no filter on
synthetic images whose repeats deflate finds. Decoding undoes the filter with cumulative
sums, so it is vectorised and exact everywhere.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .errors import CorruptFile

__all__ = ["encode_regions", "decode_regions", "delta_filter", "delta_unfilter"]


def delta_filter(region: np.ndarray) -> np.ndarray:
    """Residuals of an (H, W, C) uint8 region: row 0 minus its left neighbours, other rows
    minus the row above (uint8, wrapping)."""
    r = region.astype(np.int16)
    out = np.empty_like(r)
    if r.shape[0]:
        out[0, :1] = r[0, :1]
        out[0, 1:] = r[0, 1:] - r[0, :-1]
        out[1:] = r[1:] - r[:-1]
    return (out & 0xFF).astype(np.uint8)


def delta_unfilter(residuals: np.ndarray) -> np.ndarray:
    """The region whose :func:`delta_filter` residuals are given."""
    r = residuals.astype(np.int64)
    if r.shape[0]:
        r[0] = np.cumsum(r[0], axis=0)
    return (np.cumsum(r, axis=0) & 0xFF).astype(np.uint8)


NO_FILTER = 0
DELTA_FILTER = 1


def encode_regions(regions: Sequence[np.ndarray]) -> bytes:
    """The smaller payload of ``regions``: unfiltered or delta-filtered."""
    raw = b"".join(np.ascontiguousarray(r).tobytes() for r in regions)
    delta = b"".join(np.ascontiguousarray(delta_filter(r)).tobytes() for r in regions)
    options = (
        bytes([NO_FILTER]) + zlib.compress(raw, 9),
        bytes([DELTA_FILTER]) + zlib.compress(delta, 9),
    )
    return min(options, key=len)


def decode_regions(payload: bytes | memoryview, shapes: Sequence[tuple[int, int, int]]) -> list:
    """The regions of the given (H, W, C) shapes from an :func:`encode_regions` payload.

    The filter must be known and the stream must inflate to exactly the regions' size and
    end there (``CorruptFile`` otherwise); nothing larger than that is ever allocated.
    """
    payload = bytes(payload)
    if not payload or payload[0] not in (NO_FILTER, DELTA_FILTER):
        raise CorruptFile("unknown filter" if payload else "empty payload")
    expected = sum(h * w * c for h, w, c in shapes)
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(payload[1:], expected)
        complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error:
        raise CorruptFile("corrupt deflate stream") from None
    if len(data) != expected or not complete:
        raise CorruptFile("deflate stream of the wrong size")
    flat = np.frombuffer(data, np.uint8)
    regions, start = [], 0
    for h, w, c in shapes:
        size = h * w * c
        region = flat[start : start + size].reshape(h, w, c)
        regions.append(delta_unfilter(region) if payload[0] == DELTA_FILTER else region.copy())
        start += size
    return regions
