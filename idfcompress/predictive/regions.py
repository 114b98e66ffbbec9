"""Region payloads: the coarse level's tiles and the image's (and older files' margins).

A payload is a filter byte and, for filters 0 and 1, one raw LZMA2 stream of the regions'
bytes (each region an (H, W, C) uint8 array), region by region in row-major order
(docs/FORMAT.md, "Region payloads"); filters 2 to 4 are predictive payloads
(``predictive``: blended prediction, a logistic per value, ANS), which win on photographs:
filter 2 (format 7, decoded only) takes one fitted logistic per context, filter 3 (format
8, decoded only) the learned prior's logistic of each value (``predictive.prior``), moved
per context by fitted shifts, names the prior by a one-byte id and packs the channels
whose histograms have regular gaps (``packing``); filter 4 (format 9) is filter 3 with the
prior's means corrected by the online filter (``predictive.online``), learnt while coding;
filter 5 (format 10) is filter 4 without the values at rows and columns that are multiples
of the file's coarse stride, which the decoder takes from the coarse level; filters 6 and
7 (format 11, what the encoder writes: 6 for the coarse level, 7 for the tiles) are 4 and
5 with the shifts fitted per bin of the prior's log-scale, not per context. Filter 0
stores the pixels as they are; filter 1 delta-filters each region on its own, without
looking outside it: the first row by the left neighbour (the first pixel against 0),
every other row by the pixel above, modulo 256 (PNG's "Sub" and "Up" filters). The
encoder keeps whichever payload is smallest: prediction on photographs, no filter on
synthetic images whose repeats the compressor finds. LZMA2 (Python's ``lzma``, liblzma) gave
7-17 % smaller payloads than zlib at level 9 on camera, film-scan and synthetic tiles, in
about the same time, with a 1 MiB dictionary.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Sequence

import numpy as np

from ..errors import CorruptFile
from . import coder, lattice, packing, prior

__all__ = [
    "DELTA_FILTER",
    "LEARNED",
    "ONLINE",
    "ONLINE_GIVEN",
    "SCALED",
    "SCALED_GIVEN",
    "RegionCoding",
    "NO_FILTER",
    "PREDICTIVE",
    "decode_regions",
    "delta_filter",
    "delta_unfilter",
    "coder_name",
    "encode_regions",
    "warm_up",
]

NO_FILTER = 0
DELTA_FILTER = 1
PREDICTIVE = 2
LEARNED = 3
ONLINE = 4
ONLINE_GIVEN = 5
SCALED = 6
SCALED_GIVEN = 7
# The learned filters: whether each has the online filter, leaves the coarse level's
# values out, and fits the shifts per bin of the prior's scale.
_LEARNED = {
    LEARNED: (False, False, False),
    ONLINE: (True, False, False),
    ONLINE_GIVEN: (True, True, False),
    SCALED: (True, False, True),
    SCALED_GIVEN: (True, True, True),
}
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]
_DECODE_FILTERS = [{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}]


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
    # uint8 sums wrap modulo 256 as the filter does: no wider copy of the region is made
    r = np.array(residuals, dtype=np.uint8)
    if r.shape[0]:
        r[0] = np.cumsum(r[0], axis=0, dtype=np.uint8)
    return np.cumsum(r, axis=0, dtype=np.uint8)


def compress(data: bytes) -> bytes:
    """A raw LZMA2 stream of ``data`` (what a region payload holds after its filter byte).

    The dictionary is no larger than the data needs (at most 1 MiB, what the decoder
    allows): setting up a 1 MiB one took ~16 ms per call, most of a small margin's time.
    """
    size = min(1 << 20, max(1 << 12, 1 << max(0, len(data) - 1).bit_length()))
    filters = [{**LZMA_FILTERS[0], "dict_size": size}]
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)


def decompress(stream: bytes, size: int) -> bytes:
    """The ``size`` bytes of a raw LZMA2 stream that must end right there (``CorruptFile``
    otherwise); never more than ``size`` bytes are produced."""
    inflater = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_DECODE_FILTERS)
    try:
        data = inflater.decompress(stream, max_length=size)
        if len(data) == size and not inflater.eof and inflater.decompress(b"", max_length=1):
            raise CorruptFile("compressed stream longer than its regions")
    except lzma.LZMAError:
        raise CorruptFile("corrupt compressed stream") from None
    if len(data) != size or not inflater.eof or inflater.unused_data:
        raise CorruptFile("compressed stream of the wrong size")
    return data


def _filtered(regions: Sequence[np.ndarray]) -> dict[int, bytes]:
    """The regions' bytes under each filter."""
    return {
        NO_FILTER: b"".join(np.ascontiguousarray(r).tobytes() for r in regions),
        DELTA_FILTER: b"".join(np.ascontiguousarray(delta_filter(r)).tobytes() for r in regions),
    }


