"""Progressive decoding: a prefix of an .idf file already shows the whole image.

The codec writes the coarsest stage of every tile first (margins and raw tiles with it),
then the next finer stage, and so on (docs/FORMAT.md, "Chunk order convention").
:func:`decode_progressive` reads a file as it arrives and yields one image per stage: stage
``k`` uses the first ``k`` stages of every tile and fills the stages still missing with the
most likely value of their prior given what is known (or, with ``sample=True``, with a
seeded draw from the prior), then runs the inverse flow. The last stage is the exact image,
verified against the file's SHA-256 exactly as :func:`idfcompress.decompress` verifies it.

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
from ..format.layout import MARGIN_KIND, REGION_KIND, ChunkKey
from ..imageio import PixelImage
from .decoder import MAX_PIXELS, Decoding

if TYPE_CHECKING:
    from ..flow.coding import BatchDecoder

__all__ = ["Source", "Stage", "decode_preview", "decode_progressive", "pieces"]

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


def _stage_ends(
    header: container.Header, entries: dict[ChunkKey, container.ChunkEntry], stages: list[int]
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
    for k in range(1, len(ends)):  # a stage needs all the chunks of the stages before it
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
        if not render:
            continue
        if k == count:
            # Like decompress: bytes after the last chunk make the file corrupt (so the end
            # of the source must be seen before the image is called exact).
            while len(buffer.data) <= total and buffer.more():
                pass
            container.check_no_trailing(len(buffer.data), total)
            image = decoding.verified(out.copy())
        else:
            image = PixelImage(out.copy(), header.mode, header.source_mode, dict(header.metadata))
        yield Stage(k, count, image, ends[k - 1], total, k == count)


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
