"""How an image is laid out in an .idf file: plane groups, the tile grid, each tile's core
and margins, and the chunk kinds (docs/FORMAT.md, "Tiles, cores and margins" and "Chunk
order convention"). Encoder and decoder share these rules; no pixel is coded here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .container import ChunkEntry

REGION_KIND = 0  # chunk kind: the whole tile as one region payload (the predictive coder)
MARGIN_KIND = 255  # chunk kind: the pixels of a tile outside its core, as a region payload
COARSE_KIND = 254  # chunk kind: a tile of the coarse level (format 10), as a region payload
# Chunk kinds 1..S (S <= 253) are the flow stages of a tile's core, S the coarsest.
TOP_MIXTURE = 0  # first byte of a first-stage payload: the model's mixture tables follow
TOP_LOGISTIC = 1  # ... one grid logistic per channel (u8 g, then u16 q + 2**15 each) follows
ARITHMETIC_EXACT = 2  # a plane group's arithmetic: integer networks carried exactly in float32
TILE_BATCH = 8  # flow-coded cores of one shape go through the networks this many at a time
NO_CORES = 1 << 30  # the granularity of a group without flow chunks: no tile has a core

ChunkKey = tuple[int, int, int]  # (plane group, tile, kind)


@dataclass(frozen=True)
class Tile:
    """One tile of the grid: its index in row-major order, position and size."""

    index: int
    y: int
    x: int
    height: int
    width: int


def plane_groups(mode: str) -> list[tuple[int, int]]:
    """(channels, first channel) of the groups a mode is coded as: colour apart from alpha."""
    return {"L": [(1, 0)], "LA": [(1, 0), (1, 1)], "RGB": [(3, 0)], "RGBA": [(3, 0), (1, 3)]}[mode]


def tiles_of(height: int, width: int, size: int) -> list[Tile]:
    """Row-major tiles of side ``size`` covering the image (edge tiles are smaller)."""
    tiles: list[Tile] = []
    for y in range(0, height, size):
        for x in range(0, width, size):
            tiles.append(Tile(len(tiles), y, x, min(size, height - y), min(size, width - x)))
    return tiles


def core_shape(tile: Tile, granularity: int) -> tuple[int, int]:
    """(height, width) of the tile's core, the part the flow codes: its sides rounded down
    to multiples of ``granularity``; (0, 0) when either side is shorter."""
    h, w = tile.height - tile.height % granularity, tile.width - tile.width % granularity
    return (h, w) if h and w else (0, 0)


def margin_shapes(tile: Tile, granularity: int, channels: int) -> list[tuple[int, int, int]]:
    """Shapes of the tile's margin regions (right of the core, then below it); [] when the
    core is the whole tile."""
    hc, wc = core_shape(tile, granularity)
    if (hc, wc) == (tile.height, tile.width):
        return []
    return [(hc, tile.width - wc, channels), (tile.height - hc, tile.width, channels)]


def tile_of(plane: np.ndarray, tile: Tile) -> np.ndarray:
    """A view of the whole tile in ``plane``."""
    return plane[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width]


def core_of(plane: np.ndarray, tile: Tile, granularity: int) -> np.ndarray:
    """A view of the tile's core in ``plane``."""
    hc, wc = core_shape(tile, granularity)
    return plane[tile.y : tile.y + hc, tile.x : tile.x + wc]


def margins_of(plane: np.ndarray, tile: Tile, granularity: int) -> list[np.ndarray]:
    """Views of the tile's margin regions in ``plane`` (see :func:`margin_shapes`)."""
    hc, wc = core_shape(tile, granularity)
    part = tile_of(plane, tile)
    return [part[:hc, wc:], part[hc:]]


def put_margins(plane: np.ndarray, tile: Tile, granularity: int, regions: list[np.ndarray]) -> None:
    """Write the tile's margin ``regions`` (as :func:`margins_of` gives them) into ``plane``."""
    for view, region in zip(margins_of(plane, tile, granularity), regions, strict=True):
        view[...] = region


def tile_batches(tiles: list[Tile], granularity: int) -> Iterator[list[Tile]]:
    """Tiles with a core, grouped by core shape (in order of first appearance), TILE_BATCH
    at a time.

    Encoder and decoder batch identically so that both run the same computations.
    """
    by_shape: dict[tuple[int, int], list[Tile]] = {}
    for tile in tiles:
        shape = core_shape(tile, granularity)
        if shape[0]:
            by_shape.setdefault(shape, []).append(tile)
    for group in by_shape.values():
        for start in range(0, len(group), TILE_BATCH):
            yield group[start : start + TILE_BATCH]


def coarse_stride(height: int, width: int, tile_size: int) -> int:
    """The coarse level's stride F for an image of ``height`` x ``width`` in tiles of side
    ``tile_size`` (a multiple of 8): the largest of 64, 32, 16 and 8 that divides the tile
    size and leaves the coarse level at least 64 pixels on its longer side; 8 when none
    does. The level holds the pixels at rows and columns that are multiples of F."""
    for stride in (64, 32, 16):
        if tile_size % stride == 0 and max(height, width) >= 64 * stride:
            return stride
    return 8


def coarse_tiles(height: int, width: int, tile_size: int) -> list[Tile]:
    """The tiles of the coarse level (``image[::F, ::F]``, F its :func:`coarse_stride`)."""
    stride = coarse_stride(height, width, tile_size)
    return tiles_of(-(-height // stride), -(-width // stride), tile_size)


def is_flow_kind(kind: int) -> bool:
    """Whether chunks of ``kind`` hold a flow stage (not a region, margin or coarse
    payload)."""
    return kind not in (REGION_KIND, MARGIN_KIND, COARSE_KIND)


def uses_flow(entries: dict[ChunkKey, ChunkEntry], g: int) -> bool:
    """Whether plane group ``g`` has flow chunks; a group without them decodes without its
    model (every tile a region chunk, or a margin chunk for a tile smaller than any core)."""
    return any(gg == g and is_flow_kind(kind) for gg, _, kind in entries)
