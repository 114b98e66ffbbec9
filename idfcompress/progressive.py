"""Progressive decoding: a prefix of an .idf file already shows the whole image.

The codec writes the coarsest stage of every tile first (margins and raw tiles with it),
then the next finer stage, and so on (docs/FORMAT.md, "Chunk order convention").
:func:`decode_progressive` reads a file as it arrives and yields one image per stage: stage
``k`` uses the first ``k`` stages of every tile and fills the stages still missing with the
most likely value of their prior given what is known (or, with ``sample=True``, with a
seeded draw from the prior), then runs the inverse flow. The last stage is the exact image,
verified against the file's SHA-256 exactly as :func:`idfcompress.decompress` verifies it.

The known stages go through the exact decoder's own per-batch code
(``codec._BatchDecoder``); only the filling of missing stages is specific to previews.
"""

from __future__ import annotations

import copy
import os
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch

from . import codec, container, entropy
from .distributions import MEAN_LIMIT, PROB_TOTAL
from .errors import CorruptFile, TruncatedFile
from .flow import LogisticPrior, StagedInverse
from .imageio import CHANNELS, PixelImage

__all__ = ["Source", "Stage", "decode_preview", "decode_progressive", "prior_mode"]

PIECE_SIZE = 1 << 16  # bytes asked of a stream or file per read

Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO


@dataclass(frozen=True)
class Stage:
    """One image of a progressive decode.

    ``index`` runs from 1 to ``count``; ``bytes_used`` is the length of the file prefix this
    stage needs (the same however the bytes arrived) and ``total_bytes`` the file's size.
    ``exact`` is true only for the last stage, whose pixels matched the file's checksum;
    every other stage is a preview.
    """

    index: int
    count: int
    image: PixelImage
    bytes_used: int
    total_bytes: int
    exact: bool

    @property
    def fraction(self) -> float:
        """Share of the file this stage needs, 0..1."""
        return self.bytes_used / self.total_bytes if self.total_bytes else 1.0

    @property
    def pixels(self) -> np.ndarray:
        """The pixels as :func:`idfcompress.decompress` returns them: (H, W) for L."""
        pixels = self.image.pixels
        return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


# ------------------------------------------------------------------------------ priors


def prior_mode(mean: np.ndarray) -> np.ndarray:
    """Most likely value of discretized logistics with these means: round(mean) (int64).

    A discretized logistic peaks at the integer nearest its mean; halves round up. This is
    also a mode of the snapped grid table that codes the value (tests check it), and, unlike
    an argmax over a wide table whose top is flat after snapping, it does not drift to one
    side.
    """
    m = np.clip(np.nan_to_num(np.asarray(mean, dtype=np.float64)), -MEAN_LIMIT, MEAN_LIMIT)
    return np.floor(m + 0.5).astype(np.int64)


class _TableFacts:
    """Mode and sampler of every table of a TableSet (built lazily, cached per set)."""

    def __init__(self, tables: entropy.TableSet) -> None:
        self.tables = tables
        self._modes: np.ndarray | None = None
        self._keys: np.ndarray | None = None
        self._starts: np.ndarray | None = None

    def modes(self) -> np.ndarray:
        """Bin of largest probability of each table (first one on ties)."""
        if self._modes is None:
            self._modes = np.array(
                [int(np.argmax(self.tables.table(t))) for t in range(len(self.tables))]
            )
        return self._modes

    def sample(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One bin per position drawn from the table ``ids`` names (exact integer weights)."""
        if self._keys is None:
            # Table t owns the keys t * PROB_TOTAL + (cumulative weight up to each bin): one
            # sorted array, so a single searchsorted samples every position at once.
            keys, starts, start = [], [], 0
            for t in range(len(self.tables)):
                weights = np.rint(self.tables.table(t) * PROB_TOTAL).astype(np.int64)
                keys.append(t * PROB_TOTAL + np.cumsum(weights))
                starts.append(start)
                start += weights.size
            self._keys = np.concatenate(keys)
            self._starts = np.array(starts, dtype=np.int64)
        assert self._starts is not None
        tid = ids.astype(np.int64)
        draw = rng.integers(0, PROB_TOTAL, size=tid.shape, dtype=np.int64)
        found = np.searchsorted(self._keys, tid * PROB_TOTAL + draw, side="right")
        return found - self._starts[tid]


_facts: weakref.WeakKeyDictionary[entropy.TableSet, _TableFacts] = weakref.WeakKeyDictionary()


def _facts_of(tables: entropy.TableSet) -> _TableFacts:
    if tables not in _facts:
        _facts[tables] = _TableFacts(tables)
    return _facts[tables]


@codec.exact_arithmetic
@torch.no_grad()
def _completed(decoder: codec._BatchDecoder, rng: np.random.Generator | None) -> StagedInverse:
    """A copy of the decoder's inverse flow with every missing stage filled in.

    Filled values: the prior's mode (logistic: round(mean); mixture: its table's argmax),
    or with ``rng`` a draw from the stage's coding table (tails end at the table's end
    bins). The decoder itself is left untouched.
    """
    staged = copy.copy(decoder.staged)  # push() only rebinds attributes: a shallow copy is safe
    while staged.stage < decoder.stages:
        prior, tables, ids, offsets = decoder.parameters(staged)
        if rng is not None:
            z = offsets + _facts_of(tables).sample(ids, rng)
        elif isinstance(prior, LogisticPrior):
            z = prior_mode(prior.mean.double().numpy())
        else:
            z = offsets + _facts_of(tables).modes()[ids]
        staged.push(torch.from_numpy(z).float())
    return staged


# ------------------------------------------------------------------------------ input


def _pieces(source: Source, piece_size: int) -> Iterator[bytes]:
    """The source's bytes in the pieces it delivers them (a whole buffer at once)."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            yield from _pieces(handle, piece_size)
        return
    read = getattr(source, "read1", None) or source.read
    while True:
        piece = read(piece_size)
        if not piece:
            return
        yield bytes(piece)


