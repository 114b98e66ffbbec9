"""Predictive coding of uint8 regions: median edge prediction, a grid logistic per context.

Every plane of a region is predicted pixel by pixel by the median edge detector of
LOCO-I / JPEG-LS from its left (W), upper (N) and upper-left (NW) neighbours, 0 outside the
region. The residual, reduced modulo 256 to [-128, 127], is coded with the grid logistic
(``distributions``) of the pixel's context: the bit length of ``|W - NW| + |N - NW|``,
capped at ``CONTEXTS - 1``. The encoder fits each context's logistic to the residuals (mean
at their median, the cheapest log-scale) and stores it before the stream. Pixels are coded
along the anti-diagonals ``y + x = k``, so that a decoder predicts one diagonal at a time.
Three-channel regions are coded as the planes G, R - G and B - G (modulo 256).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from . import entropy
from .distributions import LOGSCALE_COUNT, MEAN_STEPS, fit_logistic, grid_ids, logistic_tables
from .errors import CorruptFile

__all__ = ["CONTEXTS", "Plan", "decode", "plan"]

CONTEXTS = 10
"""Contexts per plane; each stores an i8 median and a u8 log-scale index."""


@functools.cache
def _tables() -> entropy.TableSet:
    return entropy.TableSet(logistic_tables())


@functools.cache
def _context_of_activity() -> np.ndarray:
    return np.array([min(a.bit_length(), CONTEXTS - 1) for a in range(511)], dtype=np.int64)


@functools.cache
def _diagonals(h: int, w: int, planes: int) -> tuple[np.ndarray, ...]:
    """Flat indices into ``planes`` zero-padded (h + 1, w + 1) planes of the pixels of each
    anti-diagonal: plane by plane, in ascending row."""
    p, ys, xs = np.unravel_index(np.arange(planes * h * w), (planes, h, w))
    order = np.lexsort((ys, p, ys + xs))
    flat = ((p * (h + 1) + ys + 1) * (w + 1) + xs + 1)[order]
    counts = np.bincount((ys + xs)[order], minlength=max(0, h + w - 1))
    return tuple(np.split(flat, np.cumsum(counts)[:-1])) if h * w else ()


def _plane_of(at: np.ndarray, h: int, w: int) -> np.ndarray:
    return at // ((h + 1) * (w + 1))


def _planes(region: np.ndarray) -> list[np.ndarray]:
    r = region.astype(np.int64)
    if r.shape[2] != 3:
        return [r[:, :, c] for c in range(r.shape[2])]
    g = r[:, :, 1]
    return [g, (r[:, :, 0] - g) & 0xFF, (r[:, :, 2] - g) & 0xFF]


def _region(planes: list[np.ndarray]) -> np.ndarray:
    if len(planes) != 3:
        return np.stack(planes, axis=2).astype(np.uint8)
    g, rg, bg = planes
    return np.stack([(rg + g) & 0xFF, g, (bg + g) & 0xFF], axis=2).astype(np.uint8)


def _predict(padded: np.ndarray, at: np.ndarray, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and context of the pixels at flat indices ``at`` of a padded plane."""
    west, north, northwest = padded[at - 1], padded[at - row], padded[at - row - 1]
    low, high = np.minimum(west, north), np.maximum(west, north)
    prediction = np.where(
        northwest >= high, low, np.where(northwest <= low, high, west + north - northwest)
    )
    activity = np.abs(west - northwest) + np.abs(north - northwest)
    return prediction, _context_of_activity()[activity]


def _residual(value: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    return ((value - prediction + 128) & 0xFF) - 128


class Plan:
    """How :func:`plan` would code some regions: the estimated size, and the payload."""

    def __init__(self, regions: Sequence[np.ndarray]) -> None:
        self._head = bytearray()
        # per region: residuals, table ids and offsets in coding order, diagonal boundaries
        self._regions: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        bits = 0.0
        for region in regions:
            h, w = region.shape[:2]
            planes = _planes(region)
            padded = np.zeros((len(planes), h + 1, w + 1), dtype=np.int64)
            padded[:, 1:, 1:] = np.stack(planes)
            padded = padded.ravel()
            diagonals = _diagonals(h, w, len(planes))
            at = np.concatenate(diagonals) if diagonals else np.zeros(0, np.int64)
            prediction, context = _predict(padded, at, w + 1)
            residual = _residual(padded[at], prediction)
            # a context per plane and activity
            context += CONTEXTS * _plane_of(at, h, w)
            q = np.zeros(CONTEXTS * len(planes), dtype=np.int64)
            g = np.zeros_like(q)
            for c in np.unique(context).tolist():
                fit_q, fit_g, fit_bits = fit_logistic(residual[context == c][None])
                q[c], g[c], bits = int(fit_q[0]), int(fit_g[0]), bits + float(fit_bits[0])
            medians = (q // MEAN_STEPS).astype(np.int8).view(np.uint8)
            self._head += np.stack([medians, g.astype(np.uint8)], axis=1).tobytes()
            ids, offsets = grid_ids(q, g)
            bounds = np.cumsum([d.size for d in diagonals])[:-1]
            self._regions.append((residual, ids[context], offsets[context], bounds))
        self.size = len(self._head) + int(np.ceil(bits / 8)) + 4

    def payload(self) -> bytes:
        """The regions' predictive payload (:func:`decode` reads it)."""
        # split into diagonals only here: most plans are estimates that are never coded
        segments = [
            part
            for values, ids, offsets, bounds in self._regions
            for part in zip(
                np.split(values, bounds),
                np.split(ids, bounds),
                np.split(offsets, bounds),
                strict=True,
            )
        ]
        return bytes(self._head) + entropy.encode_segments(segments, _tables())


def plan(regions: Sequence[np.ndarray]) -> Plan:
    """The predictive coding of the given (H, W, C) uint8 regions."""
    return Plan(regions)


def decode(payload: bytes, shapes: Sequence[tuple[int, int, int]]) -> list[np.ndarray]:
    """The regions of the given (H, W, C) shapes from a :meth:`Plan.payload`."""
    head = 2 * CONTEXTS * sum(c for _, _, c in shapes)
    if len(payload) < head:
        raise CorruptFile("predictive payload shorter than its context tables")
    params = np.frombuffer(payload[:head], dtype=np.uint8).reshape(-1, CONTEXTS, 2)
    medians = params[:, :, 0].astype(np.int8).astype(np.int64)
    scales = params[:, :, 1].astype(np.int64)
    if scales.max(initial=0) >= LOGSCALE_COUNT:
        raise CorruptFile("predictive payload has an unknown log-scale")
    if len(payload) == head and any(h * w * c for h, w, c in shapes):
        raise CorruptFile("predictive payload has no stream")
    decoder = entropy.SegmentDecoder(payload[head:], _tables())
    regions, first = [], 0
    for h, w, c in shapes:
        ids, offsets = grid_ids(
            medians[first : first + c].ravel() * MEAN_STEPS, scales[first : first + c].ravel()
        )
        first += c
        padded = np.zeros(c * (h + 1) * (w + 1), dtype=np.int64)
        for at in _diagonals(h, w, c):
            prediction, context = _predict(padded, at, w + 1)
            context += CONTEXTS * _plane_of(at, h, w)
            residual = decoder.decode(ids[context], offsets[context])
            padded[at] = (prediction + residual) & 0xFF
        planes = padded.reshape(c, h + 1, w + 1)[:, 1:, 1:]
        regions.append(_region(list(planes)))
    decoder.finish()
    return regions
