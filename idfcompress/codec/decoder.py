"""The decoder: .idf bytes -> checked plan -> tiles -> pixels, verified against the file's
SHA-256.

:class:`Decoding` is the stage-by-stage interface that both :func:`decode` and progressive
decoding (``codec.progressive``) use: it checks the header and chunk table once, decodes
the region and margin chunks of a plane group, and hands out the flow's batch decoders,
which decode one stage at a time. torch is imported only for plane groups that hold flow
chunks: a file made by the default encoder decodes with numpy and numba alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptFile, ImageTooLarge
from ..flow import runtime as flow_runtime
from ..format import container
from ..format.layout import (
    COARSE_KIND,
    MARGIN_KIND,
    NO_CORES,
    REGION_KIND,
    TILE_BATCH,
    ChunkKey,
    Tile,
    coarse_stride,
    coarse_tiles,
    core_shape,
    margin_shapes,
    put_margins,
    tile_batches,
    tile_of,
    tiles_of,
    uses_flow,
)
from ..imageio import CHANNELS, PixelImage
from ..predictive import lattice
from ..predictive.coder import VALUES_PER_BYTE, Work
from ..predictive.regions import decode_regions
from .threads import map_tiles, requested

if TYPE_CHECKING:
    from ..flow.coding import BatchDecoder
    from ..flow.model import IntegerFlow

_CHUNK_NAMES = {REGION_KIND: "region payload", COARSE_KIND: "coarse level"}  # in errors
MAX_PIXELS = 1 << 28  # decoder guard against decompression bombs (override with max_pixels)
# The decoder's working set grows with the pixels of one batch of tiles (~0.5 KB per pixel
# with a 96-wide model): it refuses larger batches, a limit that grows with max_pixels.
MAX_BATCH_PIXELS = 1 << 21
# Predictive payloads may code at most VALUES_PER_BYTE values per byte (the encoder's: 16 at
# most), a budget raised with max_pixels like the batch limit (docs/RELIABILITY.md).


class Decoding:
    """The checked plan of one file: its header, chunks by key and stage counts.

    Built from the header and chunk table alone (a prefix of the file is enough); every check
    that needs no payload is made here, before anything is allocated for the image.
    """

    def __init__(
        self,
        header: container.Header,
        table: list[container.ChunkEntry],
        header_size: int,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.header = header
        self.size = container.file_size(table, header_size)
        _check_size(header, max_pixels)
        self.budget = _budget(max_pixels)
        self.work = Work()  # what the region payloads decoded so far cost
        self.entries = _chunks_by_key(header, table)
        self._flows: dict[int, IntegerFlow] = {}
        for g in range(len(header.groups)):
            _check_group(self, g)
        self.strides = [
            coarse_stride(header.height, header.width, header.tile_size)
            if (g, 0, COARSE_KIND) in self.entries
            else 0
            for g in range(len(header.groups))
        ]
        """Per plane group, the stride of its coarse level (0: none)."""
        self.stages = [
            self.flow(g).config.stages if self.uses_flow(g) else 1
            for g in range(len(header.groups))
        ]

    @classmethod
    def of(cls, data: bytes | memoryview, max_pixels: int | None = MAX_PIXELS) -> Decoding:
        """The plan of a whole file ``data``; ``CorruptFile`` if bytes follow its end."""
        header, table = container.read_header(data)
        size = container.header_size_needed(data)
        assert size is not None  # read_header found the whole header
        container.check_no_trailing(memoryview(data).nbytes, container.file_size(table, size))
        return cls(header, table, size, max_pixels)

    def uses_flow(self, g: int) -> bool:
        """Whether plane group ``g`` has flow chunks (and so needs its model)."""
        return uses_flow(self.entries, g)

    def flow(self, g: int) -> IntegerFlow:
        """The model of plane group ``g``, checked against the file (torch is imported)."""
        if g not in self._flows:
            flow_runtime("decoding this file's flow-coded tiles", requested())
            from ..flow.coding import model_for

            self._flows[g] = model_for(self.header.groups[g]).flow
        return self._flows[g]

    def new_image(self) -> np.ndarray:
        """The zeroed pixel array the tiles are decoded into; ``ImageTooLarge`` if memory
        runs out."""
        h = self.header
        try:
            return np.zeros((h.height, h.width, CHANNELS[h.mode]), dtype=np.uint8)
        except MemoryError:
            raise ImageTooLarge(f"not enough memory for an image of {h.width}x{h.height}") from None

    def plane(self, g: int, out: np.ndarray) -> np.ndarray:
        """The view of ``out`` holding plane group ``g``'s channels."""
        group = self.header.groups[g]
        return out[:, :, group.first_channel : group.first_channel + group.channels]

    def coarse(self, data: bytes | memoryview, g: int) -> np.ndarray | None:
        """Plane group ``g``'s coarse level (``plane[::F, ::F]``, F its stride), decoded from
        its coarse chunks (the first in the file, so ``data`` need reach only that far);
        None for a group without one."""
        stride = self.strides[g]
        if not stride:
            return None
        h, w = self.header.height, self.header.width
        channels = self.header.groups[g].channels
        level = np.zeros((-(-h // stride), -(-w // stride), channels), dtype=np.uint8)
        tiles = coarse_tiles(h, w, self.header.tile_size)

        def decode(tile: Tile) -> np.ndarray:
            entry = self.entries[(g, tile.index, COARSE_KIND)]
            shape = [(tile.height, tile.width, channels)]
            return self._regions(data, entry, tile, shape)[0]

        try:
            for tile, region in zip(tiles, map_tiles(decode, tiles), strict=True):
                tile_of(level, tile)[...] = region
        finally:
            lattice.release()
        return level

    def start_group(
        self,
        data: bytes | memoryview,
        g: int,
        out: np.ndarray,
        tiles: list[Tile] | None = None,
        coarse: np.ndarray | None = None,
    ) -> list[BatchDecoder]:
        """Decode plane group ``g``'s region and margin chunks into ``out`` (they come with
        the first stage, so ``data`` must reach that far) and return the batch decoders of
        its flow-coded cores, in coding order, each ready for its first stage.

        ``tiles``: only those tiles (all when None), whose regions leave out the ``coarse``
        level's pixels (:meth:`coarse`; decoded here when not given). Region tiles stay out
        of the batches: exact arithmetic gives every core the same numbers in any batch, so
        the decoder need not compute their latents.
        """
        plane = self.plane(g, out)
        flow = self.flow(g) if self.uses_flow(g) else None
        side = flow.config.granularity if flow is not None else NO_CORES
        if tiles is None:
            tiles = tiles_of(self.header.height, self.header.width, self.header.tile_size)
        if coarse is None:
            coarse = self.coarse(data, g)

        def decode(tile: Tile) -> bool:
            return self._region_tile(data, g, tile, plane, side, coarse)

        try:
            cores = map_tiles(decode, tiles)
            flow_tiles = [tile for tile, core in zip(tiles, cores, strict=True) if core]
        finally:
            lattice.release()  # the index tables never outlive the decoding
        if flow is None:
            return []
        from ..flow.coding import BatchDecoder

        return [BatchDecoder(flow, g, b, self.entries) for b in tile_batches(flow_tiles, side)]

    def _region_tile(
        self,
        data: bytes | memoryview,
        g: int,
        tile: Tile,
        plane: np.ndarray,
        side: int,
        coarse: np.ndarray | None,
    ) -> bool:
        """Decode the tile's region or margin chunk into ``plane`` (its pixels at multiples
        of the stride given by the ``coarse`` level); whether its core is left to the flow."""
        region = self.entries.get((g, tile.index, REGION_KIND))
        if region is not None:  # the whole tile (checked by _check_group)
            shape = [(tile.height, tile.width, plane.shape[2])]
            f, given = self.strides[g], None
            if coarse is not None and f:
                top, left = tile.y // f, tile.x // f
                given = coarse[top : top - (-tile.height // f), left : left - (-tile.width // f)]
            tile_of(plane, tile)[...] = self._regions(data, region, tile, shape, given, f)[0]
            return False
        shapes = margin_shapes(tile, side, plane.shape[2])
        if shapes:
            entry = self.entries[(g, tile.index, MARGIN_KIND)]
            put_margins(plane, tile, side, self._regions(data, entry, tile, shapes))
        return bool(core_shape(tile, side)[0])

    def _regions(
        self,
        data: bytes | memoryview,
        entry: container.ChunkEntry,
        tile: Tile,
        shapes: list[tuple[int, int, int]],
        given: np.ndarray | None = None,
        stride: int = 0,
    ) -> list[np.ndarray]:
        """The regions of a region, margin or coarse chunk of ``tile`` (a region tile's
        ``given`` pixels at multiples of ``stride``, as :func:`decode_regions` takes them)."""
        what = _CHUNK_NAMES.get(entry.kind, "margin")
        try:
            payload = container.payload(data, entry)
            return decode_regions(
                payload, shapes, budget=self.budget, work=self.work,
                given=None if given is None else [given], stride=stride,
            )  # fmt: skip
        except CorruptFile as exc:
            raise CorruptFile(f"corrupt {what} of tile {tile.index}: {exc}") from None
        except ImageTooLarge as exc:
            raise ImageTooLarge(f"{what} of tile {tile.index}: {exc} (raise max_pixels)") from None

    def verified(self, out: np.ndarray) -> PixelImage:
        """The decoded image, once its pixels match the file's SHA-256."""
        h = self.header
        digest = container.pixel_digest(h.width, h.height, h.mode, np.ascontiguousarray(out).data)
        if digest != h.pixel_sha256:
            raise CorruptFile("checksum mismatch: the decoded image differs from the original")
        return PixelImage(out, h.mode, h.source_mode, dict(h.metadata))


def decode(
    data: bytes | memoryview, *, max_pixels: int | None = MAX_PIXELS, work: Work | None = None
) -> PixelImage:
    """Decompress .idf bytes; the result is verified against the stored checksum. ``work``,
    if given, counts what the region payloads cost (also when decoding fails)."""
    decoding = Decoding.of(data, max_pixels)
    if work is not None:
        decoding.work = work
    out = decoding.new_image()
    for g in range(len(decoding.header.groups)):
        plane = decoding.plane(g, out)
        for batch in decoding.start_group(data, g, out):
            while not batch.done:
                batch.decode_stage(data)
            batch.write_pixels(batch.staged, plane)
    return decoding.verified(out)


# ------------------------------------------------------------------------------ checks


def _check_size(header: container.Header, max_pixels: int | None) -> None:
    """The pixel limit, and the memory one batch of tiles would need (before allocating)."""
    if max_pixels is None:
        return
    if header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"image of {header.width}x{header.height} exceeds the limit of {max_pixels} pixels"
        )
    tile_h, tile_w = min(header.tile_size, header.height), min(header.tile_size, header.width)
    batch = min(TILE_BATCH, header.tile_count) * tile_h * tile_w
    limit = max(MAX_BATCH_PIXELS, max_pixels * MAX_BATCH_PIXELS // MAX_PIXELS)
    if batch > limit:
        raise ImageTooLarge(
            f"tiles of {tile_w}x{tile_h} pixels need too much memory to decode "
            f"({batch} pixels per batch; the limit is {limit}, raise max_pixels)"
        )


def _budget(max_pixels: int | None) -> float | None:
    """Values per byte of predictive stream the decoder allows (None: no budget)."""
    if max_pixels is None:
        return None
    return VALUES_PER_BYTE * max(1.0, max_pixels / MAX_PIXELS)


def _chunks_by_key(
    header: container.Header, table: list[container.ChunkEntry]
) -> dict[ChunkKey, container.ChunkEntry]:
    """The chunk table by (group, tile, kind); every group has chunks for every tile."""
    entries: dict[ChunkKey, container.ChunkEntry] = {}
    for entry in table:
        key = (entry.group, entry.tile, entry.kind)
        if key in entries:
            raise CorruptFile(f"duplicate chunk for tile {entry.tile}")
        entries[key] = entry
    for g in range(len(header.groups)):
        tiles_here = {t for (gg, t, kind) in entries if gg == g and kind != COARSE_KIND}
        if len(tiles_here) != header.tile_count:
            raise CorruptFile(
                f"plane group {g} has chunks for {len(tiles_here)} of {header.tile_count} tiles"
            )
    return entries


def _kinds_by_tile(entries: dict[ChunkKey, container.ChunkEntry], g: int) -> dict[int, set[int]]:
    kinds: dict[int, set[int]] = {}
    for gg, index, kind in entries:
        if gg == g and kind != COARSE_KIND:
            kinds.setdefault(index, set()).add(kind)
    return kinds


def _check_group(decoding: Decoding, g: int) -> None:
    """Every tile of plane group ``g`` has the chunks its core and margin need and no
    others."""
    header = decoding.header
    tiles = tiles_of(header.height, header.width, header.tile_size)
    kinds = _kinds_by_tile(decoding.entries, g)
    coarse = {t for (gg, t, kind) in decoding.entries if gg == g and kind == COARSE_KIND}
    if coarse:
        count = len(coarse_tiles(header.height, header.width, header.tile_size))
        if coarse != set(range(count)) or decoding.uses_flow(g):
            raise CorruptFile(
                f"corrupt .idf file: plane group {g} has {len(coarse)} coarse chunks for a "
                f"coarse level of {count} tiles, or flow chunks besides them"
            )
    if not decoding.uses_flow(g):
        for tile in tiles:
            if kinds.get(tile.index) not in ({REGION_KIND}, {MARGIN_KIND}):
                raise CorruptFile(
                    f"corrupt .idf file: tile {tile.index} needs one raw or margin chunk"
                )
        return
    flow = decoding.flow(g)
    for tile in tiles:
        _check_flow_tile(decoding, g, flow, tile, kinds.get(tile.index, set()))


def _check_flow_tile(
    decoding: Decoding, g: int, flow: IntegerFlow, tile: Tile, have: set[int]
) -> None:
    """The chunks of one tile of a group with flow chunks; its first stage is long enough
    for its core (forged sizes, see ``flow.coding.first_stage_floor``)."""
    from ..flow.coding import first_stage_floor

    side, stages = flow.config.granularity, flow.config.stages
    hc, wc = core_shape(tile, side)
    if REGION_KIND in have:
        if not hc or have != {REGION_KIND}:
            raise CorruptFile(
                f"corrupt .idf file: tile {tile.index} has a raw chunk and other "
                "chunks, or is too small for one"
            )
        return
    has_margin = bool(margin_shapes(tile, side, decoding.header.groups[g].channels))
    if has_margin != (MARGIN_KIND in have):
        word = "lacks its" if has_margin else "has an unexpected"
        raise CorruptFile(f"corrupt .idf file: tile {tile.index} {word} margin chunk")
    if not hc and have - {MARGIN_KIND}:
        raise CorruptFile(
            f"corrupt .idf file: tile {tile.index} is too small for the flow "
            "but has flow or raw chunks"
        )
    stage_kinds = set(range(1, stages + 1))
    if hc and not stage_kinds <= have:
        missing = min(stage_kinds - have)
        raise CorruptFile(f"corrupt .idf file: tile {tile.index} lacks stage {missing}")
    entry = decoding.entries.get((g, tile.index, stages))
    floor = first_stage_floor(flow)
    if entry is None or floor == 0:
        return
    symbols = flow.mixture_channels * (hc // side) * (wc // side)
    if 8 * entry.length + 64 < floor * symbols:
        raise CorruptFile(
            f"corrupt .idf file: the first stage of tile {tile.index} is too short "
            f"for a {wc}x{hc} core"
        )
