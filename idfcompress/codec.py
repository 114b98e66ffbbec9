"""The codec: image planes -> tiles -> flow latents -> ANS streams -> .idf container, and back."""

from __future__ import annotations

import functools
import math
import struct
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import torch

from . import container, entropy, regions
from .distributions import (
    FIT_MIN_LOGSCALE,
    LOGSCALE_COUNT,
    LOGSCALE_MIN,
    LOGSCALE_STEP,
    MEAN_STEPS,
    PROB_TOTAL,
    fit_logistic,
    grid_ids,
    heaviest_fit_weight,
    logistic_indices,
    logistic_tables,
    mixture_table,
    quantize_weights,
)
from .errors import CorruptFile, ImageTooLarge, ModelError
from .flow import IntegerFlow, LogisticPrior, MixturePrior, Prior, StagedInverse, logistic_log_prob
from .imageio import CHANNELS, PixelImage
from .model_io import LoadedModel, default_model_name, load_model

DEFAULT_TILE_SIZE = 256
TILE_BATCH = 8  # tiles of one padded shape go through the networks in groups of this many
MAX_PIXELS = 1 << 28  # decoder guard against decompression bombs (override with max_pixels)
# The decoder's working set grows with the pixels of one batch of tiles (~0.5 KB per pixel
# with a 96-wide model): it refuses larger batches, a limit that grows with max_pixels.
MAX_BATCH_PIXELS = 1 << 21
_NO_CORES = 1 << 30  # the granularity of a group without flow chunks: no tile has a core
MAX_LATENT = 1 << 22  # latents beyond this magnitude never come from a valid encoder
# A core goes to the fallback only if its region payload is smaller than its flow streams.
# Making that payload costs ~25 ms per 256-px RGB tile, so it is only tried (with the filter
# zlib preferred) where its quick zlib stand-in is under this many times the flow streams
# (photos' stand-ins are ~1.4 times their flow streams; LZMA2 was 0.71-0.93 of the stand-in).
# At 1.3 instead, the encoder tried more tiles and took 40 % longer on astronaut for the same
# file.
RAW_TRY = 1.15
# Encoder efforts: 1 codes every core as a region payload, 2 also runs the flow on every
# core and keeps the smaller. The predictive region payloads of format 7 beat the flow on
# every core of 36 photographs (docs/DESIGN.md, "Effort"), so 1 is the default.
EFFORTS = (1, 2)
DEFAULT_EFFORT = 1
RAW_KIND = 0  # a tile's core as a region payload (the fallback)
MARGIN_KIND = 255  # the pixels of a tile outside its core, as a region payload
ARITHMETIC_EXACT = 2  # docs/FORMAT.md: integer networks carried exactly in float32
TOP_MIXTURE = 0  # first byte of a first-stage payload: the model's mixture tables follow
TOP_LOGISTIC = 1  # ... one grid logistic per channel (u8 g, then u16 q + 2**15 each) follows
_Q_BIAS = 1 << 15
_SHIFT = struct.Struct("<b")  # leading byte of a logistic-stage payload: the log-scale shift
SHIFT_SEARCH = (4, 2, 1)  # the encoder's steps towards a stage's best log-scale shift (+-7)

Progress = Callable[[int, int], None]
_F = TypeVar("_F", bound=Callable[..., Any])


