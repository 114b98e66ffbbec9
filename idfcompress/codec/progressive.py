"""Progressive decoding: a prefix of an .idf file already shows the whole image.

A file of today's encoder (formats 10 and 11) starts with its coarse level, every F-th
pixel of every F-th row; its tiles follow in rows (docs/FORMAT.md, "Chunk order
convention"). Stage 1 shows the coarse level upsampled (bilinear), and stage ``1 + r`` adds
tile row ``r``, exact. A file made by the flow (older versions' ``--progressive``) holds
the coarsest stage of every tile first (margins and raw tiles with it), then the next finer
stage, and so on: stage ``k`` uses the first ``k``
stages of every tile and fills the stages still missing with the most likely value of their
prior given what is known (or, with ``sample=True``, with a seeded draw from the prior),
then runs the inverse flow. :func:`decode_progressive` reads a file as it arrives and
yields one image per stage. The last stage is the exact image, verified against the file's
SHA-256 exactly as :func:`idfcompress.decompress` verifies it.

The known stages go through the exact decoder's own interface (``codec.decoder.Decoding``
and the flow's batch decoders); only the filling of missing stages is specific to previews
(``flow.preview``). torch is imported only for files with flow-coded tiles.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np

from ..errors import CorruptFile, TruncatedFile
from ..format import container
from ..format.layout import COARSE_KIND, MARGIN_KIND, REGION_KIND, ChunkKey, Tile, tiles_of
from ..imageio import PixelImage
from .decoder import MAX_PIXELS, Decoding

if TYPE_CHECKING:
    from ..flow.coding import BatchDecoder

__all__ = ["Source", "Stage", "decode_preview", "decode_progressive", "pieces", "upsample"]

PIECE_SIZE = 1 << 16  # bytes asked of a stream or file per read


class Readable(Protocol):
    """Anything with a binary ``read(size)``: a file, a socket file, a pipe, a download."""

    def read(self, size: int = -1, /) -> bytes: ...


Source = bytes | bytearray | memoryview | str | os.PathLike | BinaryIO | Readable


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


# ------------------------------------------------------------------------------ input


def pieces(source: Source, piece_size: int = PIECE_SIZE) -> Iterator[bytes]:
    """The source's bytes in the pieces it delivers them (a whole buffer at once)."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            yield from pieces(handle, piece_size)
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


def _tile_rows(header: container.Header) -> list[list[Tile]]:
    """The tiles by row of the grid, top first (tiles are numbered row-major)."""
    tiles = tiles_of(header.height, header.width, header.tile_size)
    across = header.tile_grid[1]
    return [tiles[start : start + across] for start in range(0, len(tiles), across)]


