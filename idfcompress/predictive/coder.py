"""Predictive coding of uint8 regions: a blend of predictors weighted by their recent errors.

Three- and four-channel regions are coded as the planes G, R - G, B - G (and A), other
regions channel by channel. Each value is predicted, in sixteenths, by a blend of eight
simple predictors from its neighbours W, N, NW, NE, WW and NN, each weighted by the inverse
square of its errors at those neighbours; the planes after the first add the first and the
previous plane's prediction errors at the same pixel, times gains the encoder picks per
region. The value's distance from the rounded prediction is coded with the grid logistic
of its own, given by the learned prior (``prior``) and moved by the shifts of one of
``CONTEXTS`` contexts, chosen by the neighbours' prediction errors, the local gradient and
the earlier planes' errors at the pixel; the encoder fits each context's shifts and stores
them before the stream (format 7 payloads: one fitted logistic per context instead). With
the online filter (``online``, format 9) each value's prior mean is first corrected by a
linear filter learnt value by value while coding, and every value is its own segment.

A decoder needs a pixel's neighbours before its prediction and the earlier planes at that
pixel before its own, so a region wider than tall is coded transposed, cut into bands of
``BAND`` rows predicted independently, and pixel (y, x) of plane i (y within its band) is
coded in step ``x + 2 y + i``: one entropy segment per step. The per-value arithmetic runs
compiled (``kernel``: the decoder's whole walk is one call). docs/FORMAT.md ("Predictive
payload") specifies every formula. The decoder keeps only the last few columns of every
row and refuses payloads that claim more values than their bytes can code at the
encoder's rates (``VALUES_PER_BYTE``), so its memory and time follow what the file can
justify (docs/RELIABILITY.md, "Budget").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..entropy import ans
from ..entropy.tables import (
    FIT_MIN_LOGSCALE,
    HALF_WIDTHS,
    LOGSCALE_COUNT,
    MEAN_STEPS,
    fit_logistic,
    grid_ids,
    logistic_tables,
)
from ..errors import CorruptFile, ImageTooLarge
from ..once import once
from . import kernel, online, prior, search
from .lattice import BAND, given_count, given_values, neighbours, steps

__all__ = [
    "BAND",
    "BLEND_WEIGHTS",
    "CONTEXTS",
    "PREDICTOR_MATRIX",
    "PREDICTORS",
    "VALUES_PER_BYTE",
    "coded_planes",
    "correct_online",
    "plane_ranges",
    "Plan",
    "Work",
    "decode",
    "head_size",
    "plan",
]

THRESHOLDS = 16 * np.array([1, 2, 3, 4, 6, 8, 11, 15, 20, 27, 36, 48, 64, 90, 128])
"""A pixel's context is the number of thresholds its error sum (sixteenths) reaches."""

CONTEXTS = prior.CONTEXTS
"""Contexts per plane; each stores an i8 median and a u8 log-scale index (format 7) or two
i8 shifts (format 8)."""

PREDICTORS = 8
GAIN_RANGE = 8
"""The encoder tries gains of -8 .. 8 eighths."""

_WEIGHT_ONE = 1 << 40
_WEIGHT_BIAS = 64
BLEND_WEIGHTS = _WEIGHT_ONE // (np.arange(10 * 16 * 1020 + 1, dtype=np.int64) + _WEIGHT_BIAS) ** 2
"""A predictor's weight in the blend, by its weighted error sum at the neighbours (``2 (W
+ N + NW + NE) + WW + NN`` of its absolute errors in sixteenths): 2**40 / (sum + 64)**2. An
error is at most 16 (255 + 765) (2N - NN reaches -765 .. 765), so a sum at most 10 times
that; looked up, a tenth of the time of dividing."""


@once
def _tables() -> ans.TableSet:
    return ans.TableSet(logistic_tables())


def plane_ranges(channels: int) -> np.ndarray:
    """(lowest, highest) value of each plane, in sixteenths."""
    ranges = np.array([(0, 255)] * channels, dtype=np.int64)
    if channels in (3, 4):
        ranges[1:3] = (-255, 255)
    return 16 * ranges