def _payload(filter_id: int, data: bytes) -> bytes:
    return bytes([filter_id]) + compress(data)


def _predictive(
    regions: Sequence[np.ndarray], prior_id: int | None, stride: int = 0
) -> tuple[bytes, coder.Plan]:
    """The predictive payload's first bytes and plan: with prior ``prior_id``, the online
    filter and the shifts by scale (filter 6, or 7 with ``stride``: the values at multiples
    of ``stride`` left out; its channels packed where :func:`packing.choose` says it pays),
    or the rule of format 7 for None (filter 2, to measure what the prior brings)."""
    if prior_id is None:
        return bytes([PREDICTIVE]), coder.plan(regions)
    sets = packing.choose(regions) if len({r.shape[2] for r in regions}) == 1 else []
    start = bytes([SCALED_GIVEN if stride else SCALED, prior_id]) + packing.write_sets(sets)
    learned = prior.load_prior(prior_id)
    packed = packing.pack(regions, sets)
    return start, coder.plan(packed, learned, online=True, stride=stride, by_scale=True)


def encode_regions(
    regions: Sequence[np.ndarray], prior_id: int | None = prior.DEFAULT_PRIOR, stride: int = 0
) -> bytes:
    """The smallest payload of ``regions``: unfiltered, delta-filtered or predictive (the
    last made only when its estimate is within ``RegionCoding.CLOSE`` of the others).

    ``prior_id``: the learned prior to code with (None: the rule of format 7, to measure
    what the prior brings); ``stride``: a predictive payload leaves out the pixels at rows
    and columns that are multiples of it (:func:`decode_regions` is given them)."""
    candidates = [_payload(f, data) for f, data in _filtered(regions).items()]
    start, plan = _predictive(regions, prior_id, stride)
    if plan.size <= RegionCoding.CLOSE * min(map(len, candidates)):
        candidates.append(start + plan.payload())
    return min(candidates, key=len)


class RegionCoding:
    """A stand-in for :func:`encode_regions` at a fraction of its cost: ``size`` is the
    smaller of the predictive plan's estimate and the regions' zlib (level 6) size under
    their better LZMA filter. LZMA2 payloads were 0.71 to 0.93 times the zlib size on 256-px
    tiles of camera, film-scan and synthetic images (and 1.19 on a tiny bilevel one).
    :meth:`payload` then codes only the candidates within ``CLOSE`` of the best estimate."""

    CLOSE = 1.1  # at 1.0, artificial.png (synthetic, mostly raw cores) grew 0.6 %

    def __init__(
        self,
        regions: Sequence[np.ndarray],
        prior_id: int | None = prior.DEFAULT_PRIOR,
        stride: int = 0,
    ) -> None:
        """``prior_id`` and ``stride`` as for :func:`encode_regions`."""
        sizes = {f: (len(zlib.compress(data, 6)), data) for f, data in _filtered(regions).items()}
        self._start, self._plan = _predictive(regions, prior_id, stride)
        best = min(self._plan.size, *(size for size, _ in sizes.values()))
        self.size = 1 + best
        self._predictive = self._plan.size <= self.CLOSE * best
        self._candidates = {
            f: data for f, (size, data) in sizes.items() if size <= self.CLOSE * best
        }

    def payload(self) -> bytes:
        """The smallest payload among the candidates the estimates found close."""
        candidates = [_payload(f, data) for f, data in self._candidates.items()]
        if self._predictive:
            candidates.append(self._start + self._plan.payload())
        return min(candidates, key=len)


