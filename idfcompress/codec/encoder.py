"""The encoder: image -> plane groups -> the coarse level and tiles -> region payloads -> .idf.

Every plane group is coded the same way (docs/DESIGN.md, "Encoder"): first its coarse level
(every F-th pixel of every F-th row, ``layout.coarse_stride``) in tiles of its own, so that
any prefix past it shows the whole picture; then every tile as one region payload (the
predictive coder, which leaves out the coarse level's pixels, or LZMA2 where that is
smaller). No network runs and torch is not imported. (The flow's encoder is retired; files
with flow chunks still decode, docs/FORMAT.md.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..format import container
from ..format.layout import (
    ARITHMETIC_EXACT,
    COARSE_KIND,
    REGION_KIND,
    Tile,
    coarse_stride,
    coarse_tiles,
    plane_groups,
    tile_of,
    tiles_of,
)
from ..imageio import PixelImage
from ..predictive import lattice
from ..predictive.regions import RegionCoding, warm_up
from .threads import map_tiles

__all__ = ["DEFAULT_TILE_SIZE", "EncodeStats", "encode", "warm_up"]

DEFAULT_TILE_SIZE = 256

Progress = Callable[[int, int], None]


@dataclass
class EncodeStats:
    """What an encode measured: sizes and tiles."""

    subpixels: int = 0
    file_bytes: int = 0
    tiles: int = 0
    coarse_tiles: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8.0 * self.file_bytes / max(self.subpixels, 1)


def encode(
    image: PixelImage,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """Compress an image to .idf bytes; also returns what was measured on the way.
    ``progress(done, total)`` is called once per coded tile (coarse-level tiles included)."""
    if tile_size < 8 or tile_size % 8 or tile_size > 65528:
        raise ValueError("tile size must be a multiple of 8 between 8 and 65528")
    pixels = image.pixels
    stats = EncodeStats(subpixels=int(pixels.size))
    specs = plane_groups(image.mode)
    tiles = tiles_of(image.height, image.width, tile_size)
    coarse = coarse_tiles(image.height, image.width, tile_size)
    ticker = _Ticker(progress, len(specs) * (len(tiles) + len(coarse)))
    groups, chunks = [], []
    try:
        for g, (channels, first) in enumerate(specs):
            plane = pixels[:, :, first : first + channels]
            for kind, tile, payload in _group_chunks(plane, tile_size, ticker):
                chunks.append(container.Chunk(g, kind, tile, payload))
            groups.append(
                container.PlaneGroup(
                    channels, first, container.NO_MODEL, container.NO_MODEL_SHA256, ARITHMETIC_EXACT
                )
            )
    finally:
        lattice.release()  # the index tables never outlive the image
    stats.tiles, stats.coarse_tiles = len(specs) * len(tiles), len(specs) * len(coarse)
    # the coarse level first; then by tile before plane group, so that a row of tiles is
    # whole before the next one starts
    chunks.sort(key=lambda c: (c.kind != COARSE_KIND, c.tile, c.group))
    header = container.Header(
        width=image.width,
        height=image.height,
        mode=image.mode,
        source_mode=image.source_mode,
        tile_size=tile_size,
        pixel_sha256=container.pixel_digest(
            image.width, image.height, image.mode, np.ascontiguousarray(pixels).data
        ),
        groups=groups,
        metadata=dict(image.metadata),
    )
    data = container.write(header, chunks)
    stats.file_bytes = len(data)
    return data, stats


class _Ticker:
    """Counts coded tiles for the caller's progress callback."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


def _group_chunks(
    plane: np.ndarray, tile_size: int, ticker: _Ticker
) -> list[tuple[int, int, bytes]]:
    """(kind, tile index, payload) of one plane group's chunks: its coarse level
    (``plane[::F, ::F]`` in tiles), then its tiles, which leave the level's pixels out."""
    height, width = plane.shape[:2]
    stride = coarse_stride(height, width, tile_size)
    coarse = np.ascontiguousarray(plane[::stride, ::stride])
    out = []
    for kind, source, tiles, step in (
        (COARSE_KIND, coarse, coarse_tiles(height, width, tile_size), 0),
        (REGION_KIND, plane, tiles_of(height, width, tile_size), stride),
    ):

        def code(tile: Tile, source: np.ndarray = source, step: int = step) -> bytes:
            return RegionCoding([tile_of(source, tile)], stride=step).payload()

        for tile, payload in zip(tiles, map_tiles(code, tiles), strict=True):
            out.append((kind, tile.index, payload))
            ticker.tick()
    return out