def coded_planes(region: np.ndarray) -> np.ndarray:
    """(C, H' W') plane values of an (H, W, C) region, transposed when W > H."""
    r = region.astype(np.int64)
    if _coded_shape(*r.shape[:2]) != r.shape[:2]:
        r = r.transpose(1, 0, 2)
    return _planes_of(r)


def _planes_of(r: np.ndarray) -> np.ndarray:
    """(C, H W) plane values of an (H, W, C) int64 array already in coding orientation."""
    planes = r.reshape(-1, r.shape[2]).T.copy()
    if r.shape[2] in (3, 4):
        planes[:3] = np.stack([planes[1], planes[0] - planes[1], planes[2] - planes[1]])
    return planes


def rebuilt_region(planes: np.ndarray, h: int, w: int) -> np.ndarray:
    """The (h, w, C) uint8 region whose :func:`coded_planes` are given (``CorruptFile`` if a
    rebuilt R or B falls outside 0 .. 255)."""
    channels = planes.copy()
    if channels.shape[0] in (3, 4):
        channels[:3] = np.stack([channels[1] + channels[0], channels[0], channels[2] + channels[0]])
        if channels.size and (channels[:3].min() < 0 or channels[:3].max() > 255):
            raise CorruptFile("predictive payload decodes to out-of-range pixels")
    region = channels.T.reshape(*_coded_shape(h, w), -1)
    return (region.transpose(1, 0, 2) if w > h else region).astype(np.uint8)


def _coded_shape(h: int, w: int) -> tuple[int, int]:
    return (w, h) if w > h else (h, w)


PREDICTOR_MATRIX = np.array(
    [
        [16, 16, -16, 0, 0, 0],  # W + N - NW
        [0, 16, 0, 0, 0, 0],  # N
        [16, 0, 0, 0, 0, 0],  # W
        [8, 0, 0, 8, 0, 0],  # (W + NE) / 2
        [0, 0, 0, 16, 0, 0],  # NE
        [8, 8, 0, 0, 0, 0],  # (W + N) / 2
        [0, 32, 0, 0, 0, -16],  # 2 N - NN
        [32, 0, 0, 0, -16, 0],  # 2 W - WW
    ],
    dtype=np.int64,
)
"""Predictor j is row j times (W, N, NW, NE, WW, NN), in sixteenths."""


def head_size(channels: int, online: bool = False) -> int:
    """Bytes of one region's gains, online rates (``online``) and context tables."""
    return 2 * max(channels - 1, 0) + (channels if online else 0) + 2 * CONTEXTS * channels


def _best_gain(target: np.ndarray, base: np.ndarray, error: np.ndarray, ranges) -> int:
    """The gain (eighths) that brings ``base + gain error / 8`` closest to ``target``."""
    return int(search.best_gain(target, base, error, int(ranges[0]), int(ranges[1]), GAIN_RANGE))


