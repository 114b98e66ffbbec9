"""Histogram packing: a channel that uses only some of the values between its lowest and
highest is coded as the ranks of its values among those it uses.

Images scaled from fewer levels, or passed through a gamma table, leave regular gaps in
their histograms; their neighbours' differences then come in multiples of the gap, and
the predictive coder pays for every unused value in between. Packed, the same image is
coded as if it had been stored at its true number of levels. The set of used values
costs 32 bytes per channel, so the encoder packs a channel only where its estimate says
packing saves more than that (:func:`choose`); natural photographs, whose histograms have
at most a few gaps in their tails, are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import CorruptFile

__all__ = ["SET_BYTES", "choose", "pack", "read_sets", "unpack", "write_sets"]

SET_BYTES = 32
"""Bytes of one channel's set of used values: bit v (byte v // 8, least significant bit
first) is set when value v occurs."""


def _used(regions: Sequence[np.ndarray], channel: int) -> np.ndarray:
    counts = sum(np.bincount(r[..., channel].ravel(), minlength=256) for r in regions)
    return np.asarray(counts) > 0


def _mean_step(regions: Sequence[np.ndarray], channel: int, lut: np.ndarray | None) -> float:
    """The mean absolute difference to the upper neighbour plus that to the left one."""
    totals, counts = [0.0, 0.0], [0, 0]
    for region in regions:
        values = region[..., channel].astype(np.int64)
        if lut is not None:
            values = lut[values]
        for axis in (0, 1):
            if values.shape[axis] > 1:
                totals[axis] += float(np.abs(np.diff(values, axis=axis)).sum())
                counts[axis] += values.size - values.size // values.shape[axis]
    return sum(t / max(n, 1) for t, n in zip(totals, counts, strict=True))


def choose(regions: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """Per channel of the (H, W, C) uint8 ``regions`` (C the same in all), the set of used
    values (bool, 256) to pack it with, or None where packing is not expected to pay.

    The estimate: packing divides the neighbours' mean step by a factor f, which saves
    about log2 f bits per value; a channel is packed when that beats the set's own bits.
    """
    channels = regions[0].shape[2] if regions else 0
    out: list[np.ndarray | None] = []
    for c in range(channels):
        used = _used(regions, c)
        values = sum(r[..., c].size for r in regions)
        low, high = np.flatnonzero(used)[[0, -1]] if used.any() else (0, 0)
        if used.sum() == high - low + 1:  # no gaps: packing only shifts the values
            out.append(None)
            continue
        ranks = np.cumsum(used) - 1
        before = _mean_step(regions, c, None) + 1
        after = _mean_step(regions, c, ranks) + 1
        out.append(used if values * np.log2(before / after) > 8 * SET_BYTES else None)
    return out


def pack(regions: Sequence[np.ndarray], sets: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """The regions with each channel that has a set replaced by its values' ranks in it."""
    out = []
    for region in regions:
        packed = region.copy()
        for c, used in enumerate(sets):
            if used is not None:
                packed[..., c] = (np.cumsum(used) - 1)[region[..., c]]
        out.append(packed)
    return out


def unpack(regions: Sequence[np.ndarray], sets: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """The regions :func:`pack` was given, unpacked in place (``CorruptFile`` if a rank is
    past its set)."""
    for region in regions:
        for c, used in enumerate(sets):
            if used is None:
                continue
            values = np.flatnonzero(used).astype(np.uint8)
            if region.size and int(region[..., c].max()) >= values.size:
                raise CorruptFile("packed region has a value outside its channel's set")
            region[..., c] = values[region[..., c]]
    return list(regions)


def write_sets(sets: Sequence[np.ndarray | None]) -> bytes:
    """A mask byte (bit c: channel c is packed) and each packed channel's set."""
    mask = sum(1 << c for c, used in enumerate(sets) if used is not None)
    body = b"".join(
        np.packbits(used, bitorder="little").tobytes() for used in sets if used is not None
    )
    return bytes([mask]) + body


def read_sets(data: bytes, channels: int) -> tuple[list[np.ndarray | None], int]:
    """The sets :func:`write_sets` wrote for ``channels`` channels, and the bytes read
    (``CorruptFile`` on a mask bit past the channels, an empty set or too few bytes)."""
    if not data:
        raise CorruptFile("learned payload without its packing mask")
    mask = data[0]
    if mask >> channels:
        raise CorruptFile("packing mask names a channel the regions do not have")
    sets: list[np.ndarray | None] = []
    at = 1
    for c in range(channels):
        if not mask >> c & 1:
            sets.append(None)
            continue
        raw = data[at : at + SET_BYTES]
        if len(raw) < SET_BYTES:
            raise CorruptFile("packing set cut short")
        used = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little").astype(bool)
        if not used.any():
            raise CorruptFile("packing set is empty")
        sets.append(used)
        at += SET_BYTES
    return sets, at