def exact_arithmetic(function: _F) -> _F:
    """Run ``function`` with PyTorch's convolution algorithms that only multiply and add.

    The networks compute exactly (arithmetic 2, docs/FORMAT.md) under any thread count and
    instruction set as long as no convolution transforms its operands: NNPACK (Winograd,
    FFT) is switched off and TF32 is refused, for the duration of the call.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _guarded_calls, _saved_flags
        with _guard_lock:  # process-wide settings: restored once no codec call is running
            if not _guarded_calls:
                (nnpack,) = torch.backends.nnpack.set_flags(False)
                _saved_flags = (
                    nnpack,
                    torch.backends.cudnn.allow_tf32,
                    torch.backends.cuda.matmul.allow_tf32,
                )
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            _guarded_calls += 1
        try:
            return function(*args, **kwargs)
        finally:
            with _guard_lock:
                _guarded_calls -= 1
                if not _guarded_calls:
                    torch.backends.nnpack.set_flags(_saved_flags[0])
                    torch.backends.cudnn.allow_tf32 = _saved_flags[1]
                    torch.backends.cuda.matmul.allow_tf32 = _saved_flags[2]

    return wrapper  # type: ignore[return-value]


_guard_lock = threading.Lock()
_guarded_calls = 0
_saved_flags = (True, True, False)


@dataclass
class EncodeStats:
    """What an encode measured: real and ideal sizes, tiles coded by the fallback.

    ``flow_bytes`` and ``ideal_bits`` cover the payloads of the flow-coded cores (real
    size, and the model's ``-log2 P``) and every margin's payload (its real size in both);
    ``raw_tiles`` counts the cores stored by the fallback (filter + LZMA2, like margins).
    """

    subpixels: int = 0
    file_bytes: int = 0
    flow_bytes: int = 0
    ideal_bits: float = 0.0
    raw_tiles: int = 0
    tiles: int = 0

    @property
    def bits_per_subpixel(self) -> float:
        return 8.0 * self.file_bytes / max(self.subpixels, 1)

    @property
    def overhead(self) -> float:
        """Relative excess of the flow streams over the model's ideal code length."""
        return 8.0 * self.flow_bytes / self.ideal_bits - 1.0 if self.ideal_bits else 0.0


@dataclass(frozen=True)
class Tile:
    index: int
    y: int
    x: int
    height: int
    width: int


def tiles_of(height: int, width: int, size: int) -> list[Tile]:
    """Row-major tiles of side ``size`` covering the image (edge tiles are smaller)."""
    tiles = []
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


def margins_of(plane: np.ndarray, tile: Tile, granularity: int) -> list[np.ndarray]:
    """Views of the tile's margin regions in ``plane`` (see :func:`margin_shapes`)."""
    hc, wc = core_shape(tile, granularity)
    part = tile_of(plane, tile)
    return [part[:hc, wc:], part[hc:]]


def _put_margins(
    plane: np.ndarray, tile: Tile, granularity: int, regions: list[np.ndarray]
) -> None:
    for view, region in zip(margins_of(plane, tile, granularity), regions, strict=True):
        view[...] = region


def core_of(plane: np.ndarray, tile: Tile, granularity: int) -> np.ndarray:
    """A view of the tile's core in ``plane``."""
    hc, wc = core_shape(tile, granularity)
    return plane[tile.y : tile.y + hc, tile.x : tile.x + wc]


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


def _tile_tensor(plane: np.ndarray, tiles: list[Tile], granularity: int) -> torch.Tensor:
    """(B, C, H, W) float tensor of the tiles' cores (all of one shape)."""
    cores = np.stack([core_of(plane, t, granularity) for t in tiles])
    return torch.from_numpy(cores).permute(0, 3, 1, 2).float()


@lru_cache(maxsize=1)
def _logistic_tableset() -> entropy.TableSet:
    return entropy.TableSet(logistic_tables())


# Keyed by the flow object itself (weakly), never by id(): a new model could reuse an id.
_mixture_cache: weakref.WeakKeyDictionary[IntegerFlow, entropy.TableSet] = (
    weakref.WeakKeyDictionary()
)


def _mixture_tableset(flow: IntegerFlow) -> entropy.TableSet:
    key = flow
    if key not in _mixture_cache:
        logits, means, log_scales = (t.detach().double().numpy() for t in flow.mixture_parameters())
        cfg = flow.config
        tables = [
            mixture_table(logits[c], means[c], log_scales[c], cfg.top_low, cfg.top_high)
            for c in range(logits.shape[0])
        ]
        _mixture_cache[key] = entropy.TableSet(tables)
    return _mixture_cache[key]


_first_stage_floor_cache: weakref.WeakKeyDictionary[IntegerFlow, float] = (
    weakref.WeakKeyDictionary()
)


def _first_stage_floor(flow: IntegerFlow) -> float:
    """Fewest bits any first-stage symbol takes in an ANS stream.

    That is -log2 of the heaviest weight of the tables a first stage can use (the model's
    mixtures, the grid logistics a fitted first stage may pick), less 0.006 bit for the
    coder's rounding; 0 when nothing is left. A first-stage payload shorter than this many
    bits per latent (plus the coder's 64-bit state) cannot come from an encoder: such a
    chunk is refused before anything is allocated for the image (:func:`_check_tiles`).
    """
    key = flow
    if key not in _first_stage_floor_cache:
        tables = _mixture_tableset(flow)
        heaviest = max(int(quantize_weights(tables.table(c)).max()) for c in range(len(tables)))
        heaviest = max(heaviest, heaviest_fit_weight())
        _first_stage_floor_cache[key] = max(0.0, -math.log2(heaviest / PROB_TOTAL) - 0.006)
    return _first_stage_floor_cache[key]


def _fitted_streams(
    q: np.ndarray, g: np.ndarray, shape: tuple[int, ...]
) -> tuple[entropy.TableSet, np.ndarray, np.ndarray]:
    """Table set, ids and offsets, shaped (C, h, w), of a fitted first stage."""
    ids, offsets = grid_ids(q, g)
    c, h, w = shape[1:]
    return (
        _logistic_tableset(),
        np.ascontiguousarray(np.broadcast_to(ids[:, None, None], (c, h, w))),
        np.ascontiguousarray(np.broadcast_to(offsets[:, None, None], (c, h, w))),
    )


def _first_stage(
    flow: IntegerFlow, z: torch.Tensor
) -> tuple[bytes, entropy.TableSet, np.ndarray, np.ndarray, float]:
    """How one core's first stage ``z`` (1, C, h, w) is coded: the payload's leading bytes,
    the table set, ids and offsets (C, h, w), and the ideal bits (leading bytes included).

    The model's mixtures know nothing of the tile; a grid logistic per channel fitted to the
    tile (``distributions.fit_logistic``) costs 3 bytes per channel and is used where its
    ideal size is smaller.
    """
    mixture = MixturePrior(tuple(z.shape))
    tableset, ids, offsets = _stream_parameters(flow, mixture)
    head = bytes([TOP_MIXTURE])
    choice = (head, tableset, ids[0], offsets[0], 8.0 + _mixture_bits(flow, z))
    q, g, _ = fit_logistic(z[0].to(torch.int64).numpy().reshape(z.shape[1], -1))
    if np.abs(q).max() < _Q_BIAS:
        head = bytes([TOP_LOGISTIC]) + g.astype(np.uint8).tobytes()
        head += (q + _Q_BIAS).astype("<u2").tobytes()
        per_channel = (1, -1, 1, 1)
        bits = 8.0 * len(head) + _grid_bits(z, q.reshape(per_channel), g.reshape(per_channel))[0]
        if bits < choice[4]:
            choice = (head, *_fitted_streams(q, g, tuple(z.shape)), bits)
    return choice


def _first_stage_streams(
    flow: IntegerFlow, payload: bytes | memoryview, shape: tuple[int, ...], tile: int
) -> tuple[entropy.TableSet, np.ndarray, np.ndarray, bytes | memoryview]:
    """Table set, ids, offsets (C, h, w) and ANS stream of a first-stage ``payload`` for
    latents ``shape`` (1, C, h, w); ``CorruptFile`` if its leading bytes are invalid."""
    c = shape[1]
    kind = payload[0] if len(payload) else None
    if kind == TOP_MIXTURE:
        tableset, ids, offsets = _stream_parameters(flow, MixturePrior(shape))
        return tableset, ids[0], offsets[0], payload[1:]
    if kind == TOP_LOGISTIC and len(payload) >= 1 + 3 * c:
        g = np.frombuffer(payload[1 : 1 + c], np.uint8).astype(np.int64)
        q = np.frombuffer(payload[1 + c : 1 + 3 * c], "<u2").astype(np.int64) - _Q_BIAS
        if g.min() >= FIT_MIN_LOGSCALE and g.max() < LOGSCALE_COUNT:
            return (*_fitted_streams(q, g, shape), payload[1 + 3 * c :])
    raise CorruptFile(f"corrupt .idf file: tile {tile} has an invalid first-stage prior")


def core_ideal_bits(flow: IntegerFlow, x: torch.Tensor) -> float:
    """The ideal bits the codec's flow streams take for a core ``x`` (1, C, H, W)."""
    bits = 0.0
    for z, prior in flow.coding_stages(x):
        if isinstance(prior, MixturePrior):
            bits += _first_stage(flow, z)[4]
        else:
            bits += 8.0 + float(_scale_shifts(z, *_grid_point(prior))[1].sum())
    return bits


def _stream_parameters(
    flow: IntegerFlow, prior: Prior
) -> tuple[entropy.TableSet, np.ndarray, np.ndarray]:
    """Table set, table ids and offsets (each shaped like the latents) of a stage's prior."""
    if isinstance(prior, MixturePrior):
        b, c, h, w = prior.shape
        ids = np.broadcast_to(np.arange(c, dtype=np.int32)[None, :, None, None], prior.shape)
        offsets = np.full(prior.shape, flow.config.top_low, dtype=np.int64)
        return _mixture_tableset(flow), np.ascontiguousarray(ids), offsets
    return _logistic_tableset(), *grid_ids(*_grid_point(prior))


def _grid_point(prior: LogisticPrior) -> tuple[np.ndarray, np.ndarray]:
    """The grid indices ``(q, g)`` of a logistic prior's latents (``logistic_indices``)."""
    return logistic_indices(prior.mean.double().numpy(), prior.log_scale.double().numpy())


def _mixture_bits(flow: IntegerFlow, z: torch.Tensor) -> float:
    """Ideal bits of first-stage latents ``z`` under the model's mixtures."""
    return float(-flow.mixture_log_prob(z).double().sum() / np.log(2.0))


def _moved(g: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """Log-scale indices ``g`` moved by a stage's ``shift`` (broadcast), kept on the grid."""
    return np.clip(g + shift, 0, LOGSCALE_COUNT - 1)


def _shifted(q: np.ndarray, g: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Table ids and offsets of the grid logistics ``(q, g)`` with every log-scale index
    moved by ``shift``."""
    return grid_ids(q, _moved(g, shift))


def _grid_bits(z: torch.Tensor, q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Ideal bits, per tile (first axis), of latents ``z`` under the grid logistics (q, g)
    (arrays shaped like ``z`` or broadcasting to it)."""
    mean = torch.from_numpy(q).float() / MEAN_STEPS
    log_scale = torch.from_numpy(LOGSCALE_MIN + g * LOGSCALE_STEP).float()
    bits = logistic_log_prob(z, mean, log_scale).double().sum(dim=(1, 2, 3))
    return (-bits / math.log(2.0)).numpy()


def _scale_shifts(z: torch.Tensor, q: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tile of a logistic stage: the log-scale shift its payload gets and the ideal bits
    of the stage with it.

    The prior network knows only what photographs it was trained on; a tile that is smoother
    or noisier than them codes smaller with all its scales moved by the same step. The search
    (steps ``SHIFT_SEARCH``) compares the ideal bits of a quarter of the latents (every other
    row and column), which is enough to choose and a quarter of the work.
    """
    zs, qs, gs = z[:, :, ::2, ::2], q[:, :, ::2, ::2], g[:, :, ::2, ::2]
    best = np.zeros(z.shape[0], dtype=np.int64)
    bits = _grid_bits(zs, qs, gs)
    for step in SHIFT_SEARCH:
        centre = best.copy()
        for candidate in (centre - step, centre + step):
            trial = _grid_bits(zs, qs, _moved(gs, candidate[:, None, None, None]))
            better = trial < bits
            best[better], bits[better] = candidate[better], trial[better]
    return best, _grid_bits(z, q, _moved(g, best[:, None, None, None]))


def _logistic_stage(payload: bytes | memoryview, tile: int) -> tuple[int, bytes | memoryview]:
    """The log-scale shift and the ANS stream of a logistic-stage ``payload``."""
    if not len(payload):
        raise CorruptFile(f"corrupt .idf file: tile {tile} has an empty flow stage")
    return _SHIFT.unpack_from(payload)[0], payload[1:]


@dataclass
class _GroupPlan:
    channels: int
    first: int
    model: LoadedModel
    chunks: list[container.Chunk] = field(default_factory=list)


def _resolve_model(channels: int, model: str | LoadedModel | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        if model.flow.config.in_channels != channels:
            raise ValueError(f"model {model.name} codes {model.flow.config.in_channels} channels")
        return model
    if model is not None:
        loaded = load_model(model)
        if loaded.flow.config.in_channels == channels:
            return loaded
    return load_model(default_model_name(channels))


def plane_groups(mode: str) -> list[tuple[int, int]]:
    """(channels, first channel) of the groups a mode is coded as: colour apart from alpha."""
    return {"L": [(1, 0)], "LA": [(1, 0), (1, 1)], "RGB": [(3, 0)], "RGBA": [(3, 0), (1, 3)]}[mode]


@exact_arithmetic
@torch.no_grad()
def _encode_group(
    plane: np.ndarray,
    loaded: LoadedModel,
    tile_size: int,
    allow_raw: bool,
    effort: int,
    stats: EncodeStats,
    progress: Progress | None,
    done: list[int],
    total: int,
) -> list[container.Chunk]:
    flow = loaded.flow
    stages = flow.config.stages
    side = flow.config.granularity
    tiles = tiles_of(plane.shape[0], plane.shape[1], tile_size)
    chunks: list[container.Chunk] = []
    estimates: dict[int, regions.QuickEstimate] = {}
    flow_tiles = []

    def tile_done() -> None:
        done[0] += 1
        if progress:
            progress(done[0], total)

    def margin(tile: Tile) -> bytes:
        if not margin_shapes(tile, side, plane.shape[2]):
            return b""
        return regions.encode_regions(margins_of(plane, tile, side))

    for tile in tiles:
        stats.tiles += 1
        if not core_shape(tile, side)[0]:
            _add_margin(chunks, stats, tile, margin(tile))
            tile_done()
            continue
        if allow_raw:
            estimate = estimates[tile.index] = regions.QuickEstimate([tile_of(plane, tile)])
            if effort < 2:
                chunks.append(container.Chunk(0, RAW_KIND, tile.index, estimate.payload()))
                stats.raw_tiles += 1
                tile_done()
                continue
        flow_tiles.append(tile)
    for batch in tile_batches(flow_tiles, side):
        x = _tile_tensor(plane, batch, side)
        payloads: list[list[bytes]] = [[] for _ in batch]
        ideal = np.zeros(len(batch))
        for z, prior in flow.coding_stages(x):
            if float(z.abs().max()) > MAX_LATENT:
                raise ModelError(f"model {loaded.name} produced out-of-range latents")
            values = z.to(torch.int64).numpy()
            if isinstance(prior, MixturePrior):
                for i in range(len(batch)):
                    head, tableset, ids, offsets, bits = _first_stage(flow, z[i : i + 1])
                    payloads[i].append(head + entropy.encode(values[i], ids, offsets, tableset))
                    ideal[i] += bits
                continue
            q, g = _grid_point(prior)
            shifts, bits = _scale_shifts(z, q, g)
            for i in range(len(batch)):
                ids, offsets = _shifted(q[i], g[i], int(shifts[i]))
                stream = entropy.encode(values[i], ids, offsets, _logistic_tableset())
                payloads[i].append(_SHIFT.pack(shifts[i]) + stream)
                ideal[i] += 8.0 + bits[i]
        for i, tile in enumerate(batch):
            margins = margin(tile)
            flow_size = sum(map(len, payloads[i])) + len(margins)
            raw = None
            estimate = estimates.get(tile.index)
            if estimate is not None and estimate.size < RAW_TRY * flow_size:
                raw = estimate.payload()
            if raw is not None and len(raw) < flow_size:
                chunks.append(container.Chunk(0, RAW_KIND, tile.index, raw))
                stats.raw_tiles += 1
            else:
                stats.flow_bytes += flow_size - len(margins)
                stats.ideal_bits += ideal[i]
                for s, payload in enumerate(payloads[i]):
                    chunks.append(container.Chunk(0, stages - s, tile.index, payload))
                if margins:
                    _add_margin(chunks, stats, tile, margins)
            tile_done()
    return chunks


def _add_margin(
    chunks: list[container.Chunk], stats: EncodeStats, tile: Tile, payload: bytes
) -> None:
    chunks.append(container.Chunk(0, MARGIN_KIND, tile.index, payload))
    stats.flow_bytes += len(payload)
    stats.ideal_bits += 8 * len(payload)


def _stream_order(chunk: container.Chunk, stages: dict[int, int]) -> tuple[int, int, int]:
    rank = 0 if chunk.kind in (RAW_KIND, MARGIN_KIND) else stages[chunk.group] - chunk.kind
    return (rank, chunk.group, chunk.tile)


def encode(
    image: PixelImage,
    *,
    model: str | LoadedModel | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    allow_raw: bool = True,
    effort: int = DEFAULT_EFFORT,
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """Compress an image to .idf bytes; also returns what was measured on the way.

    ``model`` is a model name or path (the default model of the image's channel count when
    it codes another count), or a :class:`LoadedModel` used as given (e.g. during training).
    ``allow_raw`` lets cores be coded as region payloads (without it every core goes
    through the flow); ``effort`` 1 codes every core that way, 2 also runs the flow on every
    core and keeps the smaller coding.
    """
    if tile_size < 8 or tile_size % 8 or tile_size > 65528:
        raise ValueError("tile size must be a multiple of 8 between 8 and 65528")
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {', '.join(map(str, EFFORTS))}")
    pixels = image.pixels
    stats = EncodeStats(subpixels=int(pixels.size))
    groups = []
    chunks: list[container.Chunk] = []
    stage_counts: dict[int, int] = {}
    specs = plane_groups(image.mode)
    total = len(specs) * len(tiles_of(image.height, image.width, tile_size))
    done = [0]
    for g, (channels, first) in enumerate(specs):
        loaded = _resolve_model(channels, model)
        plane = pixels[:, :, first : first + channels]
        for chunk in _encode_group(
            plane, loaded, tile_size, allow_raw, effort, stats, progress, done, total
        ):
            chunks.append(container.Chunk(g, chunk.kind, chunk.tile, chunk.payload))
        stage_counts[g] = loaded.flow.config.stages
        groups.append(
            container.PlaneGroup(channels, first, loaded.name, loaded.sha256, ARITHMETIC_EXACT)
        )
    chunks.sort(key=lambda c: _stream_order(c, stage_counts))
    header = container.Header(
        width=image.width,
        height=image.height,
        mode=image.mode,
        source_mode=image.source_mode,
        tile_size=tile_size,
        pixel_sha256=container.pixel_digest(
            image.width, image.height, image.mode, np.ascontiguousarray(pixels)
        ),
        groups=groups,
        metadata=dict(image.metadata),
    )
    data = container.write(header, chunks)
    stats.file_bytes = len(data)
    return data, stats


def uses_flow(entries: dict[tuple[int, int, int], container.ChunkEntry], g: int) -> bool:
    """Whether plane group ``g`` has flow chunks; a group without them decodes without its
    model (every tile a raw tile, or a margin chunk for a tile smaller than any core)."""
    return any(gg == g and kind not in (RAW_KIND, MARGIN_KIND) for gg, _, kind in entries)


def stage_count(
    header: container.Header, entries: dict[tuple[int, int, int], container.ChunkEntry], g: int
) -> int:
    """The stages of plane group ``g``: its model's, or 1 when it has no flow chunks."""
    return _model_for(header.groups[g]).flow.config.stages if uses_flow(entries, g) else 1


def _model_for(group: container.PlaneGroup) -> LoadedModel:
    try:
        loaded = load_model(group.model_name)
    except ModelError as exc:
        raise ModelError(f"this file needs model '{group.model_name}': {exc}") from None
    if loaded.sha256 != group.model_sha256:
        raise ModelError(
            f"this file needs model '{group.model_name}' "
            f"with sha256 {group.model_sha256.hex()[:16]}…, "
            f"but the installed one has {loaded.sha256.hex()[:16]}…"
        )
    if loaded.flow.config.in_channels != group.channels:
        raise CorruptFile(
            f"model '{group.model_name}' codes {loaded.flow.config.in_channels} channels, "
            f"the file says {group.channels}"
        )
    if group.arithmetic != ARITHMETIC_EXACT:
        raise CorruptFile(f"unknown arithmetic id {group.arithmetic}")
    return loaded


class _BatchDecoder:
    """One batch of flow-coded cores of a plane group, decoded stage by stage (coarsest
    first).

    The exact decoder (:func:`_decode_group`) and the progressive decoder
    (``idfcompress.progressive``) both go through this class, so they run the same
    batches, priors and tables; ``staged`` holds the inverse flow after the stages decoded
    so far.
    """

    def __init__(
        self,
        flow: IntegerFlow,
        g: int,
        batch: list[Tile],
        entries: dict[tuple[int, int, int], container.ChunkEntry],
    ) -> None:
        self.flow = flow
        self.group = g
        self.batch = batch
        self.entries = entries
        self.stages = flow.config.stages
        self.staged = StagedInverse(
            flow, len(batch), *core_shape(batch[0], flow.config.granularity)
        )

    @exact_arithmetic
    @torch.no_grad()
    def parameters(
        self, staged: StagedInverse
    ) -> tuple[Prior, entropy.TableSet, np.ndarray, np.ndarray]:
        """Prior, table set, table ids and offsets of the next stage of ``staged``."""
        prior = staged.prior()
        return (prior, *_stream_parameters(self.flow, prior))

    @exact_arithmetic
    @torch.no_grad()
    def decode_stage(self, data: bytes | memoryview) -> None:
        """Entropy-decode the next stage of every tile from ``data`` and push it."""
        s = self.staged.stage
        prior = self.staged.prior()
        first = isinstance(prior, MixturePrior)  # its tables are in each tile's payload
        if first:
            z = np.empty(prior.shape, dtype=np.int64)
        else:
            q, g = _grid_point(prior)
            z = np.empty(q.shape, dtype=np.int64)
        for i, tile in enumerate(self.batch):
            entry = self.entries.get((self.group, tile.index, self.stages - s))
            if entry is None:
                raise CorruptFile(f"tile {tile.index} lacks stage {self.stages - s}")
            payload = container.payload(data, entry)
            if first:
                shape = (1, *prior.shape[1:])
                tables, tile_ids, tile_offsets, stream = _first_stage_streams(
                    self.flow, payload, shape, tile.index
                )
                z[i] = entropy.decode(stream, tile_ids, tile_offsets, tables)
            else:
                shift, stream = _logistic_stage(payload, tile.index)
                ids, offsets = _shifted(q[i], g[i], shift)
                z[i] = entropy.decode(stream, ids, offsets, _logistic_tableset())
        if np.abs(z).max(initial=0) > MAX_LATENT:
            raise CorruptFile("corrupt data: decoded latents out of range")
        self.staged.push(torch.from_numpy(z).float())

    @torch.no_grad()
    def write_pixels(self, staged: StagedInverse, plane: np.ndarray, exact: bool = True) -> None:
        """Put the cores of a complete ``staged`` into ``plane``.

        ``exact``: out-of-range pixels mean corrupt data; otherwise (a preview) they are
        clipped to 0..255.
        """
        pixels = staged.pixels().permute(0, 2, 3, 1).numpy()
        for i, tile in enumerate(self.batch):
            part = pixels[i]
            if exact:
                if not np.isfinite(part).all() or part.min() < 0 or part.max() > 255:
                    raise CorruptFile("corrupt data: decoded pixels out of range")
            else:
                part = np.clip(np.nan_to_num(part), 0, 255)
            core_of(plane, tile, self.flow.config.granularity)[...] = part.astype(np.uint8)


def _group_plane(header: container.Header, g: int, out: np.ndarray) -> np.ndarray:
    """The view of ``out`` holding plane group ``g``'s channels."""
    group = header.groups[g]
    return out[:, :, group.first_channel : group.first_channel + group.channels]


def _batch_decoders(
    data: bytes | memoryview,
    header: container.Header,
    g: int,
    entries: dict[tuple[int, int, int], container.ChunkEntry],
    out: np.ndarray,
) -> Iterator[_BatchDecoder]:
    """The batches of flow-coded cores of plane group ``g``, in coding order, each ready for
    its first stage.

    The raw tiles and the tiles' margins are decoded into ``out`` first (they come with the
    first stage). Raw tiles stay out of the batches: exact arithmetic gives every core the
    same numbers in any batch, so the decoder need not compute their latents.
    """
    flow = _model_for(header.groups[g]).flow if uses_flow(entries, g) else None
    plane = _group_plane(header, g, out)
    side = flow.config.granularity if flow is not None else _NO_CORES
    tiles = tiles_of(header.height, header.width, header.tile_size)
    flow_tiles = []
    for tile in tiles:
        raw = entries.get((g, tile.index, RAW_KIND))  # the whole tile (checked by _decode_plan)
        if raw is not None:
            shape = [(tile.height, tile.width, plane.shape[2])]
            tile_of(plane, tile)[...] = _decode_region_chunk(data, raw, tile, shape)[0]
            continue
        shapes = margin_shapes(tile, side, plane.shape[2])
        if shapes:
            entry = entries[(g, tile.index, MARGIN_KIND)]
            _put_margins(plane, tile, side, _decode_region_chunk(data, entry, tile, shapes))
        if core_shape(tile, side)[0]:
            flow_tiles.append(tile)
    for batch in tile_batches(flow_tiles, side):
        assert flow is not None  # tiles with a core exist only beside flow chunks
        yield _BatchDecoder(flow, g, batch, entries)


def _decode_group(
    data: bytes | memoryview,
    header: container.Header,
    g: int,
    entries: dict[tuple[int, int, int], container.ChunkEntry],
    out: np.ndarray,
) -> None:
    plane = _group_plane(header, g, out)
    for decoder in _batch_decoders(data, header, g, entries, out):
        for _ in range(decoder.stages):
            decoder.decode_stage(data)
        decoder.write_pixels(decoder.staged, plane)


def _decode_region_chunk(
    data: bytes | memoryview,
    entry: container.ChunkEntry,
    tile: Tile,
    shapes: list[tuple[int, int, int]],
) -> list[np.ndarray]:
    """The regions of a raw-tile or margin chunk of ``tile``."""
    what = "region payload" if entry.kind == RAW_KIND else "margin"
    try:
        return regions.decode_regions(container.payload(data, entry), shapes)
    except CorruptFile as exc:
        raise CorruptFile(f"corrupt {what} of tile {tile.index}: {exc}") from None


def _check_chunks(
    header: container.Header, table: list[container.ChunkEntry]
) -> dict[tuple[int, int, int], container.ChunkEntry]:
    entries: dict[tuple[int, int, int], container.ChunkEntry] = {}
    for entry in table:
        key = (entry.group, entry.tile, entry.kind)
        if key in entries:
            raise CorruptFile(f"duplicate chunk for tile {entry.tile}")
        entries[key] = entry
    return entries


def _check_tiles(
    header: container.Header, entries: dict[tuple[int, int, int], container.ChunkEntry]
) -> None:
    """Every tile has the chunks its core and margin need and no others; first-stage chunks
    are long enough for their cores (forged sizes, see :func:`_first_stage_floor`)."""
    tiles = tiles_of(header.height, header.width, header.tile_size)
    for g, group in enumerate(header.groups):
        kinds: dict[int, set[int]] = {}
        for gg, index, kind in entries:
            if gg == g:
                kinds.setdefault(index, set()).add(kind)
        if not uses_flow(entries, g):
            for tile in tiles:
                if kinds.get(tile.index) not in ({RAW_KIND}, {MARGIN_KIND}):
                    raise CorruptFile(
                        f"corrupt .idf file: tile {tile.index} needs one raw or margin chunk"
                    )
            continue
        flow = _model_for(group).flow
        floor, first, side = _first_stage_floor(flow), flow.config.stages, flow.config.granularity
        stage_kinds = set(range(1, first + 1))
        for tile in tiles:
            have = kinds.get(tile.index, set())
            hc, wc = core_shape(tile, side)
            if RAW_KIND in have:
                if not hc or have != {RAW_KIND}:
                    raise CorruptFile(
                        f"corrupt .idf file: tile {tile.index} has a raw chunk and other "
                        "chunks, or is too small for one"
                    )
                continue
            has_margin = bool(margin_shapes(tile, side, group.channels))
            if has_margin != (MARGIN_KIND in have):
                word = "lacks its" if has_margin else "has an unexpected"
                raise CorruptFile(f"corrupt .idf file: tile {tile.index} {word} margin chunk")
            if not hc and have - {MARGIN_KIND}:
                raise CorruptFile(
                    f"corrupt .idf file: tile {tile.index} is too small for the flow "
                    "but has flow or raw chunks"
                )
            if hc and not stage_kinds <= have:
                missing = min(stage_kinds - have)
                raise CorruptFile(f"corrupt .idf file: tile {tile.index} lacks stage {missing}")
            entry = entries.get((g, tile.index, first))
            if entry is None or floor == 0:
                continue
            symbols = flow.mixture_channels * (hc // side) * (wc // side)
            if 8 * entry.length + 64 < floor * symbols:
                raise CorruptFile(
                    f"corrupt .idf file: the first stage of tile {tile.index} is too short "
                    f"for a {wc}x{hc} core"
                )


def _decode_plan(
    header: container.Header, table: list[container.ChunkEntry], max_pixels: int | None
) -> dict[tuple[int, int, int], container.ChunkEntry]:
    """Checks shared by every decoder once the header is known; the chunks by key."""
    if max_pixels is not None and header.width * header.height > max_pixels:
        raise ImageTooLarge(
            f"image of {header.width}x{header.height} exceeds the limit of {max_pixels} pixels"
        )
    tile_h, tile_w = min(header.tile_size, header.height), min(header.tile_size, header.width)
    batch = min(TILE_BATCH, header.tile_count) * tile_h * tile_w
    if max_pixels is not None:  # checked before anything is allocated for the tiles
        limit = max(MAX_BATCH_PIXELS, max_pixels * MAX_BATCH_PIXELS // MAX_PIXELS)
        if batch > limit:
            raise ImageTooLarge(
                f"tiles of {tile_w}x{tile_h} pixels need too much memory to decode "
                f"({batch} pixels per batch; the limit is {limit}, raise max_pixels)"
            )
    entries = _check_chunks(header, table)
    expected_tiles = header.tile_count
    for g in range(len(header.groups)):
        tiles_here = {t for (gg, t, _) in entries if gg == g}
        if len(tiles_here) != expected_tiles:
            raise CorruptFile(
                f"plane group {g} has chunks for {len(tiles_here)} of {expected_tiles} tiles"
            )
    _check_tiles(header, entries)
    return entries


def _verified(header: container.Header, out: np.ndarray) -> PixelImage:
    """The decoded image, once its pixels match the file's SHA-256."""
    digest = container.pixel_digest(
        header.width, header.height, header.mode, np.ascontiguousarray(out)
    )
    if digest != header.pixel_sha256:
        raise CorruptFile("checksum mismatch: the decoded image differs from the original")
    return PixelImage(out, header.mode, header.source_mode, dict(header.metadata))


@exact_arithmetic
def decode(data: bytes | memoryview, *, max_pixels: int | None = MAX_PIXELS) -> PixelImage:
    """Decompress .idf bytes; the result is verified against the stored checksum."""
    header, table = container.read_header(data)
    end = table[-1].offset + table[-1].length if table else container.header_size_needed(data)
    if memoryview(data).nbytes > end:
        raise CorruptFile(f"corrupt .idf file: {memoryview(data).nbytes - end} bytes after the end")
    entries = _decode_plan(header, table, max_pixels)
    try:
        out = np.zeros((header.height, header.width, CHANNELS[header.mode]), dtype=np.uint8)
    except MemoryError:
        raise ImageTooLarge(
            f"not enough memory for an image of {header.width}x{header.height}"
        ) from None
    for g in range(len(header.groups)):
        _decode_group(data, header, g, entries, out)
    return _verified(header, out)