def _stage_ends(
    header: container.Header, entries: dict[ChunkKey, container.ChunkEntry], stages: list[int]
) -> list[int]:
    """For each progressive stage k = 1.., the file prefix holding every chunk it needs.

    In a file with a coarse level, stage 1 needs every coarse chunk and stage 1 + r the
    chunks of tile row r too. Otherwise stage k needs, for every tile of every group, its
    raw chunk (the whole tile), or its margin chunk and the flow stages 0..k-1 (coarsest
    first), i.e. kinds S..S-k+1.
    """
    ends: list[int] = []

    def need(rank: int, entry: container.ChunkEntry) -> None:
        while len(ends) <= rank:
            ends.append(0)
        ends[rank] = max(ends[rank], entry.offset + entry.length)

    if any(kind == COARSE_KIND for _, _, kind in entries):
        across = header.tile_grid[1]
        for (_, t, kind), chunk in entries.items():
            need(0 if kind == COARSE_KIND else 1 + t // across, chunk)
        return _cumulative(ends)

    for g, count in enumerate(stages):
        for t in range(header.tile_count):
            margin = entries.get((g, t, MARGIN_KIND))
            if margin is not None:
                need(0, margin)
            raw = entries.get((g, t, REGION_KIND))
            if raw is not None:
                need(0, raw)
                continue
            if (g, t, count) not in entries:
                continue  # a tile too small for the flow (checked by Decoding): all margin
            for s in range(count):
                entry = entries.get((g, t, count - s))
                if entry is None:
                    raise CorruptFile(f"tile {t} lacks stage {count - s}")
                need(s, entry)
    return _cumulative(ends)


def _cumulative(ends: list[int]) -> list[int]:
    """The stage ends, each at least the one before (a stage needs every chunk before it)."""
    for k in range(1, len(ends)):
        ends[k] = max(ends[k], ends[k - 1])
    return ends


# ------------------------------------------------------------------------------ decoder


def decode_progressive(
    source: Source,
    *,
    sample: bool = False,
    seed: int = 0,
    max_pixels: int | None = MAX_PIXELS,
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
    max_pixels: int | None = MAX_PIXELS,
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
    buffer = _Buffer(pieces(source, piece_size))
    header, table, header_size = _header(buffer)
    decoding = Decoding(header, table, header_size, max_pixels)
    ends = _stage_ends(header, decoding.entries, decoding.stages)
    count, total = len(ends), decoding.size
    out = decoding.new_image()
    decoders: list[list[BatchDecoder]] = []
    last = count
    if best_only:
        while buffer.more():
            pass
        last = max(1, sum(1 for end in ends if end <= len(buffer.data)))
    if any(decoding.strides):
        yield from _coarse_first(buffer, decoding, ends, out, last, best_only)
        return
    for k in range(1, count + 1):
        _wait_for(buffer, k, ends, total)
        data = bytes(buffer.data[: ends[k - 1]])
        if k == 1:
            decoders = [decoding.start_group(data, g, out) for g in range(len(header.groups))]
        render = not best_only or k == last
        rng = np.random.default_rng if sample else None
        for g, group_decoders in enumerate(decoders):
            plane = decoding.plane(g, out)
            for b, decoder in enumerate(group_decoders):
                if decoder.done:
                    continue
                decoder.decode_stage(data)
                if decoder.done:
                    decoder.write_pixels(decoder.staged, plane)  # this batch is exact now
                elif render:
                    from ..flow.preview import write_preview

                    write_preview(decoder, plane, rng([seed, k, g, b]) if rng else None)
        if render:
            yield _stage(buffer, decoding, ends, k, out)


def _coarse_first(
    buffer: _Buffer,
    decoding: Decoding,
    ends: list[int],
    out: np.ndarray,
    last: int,
    best_only: bool,
) -> Iterator[Stage]:
    """The stages of a file with a coarse level: the level upsampled, then a tile row at a
    time, exact (rendered from stage ``last`` on when ``best_only``)."""
    header = decoding.header
    count, total = len(ends), decoding.size
    rows = _tile_rows(header)
    levels: list[np.ndarray | None] = []
    for k in range(1, count + 1):
        _wait_for(buffer, k, ends, total)
        data = bytes(buffer.data[: ends[k - 1]])
        if k == 1:
            levels = [decoding.coarse(data, g) for g in range(len(header.groups))]
            for g, level in enumerate(levels):
                if level is not None:
                    upsample(level, decoding.strides[g], decoding.plane(g, out))
        else:
            for g, level in enumerate(levels):
                decoding.start_group(data, g, out, tiles=rows[k - 2], coarse=level)
        if best_only and k < last:
            continue
        yield _stage(buffer, decoding, ends, k, out)
        if best_only:
            return


def _stage(buffer: _Buffer, decoding: Decoding, ends: list[int], k: int, out: np.ndarray) -> Stage:
    """Stage ``k`` of ``out``: a copy, verified against the checksum at the last stage."""
    header, count, total = decoding.header, len(ends), decoding.size
    if k == count:
        # Like decompress: bytes after the last chunk make the file corrupt (so the end
        # of the source must be seen before the image is called exact).
        while len(buffer.data) <= total and buffer.more():
            pass
        container.check_no_trailing(len(buffer.data), total)
        image = decoding.verified(out.copy())
    else:
        image = PixelImage(out.copy(), header.mode, header.source_mode, dict(header.metadata))
    return Stage(k, count, image, ends[k - 1], total, k == count)


def upsample(level: np.ndarray, stride: int, plane: np.ndarray) -> None:
    """Writes into ``plane`` (H, W, C) the bilinear interpolation of its coarse ``level``
    (the pixels at multiples of ``stride``), rounded; beyond the last row or column of the
    level, its edge. A band of rows at a time, so that no float copy of the image is made."""
    h, w = plane.shape[:2]
    x = np.arange(w) / stride
    x0 = np.minimum(np.floor(x).astype(np.int64), level.shape[1] - 1)
    x1 = np.minimum(x0 + 1, level.shape[1] - 1)
    fx = np.clip(x - x0, 0.0, 1.0)[None, :, None].astype(np.float32)
    for top in range(0, h, 256):
        y = np.arange(top, min(h, top + 256)) / stride
        y0 = np.minimum(np.floor(y).astype(np.int64), level.shape[0] - 1)
        y1 = np.minimum(y0 + 1, level.shape[0] - 1)
        fy = np.clip(y - y0, 0.0, 1.0)[:, None, None].astype(np.float32)
        upper, lower = level[y0].astype(np.float32), level[y1].astype(np.float32)
        above = upper[:, x0] * (1 - fx) + upper[:, x1] * fx
        below = lower[:, x0] * (1 - fx) + lower[:, x1] * fx
        plane[top : top + y.size] = np.rint(above * (1 - fy) + below * fy).astype(np.uint8)


def _wait_for(buffer: _Buffer, k: int, ends: list[int], total: int) -> None:
    """Read until stage ``k``'s bytes are here; ``TruncatedFile`` if the source ends first."""
    if buffer.fill(ends[k - 1]):
        return
    shown = (
        "nothing can be shown" if k == 1 else "the stages shown are previews, not the exact image"
    )
    raise TruncatedFile(
        f"incomplete .idf file: {len(buffer.data)} of {total} bytes received, stage {k} of "
        f"{len(ends)} needs {ends[k - 1]}; {shown}"
    )