def coder_name(first: int | None, second: int | None) -> str:
    """What codes a region payload that starts with bytes ``first`` and ``second`` (None:
    absent), for ``idfc info``: e.g. ``learned prior 1`` or ``LZMA2``."""
    names = {NO_FILTER: "LZMA2", DELTA_FILTER: "LZMA2, delta", PREDICTIVE: "rule (format 7)"}
    if first in _LEARNED:
        online, given, by_scale = _LEARNED[first]
        name = f"learned prior {'?' if second is None else second}"
        name += ", online filter" if online else ""
        name += ", shifts by scale" if by_scale else ""
        return name + (", coarse level given" if given else "")
    if first in names:
        return names[first]
    return "empty" if first is None else f"unknown filter {first}"


def warm_up() -> None:
    """Builds what the first region coded needs (the grid tables, the shift search's costs,
    the default prior) and loads the compiled kernels, by coding a tiny region: a caller
    may run it on a thread while it reads the image."""
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    decode_regions(encode_regions([noise]), [noise.shape])
    lattice.release()  # its index tables are kept no longer than a codec call's


def decode_regions(
    payload: bytes | memoryview,
    shapes: Sequence[tuple[int, int, int]],
    *,
    budget: float | None = coder.VALUES_PER_BYTE,
    work: coder.Work | None = None,
    given: Sequence[np.ndarray] | None = None,
    stride: int = 0,
) -> list:
    """The regions of the given (H, W, C) shapes from an :func:`encode_regions` payload.

    The filter must be known and the stream must hold exactly the regions' bytes and end
    there (``CorruptFile`` otherwise); nothing larger than that is ever allocated. A
    predictive payload is held to ``budget`` values per byte and counted in ``work``
    (:func:`coder.decode`); a learned one needs its prior (``ModelError`` if unknown).
    ``given`` (with ``stride``): each region's pixels at multiples of ``stride`` (its
    ``[::stride, ::stride]``), which a filter-5 or 7 payload leaves out; such a payload
    without them is ``CorruptFile``.
    """
    payload = bytes(payload)
    if not payload or payload[0] not in (NO_FILTER, DELTA_FILTER, PREDICTIVE, *_LEARNED):
        raise CorruptFile("unknown filter" if payload else "empty payload")
    if payload[0] == PREDICTIVE:
        return coder.decode(payload[1:], shapes, budget=budget, work=work)
    if payload[0] in _LEARNED:
        online, with_given, by_scale = _LEARNED[payload[0]]
        if len(payload) < 2:
            raise CorruptFile("learned payload without its prior id")
        if with_given and (not stride or given is None):
            raise CorruptFile("region payload needs a coarse level the file does not have")
        learned = prior.load_prior(payload[1])
        channels = {c for _, _, c in shapes}
        sets, used = packing.read_sets(payload[2:], channels.pop() if len(channels) == 1 else 0)
        body = payload[2 + used :]
        given = packing.pack(given, sets) if with_given and given is not None else None
        decoded = coder.decode(
            body, shapes, budget=budget, work=work, learned=learned, online=online,
            given=given, stride=stride if with_given else 0, by_scale=by_scale,
        )  # fmt: skip
        return packing.unpack(decoded, sets)
    data = decompress(payload[1:], sum(h * w * c for h, w, c in shapes))
    flat = np.frombuffer(data, np.uint8)
    regions, start = [], 0
    for h, w, c in shapes:
        size = h * w * c
        region = flat[start : start + size].reshape(h, w, c)
        regions.append(delta_unfilter(region) if payload[0] == DELTA_FILTER else region.copy())
        start += size
    return regions
