"""The encoder: image -> plane groups -> tiles -> region payloads and flow stages -> .idf.

Three modes choose what codes a tile (docs/DESIGN.md, "Encoder modes"):

- ``"predictive"`` (the default): the coarse level (every F-th pixel of every F-th row,
  ``layout.coarse_stride``) first, in tiles of its own, so that any prefix past it shows
  the whole picture; then every tile as one region payload (the predictive coder, which
  leaves out the coarse level's pixels, or LZMA2 where that is smaller); no network runs
  and torch is not imported.
- ``"auto"``: the flow also codes every tile and each tile keeps the smaller coding.
- ``"flow"``: every tile's core goes through the flow, coarsest stage first in the file,
  so that a prefix shows the whole picture (progressive display).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from ..flow import runtime as flow_runtime
from ..flow.store import ModelInfo, default_model_name, describe_model
from ..format import container
from ..format.layout import (
    ARITHMETIC_EXACT,
    COARSE_KIND,
    MARGIN_KIND,
    REGION_KIND,
    Tile,
    coarse_stride,
    coarse_tiles,
    core_shape,
    margin_shapes,
    margins_of,
    plane_groups,
    stream_rank,
    tile_batches,
    tile_of,
    tiles_of,
)
from ..imageio import PixelImage
from ..predictive import lattice
from ..predictive.regions import RegionCoding, encode_regions, warm_up
from .threads import map_tiles, requested

if TYPE_CHECKING:
    from ..flow.loading import LoadedModel

__all__ = ["DEFAULT_MODE", "DEFAULT_TILE_SIZE", "MODES", "EncodeStats", "encode", "warm_up"]

DEFAULT_TILE_SIZE = 256
MODES = ("predictive", "auto", "flow")
DEFAULT_MODE = "predictive"
# In "auto" mode a core goes to a region payload only if that payload is smaller than its
# flow streams. Making the payload costs ~25 ms per 256-px RGB tile, so it is only made
# where the quick estimate is under this many times the flow streams (docs/DESIGN.md).
REGION_TRY = 1.15

Progress = Callable[[int, int], None]


@dataclass
class EncodeStats:
    """What an encode measured: real and ideal sizes, tiles coded as region payloads.

    ``flow_bytes`` and ``ideal_bits`` cover the payloads of the flow-coded cores (real
    size, and the model's ``-log2 P``) and every margin's payload (its real size in both);
    ``region_tiles`` counts the tiles coded whole as one region payload, ``flow_tiles`` the
    tiles whose cores went through the networks (kept or not).
    """

    subpixels: int = 0
    file_bytes: int = 0
    flow_bytes: int = 0
    ideal_bits: float = 0.0
    region_tiles: int = 0
    flow_tiles: int = 0
    tiles: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8.0 * self.file_bytes / max(self.subpixels, 1)

    @property
    def overhead(self) -> float:
        """Relative excess of the flow streams over the model's ideal code length."""
        return 8.0 * self.flow_bytes / self.ideal_bits - 1.0 if self.ideal_bits else 0.0


Model = Union[ModelInfo, "LoadedModel"]  # noqa: UP007 - a forward reference


def encode(
    image: PixelImage,
    *,
    model: str | LoadedModel | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    mode: str = DEFAULT_MODE,
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """Compress an image to .idf bytes; also returns what was measured on the way.

    ``model`` is a model name or path (the default model of the image's channel count when
    it codes another count), or a ``LoadedModel`` used as given (e.g. during training); it
    codes the flow-coded tiles, and files record it in every mode. ``mode`` is one of
    :data:`MODES` (module docstring). ``progress(done, total)`` is called once per tile.
    """
    if tile_size < 8 or tile_size % 8 or tile_size > 65528:
        raise ValueError("tile size must be a multiple of 8 between 8 and 65528")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    pixels = image.pixels
    stats = EncodeStats(subpixels=int(pixels.size))
    specs = plane_groups(image.mode)
    count = len(tiles_of(image.height, image.width, tile_size))
    if mode == "predictive":
        count += len(coarse_tiles(image.height, image.width, tile_size))
    ticker = _Ticker(progress, len(specs) * count)
    groups, chunks, stages = [], [], {}
    try:
        for g, (channels, first) in enumerate(specs):
            resolved = _resolve_model(channels, model, mode)
            plane = pixels[:, :, first : first + channels]
            encoder = _GroupEncoder(plane, resolved, tile_size, mode, stats, ticker)
            chunks += [container.Chunk(g, c.kind, c.tile, c.payload) for c in encoder.chunks()]
            stages[g] = resolved.config.stages
            groups.append(
                container.PlaneGroup(
                    channels, first, resolved.name, resolved.sha256, ARITHMETIC_EXACT
                )
            )
    finally:
        lattice.release()  # the index tables never outlive the image
    # by tile before plane group, so that a row of tiles is whole before the next one starts
    chunks.sort(key=lambda c: (stream_rank(c.kind, stages[c.group]), c.tile, c.group))
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


def _resolve_model(channels: int, model: str | LoadedModel | None, mode: str) -> Model:
    """The model a plane group of ``channels`` is coded with: loaded (torch) only when a
    network will run."""
    if model is not None and not isinstance(model, str):
        if model.config.in_channels != channels:
            raise ValueError(f"model {model.name} codes {model.config.in_channels} channels")
        return model
    info = describe_model(model) if model is not None else None
    if info is None or info.config.in_channels != channels:
        info = describe_model(default_model_name(channels))
    if mode == "predictive":
        return info
    flow_runtime(f"mode '{mode}' (the flow; idfc --progressive, -e 2)", requested())
    from ..flow.loading import load_model

    return load_model(info)


class _GroupEncoder:
    """The chunks of one plane group (its tiles in the group's own numbering, group 0)."""

    def __init__(
        self,
        plane: np.ndarray,
        model: Model,
        tile_size: int,
        mode: str,
        stats: EncodeStats,
        ticker: _Ticker,
    ) -> None:
        self.plane, self.model, self.mode = plane, model, mode
        self.stats, self.ticker = stats, ticker
        self.side, self.tile_size = model.config.granularity, tile_size
        self.tiles = tiles_of(plane.shape[0], plane.shape[1], tile_size)
        # in "predictive" mode the coarse level comes first and the tiles leave its pixels out
        self.stride = 0
        if mode == "predictive":
            self.stride = coarse_stride(plane.shape[0], plane.shape[1], tile_size)
        self.out: list[container.Chunk] = []

    def chunks(self) -> list[container.Chunk]:
        if self.stride:
            self._coarse_level()
        self.stats.tiles += len(self.tiles)
        coreless = [tile for tile in self.tiles if not core_shape(tile, self.side)[0]]
        by_region = coreless if self.mode != "predictive" else self.tiles
        for tile, (kind, payload) in zip(
            by_region, map_tiles(self._region, by_region), strict=True
        ):
            if kind == REGION_KIND:
                self._add_region(tile, payload)
            else:
                self._add_margin(tile, payload)
            self.ticker.tick()
        done = {tile.index for tile in by_region}
        flow_tiles = [tile for tile in self.tiles if tile.index not in done]
        if flow_tiles:
            self._flow_tiles(flow_tiles)
        return self.out

    def _coarse_level(self) -> None:
        """The coarse level's chunks: ``plane[::F, ::F]`` in tiles, each a region payload."""
        coarse = np.ascontiguousarray(self.plane[:: self.stride, :: self.stride])
        tiles = coarse_tiles(self.plane.shape[0], self.plane.shape[1], self.tile_size)

        def code(tile: Tile) -> bytes:
            return RegionCoding([tile_of(coarse, tile)]).payload()

        for tile, payload in zip(tiles, map_tiles(code, tiles), strict=True):
            self.out.append(container.Chunk(0, COARSE_KIND, tile.index, payload))
            self.ticker.tick()

    def _region(self, tile: Tile) -> tuple[int, bytes]:
        """A tile coded without the flow (on a worker thread): its margin when it has no
        core, else its region payload."""
        if not core_shape(tile, self.side)[0]:
            return MARGIN_KIND, self._margin(tile)
        region = tile_of(self.plane, tile)
        return REGION_KIND, RegionCoding([region], stride=self.stride).payload()

    def _flow_tiles(self, flow_tiles: list[Tile]) -> None:
        from ..flow.coding import encode_batch
        from ..flow.loading import LoadedModel

        assert isinstance(self.model, LoadedModel)  # loaded for every mode but "predictive"
        self.stats.flow_tiles += len(flow_tiles)
        for batch in tile_batches(flow_tiles, self.side):
            for tile, (payloads, ideal) in zip(
                batch, encode_batch(self.model, self.plane, batch), strict=True
            ):
                margins = self._margin(tile)
                flow_size = sum(map(len, payloads)) + len(margins)
                region = self._region_if_smaller(tile, flow_size)
                if region is not None:
                    self._add_region(tile, region)
                else:
                    self.stats.flow_bytes += flow_size - len(margins)
                    self.stats.ideal_bits += ideal
                    stages = len(payloads)
                    for s, data in enumerate(payloads):
                        self.out.append(container.Chunk(0, stages - s, tile.index, data))
                    if margins:
                        self._add_margin(tile, margins)
                self.ticker.tick()

    def _region_if_smaller(self, tile: Tile, flow_size: int) -> bytes | None:
        """In "auto" mode, the tile's region payload if it is smaller than ``flow_size``."""
        # estimated here, tile by tile: kept for every tile until its flow batch had run,
        # the estimates held ~80 bytes per pixel of the image
        if self.mode != "auto":
            return None
        estimate = RegionCoding([tile_of(self.plane, tile)])
        if estimate.size >= REGION_TRY * flow_size:
            return None
        region = estimate.payload()
        return region if len(region) < flow_size else None

    def _margin(self, tile: Tile) -> bytes:
        if not margin_shapes(tile, self.side, self.plane.shape[2]):
            return b""
        return encode_regions(margins_of(self.plane, tile, self.side))

    def _add_region(self, tile: Tile, data: bytes) -> None:
        self.out.append(container.Chunk(0, REGION_KIND, tile.index, data))
        self.stats.region_tiles += 1

    def _add_margin(self, tile: Tile, data: bytes) -> None:
        self.out.append(container.Chunk(0, MARGIN_KIND, tile.index, data))
        self.stats.flow_bytes += len(data)
        self.stats.ideal_bits += 8 * len(data)