def _rule(coded: np.ndarray, contexts: np.ndarray):
    """Format 7: per (plane, context) the fitted logistic; its (i8 median, u8 log-scale)
    table, every value's mean (sixteenths) and log-scale index, and the estimated bits."""
    c = coded.shape[0]
    medians = np.zeros((c, CONTEXTS), dtype=np.int64)
    scales = np.full((c, CONTEXTS), LOGSCALE_COUNT // 2, dtype=np.int64)
    bits = 0.0
    for i in range(c):
        for k in np.unique(contexts[i]).tolist():
            q, g, fit_bits = fit_logistic(coded[i][contexts[i] == k][None])
            medians[i, k] = np.clip(q[0] // MEAN_STEPS, -128, 127)
            scales[i, k] = g[0]
            bits += float(fit_bits[0])
    table = np.stack([medians.astype(np.int8).view(np.uint8), scales.astype(np.uint8)], -1)
    pick = np.arange(c)[:, None] * CONTEXTS + contexts
    return table, (medians.ravel() * MEAN_STEPS)[pick], scales.ravel()[pick], bits


def _learned(planes: list[Analysis], coded: np.ndarray, by_scale: bool = False):
    """Format 8: the prior's mean and log-scale per value, moved by shifts fitted per
    (plane, context; or bin of the prior's log-scale, ``by_scale``) on the values ``coded``
    (bool, per value of a plane); the (i8 mean shift, i8 log-scale shift) table, every coded
    value's mean and log-scale index (0 for the others), and the estimated bits."""
    fits = []
    for p in planes:
        assert p.mean is not None and p.scale is not None
        contexts = kernel.scale_contexts(p.scale[coded]) if by_scale else p.contexts[coded]
        fits.append(prior.fit_shifts(p.coded[coded], p.mean[coded], p.scale[coded], contexts))
    shifts = np.stack([fit[0] for fit in fits])
    means = np.zeros((len(planes), coded.size), dtype=np.int64)
    scales = np.zeros_like(means)
    means[:, coded] = np.stack([fit[1] for fit in fits])
    scales[:, coded] = np.stack([fit[2] for fit in fits])
    bits = sum(fit[3] for fit in fits)
    return shifts.astype(np.int8).view(np.uint8), means, scales, bits


@dataclass
class Analysis:
    """One plane of a region as the coder sees it, every array in raster order: the coded
    values (value minus rounded prediction), their contexts and, when asked for, the
    learned prior's :func:`prior.features` and its logistic (mean relative to the rounded
    prediction, log-scale index) of each value."""

    coded: np.ndarray
    contexts: np.ndarray
    features: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None


def analyse(
    region: np.ndarray,
    *,
    gains: bool = True,
    with_features: bool = False,
    learned: prior.Prior | None = None,
) -> tuple[list[Analysis], np.ndarray]:
    """The coder's view of an (H, W, C) uint8 region, plane by plane, and the gains it
    chose ((C - 1, 2) eighths; ``gains=False`` leaves them 0); with the features
    (``with_features``) and the ``learned`` prior's logistics when asked."""
    h, w = _coded_shape(*region.shape[:2])
    c = region.shape[2]
    nbr = neighbours(h, w)
    ranges = plane_ranges(c)
    cells = h * w + 1
    earlier = np.zeros(h * w, dtype=np.int64)
    chosen = np.zeros((max(c - 1, 0), 2), dtype=np.int64)
    signed_errors: list[np.ndarray] = []
    out = []
    kind = prior.kinds(c)
    net = _network(learned) if learned is not None else None
    for i, plane in enumerate(coded_planes(region)):
        values = np.zeros(cells, dtype=np.int64)
        values[1:] = plane
        near, predictors, prediction = kernel.predict(values, nbr, PREDICTOR_MATRIX, BLEND_WEIGHTS)
        if i and gains:
            first, previous = signed_errors[0], signed_errors[i - 1]
            a = _best_gain(16 * plane, prediction, first, ranges[i])
            prediction = prediction + ((a * first) >> 3)
            b = _best_gain(16 * plane, prediction, previous, ranges[i]) if i > 1 else 0
            prediction = prediction + ((b * previous) >> 3)
            chosen[i - 1] = a, b
        prediction = np.clip(prediction, *ranges[i])
        signed_errors.append(16 * plane - prediction)
        errors16 = np.zeros(cells, dtype=np.int64)
        errors16[1:] = np.abs(signed_errors[i])
        context = kernel.contexts(values, nbr, errors16, earlier, THRESHOLDS)
        analysis = Analysis(plane - ((prediction + 8) >> 4), context)
        if with_features or net is not None:
            zero = np.zeros(h * w, dtype=np.int64)
            inputs = (
                near, predictors, prediction, errors16[nbr.T],
                signed_errors[0] if i else zero, signed_errors[i - 1] if i else zero,
                earlier,
            )  # fmt: skip
            if with_features:
                analysis.features = prior.features(*inputs, np.full(h * w, kind[i]))
            if net is not None:
                analysis.mean, analysis.scale = kernel.logistics(*inputs, int(kind[i]), *net)
        earlier = earlier + errors16[1:]
        out.append(analysis)
    return out, chosen


class Plan:
    """How :func:`plan` would code some regions: the estimated size, and the payload."""

    def __init__(
        self,
        regions: Sequence[np.ndarray],
        gains: bool = True,
        learned: prior.Prior | None = None,
        online: bool = False,
        stride: int = 0,
        by_scale: bool = False,
    ) -> None:
        """``gains=False`` leaves every gain 0 (to measure what the gains bring);
        ``learned``: code with that prior (format 8) instead of the hand-made rule;
        ``online``: correct its means with the online filter (needs ``learned``);
        ``stride``: the values ``lattice.given_values`` names are left out of the stream (the
        decoder is given them; needs ``online``); ``by_scale``: shifts per bin of the
        prior's log-scale (format 11)."""
        self._gains = gains
        self._prior = learned
        self._online = online and learned is not None
        if stride and not self._online:
            raise ValueError("given values need the online filter")
        self._stride, self._by_scale = stride, by_scale
        self._head = bytearray()
        # per region: coded values, table ids and offsets in coding order, step boundaries
        self._regions: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        bits = 0.0
        for region in regions:
            h, w, c = region.shape
            if h * w * c:
                bits += self._add(region)
            else:
                self._head += bytes(head_size(c, self._online))
        self.size = len(self._head) + int(np.ceil(bits / 8)) + 4

    def _add(self, region: np.ndarray) -> float:
        """Adds one region's head and segments; returns its estimated stream bits."""
        h, w = _coded_shape(*region.shape[:2])
        c = region.shape[2]
        planes, gains = analyse(region, gains=self._gains, learned=self._prior)
        coded = np.stack([p.coded for p in planes])
        contexts = np.stack([p.contexts for p in planes])
        order, bounds = steps(h, w, c)
        self._head += gains.astype(np.int8).tobytes()
        if self._online:
            self._head += correct_online(region, planes).astype(np.uint8).tobytes()
            bounds = np.arange(1, coded.size)  # every value a segment of its own
        kept = ~given_values(h, w, self._stride)
        if self._prior is None:
            table, means, scales, bits = _rule(coded, contexts)
        else:
            table, means, scales, bits = _learned(planes, kept, self._by_scale)
        self._head += table.tobytes()
        ids, offsets = grid_ids(means, scales)
        plane_of, cell = np.divmod(order, h * w + 1)
        at = plane_of * (h * w) + cell - 1
        if self._stride:
            at = at[kept[cell - 1]]
            bounds = np.arange(1, at.size)
        self._regions.append((coded.ravel()[at], ids.ravel()[at], offsets.ravel()[at], bounds))
        return bits

    def payload(self) -> bytes:
        """The regions' predictive payload (:func:`decode` reads it)."""
        # every step of every region is one segment: cut where a region or a step starts
        if not self._regions:
            return bytes(self._head)
        cuts, start = [], 0
        for values, _, _, bounds in self._regions:
            cuts += [np.array([start]), start + bounds] if start else [bounds]
            start += values.size
        values, ids, offsets = (np.concatenate([r[k] for r in self._regions]) for k in range(3))
        stream = ans.encode_cut(values, ids, offsets, np.concatenate(cuts), _tables())
        return bytes(self._head) + stream


def plan(
    regions: Sequence[np.ndarray],
    learned: prior.Prior | None = None,
    online: bool = False,
    stride: int = 0,
    by_scale: bool = False,
) -> Plan:
    """The predictive coding of the given (H, W, C) uint8 regions (:class:`Plan`'s
    arguments)."""
    return Plan(regions, learned=learned, online=online, stride=stride, by_scale=by_scale)


def correct_online(region: np.ndarray, planes: list[Analysis]) -> np.ndarray:
    """Picks each plane's online rate by the estimated bits and moves the means of the
    region's :func:`analyse` planes (with a learned prior) to that rate's corrected means,
    as the encoder does; returns the rates."""
    h, w = _coded_shape(*region.shape[:2])
    n, c = h * w, region.shape[2]
    order, _ = steps(h, w, c)
    values = np.zeros((c, n + 1), dtype=np.int64)
    values[:, 1:] = coded_planes(region)
    prior_means, scales = [], []
    for p in planes:
        assert p.mean is not None and p.scale is not None
        prior_means.append(p.mean)
        scales.append(p.scale)
    costs, starts, sizes = prior.bin_costs()
    means, cost = online.means(
        order, n, values, np.stack([p.coded for p in planes]), np.stack(prior_means),
        np.stack(scales), neighbours(h, w), costs, starts, sizes, HALF_WIDTHS,
        FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1,
    )  # fmt: skip
    best = np.argmin(cost, axis=1)  # the first of equal costs: off before any rate
    for i, p in enumerate(planes):
        p.mean = means[best[i], i]
    return online.RATES[best]


VALUES_PER_BYTE = 32
"""The decoder's budget: at most this many values per byte of a predictive stream (plus 8
bytes of slack). The encoder's logistics have log-scale indices of at least
``FIT_MIN_LOGSCALE``, so each of its values costs at least 0.503 bits, at most 15.9 per
byte; a forged payload whose logistics are far narrower would claim millions of values in
a few bytes (a decompression bomb)."""


@dataclass
class Work:
    """What decoding predictive payloads cost, counted: the values decoded and the steps
    walked (each step is one entropy segment). Safe to share between threads."""

    values: int = 0
    steps: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, values: int, steps: int) -> None:
        """Counts one region."""
        with self._lock:
            self.values += values
            self.steps += steps


def decode(
    payload: bytes,
    shapes: Sequence[tuple[int, int, int]],
    *,
    budget: float | None = VALUES_PER_BYTE,
    work: Work | None = None,
    learned: prior.Prior | None = None,
    online: bool = False,
    given: Sequence[np.ndarray] | None = None,
    stride: int = 0,
    by_scale: bool = False,
) -> list[np.ndarray]:
    """The regions of the given (H, W, C) shapes from a :meth:`Plan.payload`.

    ``ImageTooLarge`` when the regions have more than ``budget`` values per byte of the
    stream (+ 8), before anything is decoded (``None``: no budget); ``work`` counts what the
    decoding costs; ``learned``: the prior the payload was coded with (None: the rule);
    ``online``: it was coded with the online filter; ``given`` (with ``stride``): each
    region's pixels at rows and columns that are multiples of ``stride`` (its ``[::stride,
    ::stride]``), left out of the stream; ``by_scale``: shifts per bin of the prior's scale.
    """
    online = online and learned is not None
    if stride and (given is None or not online or len(given) != len(shapes)):
        raise ValueError("given values need the online filter and one array per region")
    head = sum(head_size(c, online) for _, _, c in shapes)
    if len(payload) < head:
        raise CorruptFile("predictive payload shorter than its context tables")
    values = sum((h * w - given_count(h, w, stride)) * c for h, w, c in shapes)
    if len(payload) == head and values:
        raise CorruptFile("predictive payload has no stream")
    stream = len(payload) - head
    if budget is not None and values > budget * (stream + 8):
        raise ImageTooLarge(
            f"predictive payload of {stream} bytes for {values} values: more than the "
            f"decoder's budget of {budget:g} values per byte"
        )
    decoder = ans.SegmentDecoder(payload[head:], _tables())
    regions, start = [], 0
    for i, (h, w, c) in enumerate(shapes):
        size = head_size(c, online)
        head_bytes = payload[start : start + size]
        known = _known_planes(given[i], (h, w, c), stride) if stride and given else None
        regions.append(_decode_region(
            decoder, head_bytes, (h, w, c), work, learned, online, known, stride, by_scale
        ))  # fmt: skip
        start += size
    decoder.finish()
    return regions


def _decode_region(
    decoder: ans.SegmentDecoder,
    head: bytes,
    shape: tuple[int, int, int],
    work: Work | None,
    learned: prior.Prior | None,
    online_filter: bool,
    known: np.ndarray | None = None,
    stride: int = 0,
    by_scale: bool = False,
) -> np.ndarray:
    height, width, c = shape
    if not height * width * c:
        return np.zeros((height, width, c), dtype=np.uint8)
    split = 2 * (c - 1)
    gains = np.zeros((c, 2), dtype=np.int64)
    gains[1:] = np.frombuffer(head[:split], dtype=np.int8).reshape(c - 1, 2)
    rates = np.zeros(0, dtype=np.int64)
    if online_filter:
        rates = np.frombuffer(head[split : split + c], dtype=np.uint8).astype(np.int64)
        low, high = online.RATE_RANGE
        if np.any((rates != 0) & ((rates < low) | (rates > high))):
            raise CorruptFile("predictive payload has an unknown online rate")
        split += c
    params = np.frombuffer(head[split:], dtype=np.uint8).reshape(c * CONTEXTS, 2)
    shifts = np.zeros((c * CONTEXTS, 2), dtype=np.int64)
    ids = offsets = np.zeros(c * CONTEXTS, dtype=np.int64)
    if learned is None:
        scales = params[:, 1].astype(np.int64)
        if scales.max() >= LOGSCALE_COUNT:
            raise CorruptFile("predictive payload has an unknown log-scale")
        ids, offsets = grid_ids(params[:, 0].astype(np.int8).astype(np.int64) * MEAN_STEPS, scales)
        net = _network(_NO_PRIOR)
    else:
        shifts = params.view(np.int8).astype(np.int64)
        net = _network(learned)
    h, w = _coded_shape(height, width)
    if work is not None:
        work.add(h * w * c, (w - 1) + 2 * (min(h, BAND) - 1) + c)
    coder = decoder.coder
    planes, coder.state, coder.pos, status = kernel.decode_region(
        h, w, c, gains, shifts, plane_ranges(c), prior.kinds(c), THRESHOLDS, BLEND_WEIGHTS,
        PREDICTOR_MATRIX, learned is not None, rates, ids.astype(np.int64), offsets, *net,
        FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1, HALF_WIDTHS, *_tables().cumulative(),
        coder.state, coder.words, coder.pos,
        known if known is not None else np.zeros((c, 1, 1), dtype=np.int64), stride,
        by_scale and learned is not None,
    )  # fmt: skip
    coder.state = np.uint64(coder.state)
    if status == kernel.BAD_STREAM:
        raise CorruptFile("entropy-coded overflow is too long")
    if status == kernel.BAD_PIXEL:
        raise CorruptFile("predictive payload decodes to out-of-range pixels")
    return _rebuilt(planes, height, width)


def _known_planes(given: np.ndarray, shape: tuple[int, int, int], stride: int) -> np.ndarray:
    """The coded planes (C, rows, columns; coding orientation) of the ``given`` pixels at
    multiples of ``stride`` of a region of ``shape``: the kernel reads the value at (y, x)
    as its (y / stride, x / stride)."""
    h, w, c = shape
    expected = (-(-h // stride), -(-w // stride), c)
    if given.shape != expected:
        raise ValueError(f"given pixels of shape {given.shape}, expected {expected}")
    g = given.astype(np.int64)
    g = g.transpose(1, 0, 2) if w > h else g  # the region's orientation, not the level's
    return _planes_of(g).reshape(c, *g.shape[:2])


def _network(net: prior.Prior) -> tuple[np.ndarray, ...]:
    """The arrays :mod:`kernel` takes for a prior: weights and biases (float64, C order),
    then ``2 ** -shifts``."""
    arrays = [a for pair in zip(net.weights, net.biases, strict=True) for a in pair]
    scale = np.array([2.0**-s for s in net.shifts])
    return (*(np.ascontiguousarray(a, np.float64) for a in arrays), scale)


_NO_PRIOR = prior.Prior(
    (np.zeros((prior.FEATURES, prior.HIDDEN)), np.zeros((prior.HIDDEN, prior.HIDDEN)),
     np.zeros((prior.HIDDEN, 2))),
    (np.zeros(prior.HIDDEN), np.zeros(prior.HIDDEN), np.zeros(2)),
    (0, 0, 0),
)  # fmt: skip
# what the kernel is given for format 7's rule, which runs no network


def _rebuilt(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`rebuilt_region` of (C, h, w) coded planes, in a little less memory: one uint8
    region and R and B, no wider copies (the decoder's largest arrays)."""
    c = planes.shape[0]
    region = np.empty((*planes.shape[1:], c), dtype=np.uint8)
    if c in (3, 4):
        for k, i in ((0, 1), (2, 2)):
            channel = planes[i] + planes[0]
            if channel.size and (channel.min() < 0 or channel.max() > 255):
                raise CorruptFile("predictive payload decodes to out-of-range pixels")
            region[:, :, k] = channel
        region[:, :, 1] = planes[0]
        region[:, :, 3:] = planes[3:].transpose(1, 2, 0)
    else:
        region[...] = planes.transpose(1, 2, 0)
    return region.transpose(1, 0, 2) if width > height else region