class _Buffer:
    """The bytes received so far, topped up from the source on demand."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self.data = bytearray()
        self.ended = False

    def more(self) -> bool:
        """Read one more piece; False at the end of the source."""
        for piece in self._pieces:
            self.data += piece
            return True
        self.ended = True
        return False

    def fill(self, size: int) -> bool:
        """Read until at least ``size`` bytes are here; False if the source ends first."""
        while len(self.data) < size:
            if not self.more():
                return False
        return True


def _header(buffer: _Buffer) -> tuple[container.Header, list[container.ChunkEntry], int]:
    """Read until the header is here; the header, chunk table and header size."""
    while (size := container.header_size_needed(buffer.data)) is None or len(buffer.data) < size:
        if not buffer.more():
            got = len(buffer.data)
            if got == 0:
                raise TruncatedFile("incomplete .idf file: no bytes received")
            need = f"{size} bytes" if size is not None else "more bytes"
            raise TruncatedFile(
                f"incomplete .idf file: only {got} bytes received and the header needs "
                f"{need}; nothing can be shown"
            )
    return (*container.read_header(bytes(buffer.data[:size])), size)


# ------------------------------------------------------------------------------ plan


def _stage_ends(
    header: container.Header,
    entries: dict[tuple[int, int, int], container.ChunkEntry],
    stages: list[int],
) -> list[int]:
    """For each progressive stage k = 1.., the file prefix holding every chunk it needs.

    Stage k needs, for every tile of every group, its raw chunk (the whole tile), or its
    margin chunk and the flow stages 0..k-1 (coarsest first), i.e. kinds S..S-k+1.
    """
    ends: list[int] = []

    def need(rank: int, entry: container.ChunkEntry) -> None:
        while len(ends) <= rank:
            ends.append(0)
        ends[rank] = max(ends[rank], entry.offset + entry.length)

    for g, count in enumerate(stages):
        for t in range(header.tile_count):
            margin = entries.get((g, t, codec.MARGIN_KIND))
            if margin is not None:
                need(0, margin)
            raw = entries.get((g, t, codec.RAW_KIND))
            if raw is not None:
                need(0, raw)
                continue
            if (g, t, count) not in entries:
                continue  # a tile too small for the flow (codec._check_tiles): all margin
            for s in range(count):
                entry = entries.get((g, t, count - s))
                if entry is None:
                    raise CorruptFile(f"tile {t} lacks stage {count - s}")
                need(s, entry)
    for k in range(1, len(ends)):  # a stage needs all the chunks of the stages before it
        ends[k] = max(ends[k], ends[k - 1])
    return ends


# ------------------------------------------------------------------------------ decoder


def decode_progressive(
    source: Source,
    *,
    sample: bool = False,
    seed: int = 0,
    max_pixels: int | None = codec.MAX_PIXELS,
    piece_size: int = PIECE_SIZE,
) -> Iterator[Stage]:
    """Decode an .idf file stage by stage, coarsest first, while its bytes arrive.

    ``source``: the file's bytes, a path, or a binary stream read in pieces as it delivers
    them (e.g. a socket or pipe). Yields one :class:`Stage` per stage; the last one is exact
    and verified against the file's SHA-256 (``CorruptFile`` on a mismatch). Missing stages
    are filled with their priors' most likely values, or with ``sample=True`` drawn from the
    priors with a numpy Generator seeded by ``seed`` (and the stage, group and tile batch), so
    every run gives the same images.

    When the source ends early, every stage its bytes allow is yielded, then
    ``TruncatedFile`` says the file is incomplete; a preview is never marked exact.
    """
    # No torch.no_grad() around the yields: it would leak into the caller between stages
    # (grad mode is per thread); every network call below disables gradients itself.
    yield from _decode(source, sample, seed, max_pixels, piece_size)


def decode_preview(
    data: bytes | bytearray | memoryview,
    *,
    sample: bool = False,
    seed: int = 0,
    max_pixels: int | None = codec.MAX_PIXELS,
) -> Stage:
    """The best image the bytes ``data`` (a whole file or a prefix of one) allow.

    The last stage their bytes hold, rendered as :func:`decode_progressive` renders it
    (earlier stages are decoded but not rendered); ``exact`` tells whether it is the exact
    image. Raises ``TruncatedFile`` when not even the first stage is there.
    """
    best = None
    try:
        for stage in _decode(bytes(data), sample, seed, max_pixels, PIECE_SIZE, best_only=True):
            best = stage
    except TruncatedFile:
        if best is None:
            raise
    assert best is not None
    return best


def _decode(
    source: Source,
    sample: bool,
    seed: int,
    max_pixels: int | None,
    piece_size: int,
    best_only: bool = False,
) -> Iterator[Stage]:
    """The decoder; ``best_only`` (for a source given whole) renders only the last stage its
    bytes allow."""
    buffer = _Buffer(_pieces(source, piece_size))
    header, table, header_size = _header(buffer)
    entries = codec._decode_plan(header, table, max_pixels)
    stages = [codec.stage_count(header, entries, g) for g in range(len(header.groups))]
    ends = _stage_ends(header, entries, stages)
    count = len(ends)
    total = max([header_size] + [e.offset + e.length for e in table])
    out = np.zeros((header.height, header.width, CHANNELS[header.mode]), dtype=np.uint8)
    decoders: list[list[codec._BatchDecoder]] = []
    if best_only:
        while buffer.more():
            pass
        last = max(1, sum(1 for end in ends if end <= len(buffer.data)))
    for k in range(1, count + 1):
        render = not best_only or k == last
        if not buffer.fill(ends[k - 1]):
            got = len(buffer.data)
            shown = (
                "nothing can be shown"
                if k == 1
                else "the stages shown are previews, not the exact image"
            )
            raise TruncatedFile(
                f"incomplete .idf file: {got} of {total} bytes received, stage {k} of "
                f"{count} needs {ends[k - 1]}; {shown}"
            )
        data = bytes(buffer.data[: ends[k - 1]])
        if k == 1:
            decoders = [
                list(codec._batch_decoders(data, header, g, entries, out))
                for g in range(len(header.groups))
            ]
        exact = k == count
        for g, group_decoders in enumerate(decoders):
            plane = codec._group_plane(header, g, out)
            for b, decoder in enumerate(group_decoders):
                if decoder.staged.stage < decoder.stages:
                    decoder.decode_stage(data)
                    if decoder.staged.stage == decoder.stages:
                        decoder.write_pixels(decoder.staged, plane)  # this group is done
                    elif render:
                        rng = np.random.default_rng([seed, k, g, b]) if sample else None
                        decoder.write_pixels(_completed(decoder, rng), plane, exact=False)
        if not render:
            continue
        if exact:
            # Like decompress: bytes after the last chunk make the file corrupt (so the end
            # of the source must be seen before the image is called exact).
            while len(buffer.data) <= total and buffer.more():
                pass
            if len(buffer.data) > total:
                raise CorruptFile(f"corrupt .idf file: data goes on after its end (byte {total})")
            image = codec._verified(header, out.copy())
        else:
            image = PixelImage(out.copy(), header.mode, header.source_mode, dict(header.metadata))
        yield Stage(k, count, image, ends[k - 1], total, exact)
