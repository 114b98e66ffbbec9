"""Flow stages -> latents: how the payloads of a batch of tile cores become latents again,
stage by stage, and the cores' pixels (the flow's encoder is retired; its files decode).

Payload layouts are in docs/FORMAT.md ("Flow stages"): a first stage leads with a byte that
says whether the model's mixtures or fitted grid logistics code it; every other stage leads
with a log-scale shift byte.
"""

from __future__ import annotations

import functools
import math
import struct
import threading
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import torch

from ..entropy import ans
from ..entropy.tables import (
    FIT_MIN_LOGSCALE,
    LOGSCALE_COUNT,
    PROB_TOTAL,
    grid_ids,
    heaviest_fit_weight,
    logistic_indices,
    logistic_tables,
    mixture_table,
    quantize_weights,
)
from ..errors import CorruptFile, ModelError
from ..format.container import ChunkEntry, PlaneGroup, payload
from ..format.layout import (
    ARITHMETIC_EXACT,
    TOP_LOGISTIC,
    TOP_MIXTURE,
    ChunkKey,
    Tile,
    core_of,
    core_shape,
)
from .loading import LoadedModel, load_verified
from .model import IntegerFlow, LogisticPrior, MixturePrior, Prior, StagedInverse
from .store import file_sha256, find_model

MAX_LATENT = 1 << 22  # latents beyond this magnitude never come from a valid encoder
_Q_BIAS = 1 << 15
_SHIFT = struct.Struct("<b")  # leading byte of a logistic-stage payload: the log-scale shift

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


def set_threads(threads: int) -> None:
    """The CPU threads the networks use (the bytes are the same for any count)."""
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ models


def model_for(group: PlaneGroup) -> LoadedModel:
    """The installed model a plane group names, once its SHA-256 matches the file's;
    ``ModelError`` otherwise, ``CorruptFile`` for a group its model cannot code.

    The name is only looked up in the model folders (never opened as a path), and the
    weights file is hashed before anything in it is parsed or built: a model file that is
    not the one the group names is refused whatever its config says."""
    try:
        path = find_model(group.model_name)
        sha256 = file_sha256(path)
    except (ModelError, OSError) as exc:
        raise ModelError(f"this file needs model '{group.model_name}': {exc}") from None
    if sha256 != group.model_sha256:
        raise ModelError(
            f"this file needs model '{group.model_name}' "
            f"with sha256 {group.model_sha256.hex()[:16]}…, "
            f"but the installed one has {sha256.hex()[:16]}…"
        )
    try:  # builds from the same bytes it hashes again, so the model is the one checked
        loaded = load_verified(path, group.model_sha256, group.model_name)
    except ModelError as exc:
        raise ModelError(f"this file needs model '{group.model_name}': {exc}") from None
    if loaded.flow.config.in_channels != group.channels:
        raise CorruptFile(
            f"model '{group.model_name}' codes {loaded.flow.config.in_channels} channels, "
            f"the file says {group.channels}"
        )
    if group.arithmetic != ARITHMETIC_EXACT:
        raise CorruptFile(f"unknown arithmetic id {group.arithmetic}")
    return loaded


# ------------------------------------------------------------------------------ tables


@lru_cache(maxsize=1)
def logistic_tableset() -> ans.TableSet:
    """The grid logistics every logistic stage is coded with."""
    return ans.TableSet(logistic_tables())


# Keyed by the flow object itself (weakly), never by id(): a new model could reuse an id.
_mixture_cache: weakref.WeakKeyDictionary[IntegerFlow, ans.TableSet] = weakref.WeakKeyDictionary()


def mixture_tableset(flow: IntegerFlow) -> ans.TableSet:
    """The model's first-stage mixtures, one table per channel."""
    key = flow
    if key not in _mixture_cache:
        logits, means, log_scales = (t.detach().double().numpy() for t in flow.mixture_parameters())
        cfg = flow.config
        tables = [
            mixture_table(logits[c], means[c], log_scales[c], cfg.top_low, cfg.top_high)
            for c in range(logits.shape[0])
        ]
        _mixture_cache[key] = ans.TableSet(tables)
    return _mixture_cache[key]


_first_stage_floor_cache: weakref.WeakKeyDictionary[IntegerFlow, float] = (
    weakref.WeakKeyDictionary()
)


def first_stage_floor(flow: IntegerFlow) -> float:
    """Fewest bits any first-stage symbol takes in an ANS stream.

    That is -log2 of the heaviest weight of the tables a first stage can use (the model's
    mixtures, the grid logistics a fitted first stage may pick), less 0.006 bit for the
    coder's rounding; 0 when nothing is left. A first-stage payload shorter than this many
    bits per latent (plus the coder's 64-bit state) cannot come from an encoder: the
    decoder refuses such a chunk before anything is allocated for the image.
    """
    key = flow
    if key not in _first_stage_floor_cache:
        tables = mixture_tableset(flow)
        heaviest = max(int(quantize_weights(tables.table(c)).max()) for c in range(len(tables)))
        heaviest = max(heaviest, heaviest_fit_weight())
        _first_stage_floor_cache[key] = max(0.0, -math.log2(heaviest / PROB_TOTAL) - 0.006)
    return _first_stage_floor_cache[key]


def _fitted_streams(
    q: np.ndarray, g: np.ndarray, shape: tuple[int, ...]
) -> tuple[ans.TableSet, np.ndarray, np.ndarray]:
    """Table set, ids and offsets, shaped (C, h, w), of a fitted first stage."""
    ids, offsets = grid_ids(q, g)
    c, h, w = shape[1:]
    return (
        logistic_tableset(),
        np.ascontiguousarray(np.broadcast_to(ids[:, None, None], (c, h, w))),
        np.ascontiguousarray(np.broadcast_to(offsets[:, None, None], (c, h, w))),
    )


def stream_parameters(
    flow: IntegerFlow, prior: Prior
) -> tuple[ans.TableSet, np.ndarray, np.ndarray]:
    """Table set, table ids and offsets (each shaped like the latents) of a stage's prior."""
    if isinstance(prior, MixturePrior):
        ids = np.broadcast_to(
            np.arange(prior.shape[1], dtype=np.int32)[None, :, None, None], prior.shape
        )
        offsets = np.full(prior.shape, flow.config.top_low, dtype=np.int64)
        return mixture_tableset(flow), np.ascontiguousarray(ids), offsets
    return logistic_tableset(), *grid_ids(*grid_point(prior))


def grid_point(prior: LogisticPrior) -> tuple[np.ndarray, np.ndarray]:
    """The grid indices ``(q, g)`` of a logistic prior's latents (``logistic_indices``)."""
    return logistic_indices(prior.mean.double().numpy(), prior.log_scale.double().numpy())


def first_stage_streams(
    flow: IntegerFlow, data: bytes | memoryview, shape: tuple[int, ...], tile: int
) -> tuple[ans.TableSet, np.ndarray, np.ndarray, bytes | memoryview]:
    """Table set, ids, offsets (C, h, w) and ANS stream of a first-stage payload ``data`` for
    latents ``shape`` (1, C, h, w); ``CorruptFile`` if its leading bytes are invalid."""
    c = shape[1]
    kind = data[0] if len(data) else None
    if kind == TOP_MIXTURE:
        tableset, ids, offsets = stream_parameters(flow, MixturePrior(shape))
        return tableset, ids[0], offsets[0], data[1:]
    if kind == TOP_LOGISTIC and len(data) >= 1 + 3 * c:
        g = np.frombuffer(data[1 : 1 + c], np.uint8).astype(np.int64)
        q = np.frombuffer(data[1 + c : 1 + 3 * c], "<u2").astype(np.int64) - _Q_BIAS
        if g.min() >= FIT_MIN_LOGSCALE and g.max() < LOGSCALE_COUNT:
            return (*_fitted_streams(q, g, shape), data[1 + 3 * c :])
    raise CorruptFile(f"corrupt .idf file: tile {tile} has an invalid first-stage prior")


# ------------------------------------------------------------------------------ logistic stages


def _moved(g: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """Log-scale indices ``g`` moved by a stage's ``shift`` (broadcast), kept on the grid."""
    return np.clip(g + shift, 0, LOGSCALE_COUNT - 1)


def shifted(q: np.ndarray, g: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Table ids and offsets of the grid logistics ``(q, g)`` with every log-scale index
    moved by ``shift``."""
    return grid_ids(q, _moved(g, shift))


def logistic_stage(data: bytes | memoryview, tile: int) -> tuple[int, bytes | memoryview]:
    """The log-scale shift and the ANS stream of a logistic-stage payload ``data``."""
    if not len(data):
        raise CorruptFile(f"corrupt .idf file: tile {tile} has an empty flow stage")
    return _SHIFT.unpack_from(data)[0], data[1:]


# ------------------------------------------------------------------------------ decoder


class BatchDecoder:
    """One batch of flow-coded cores of a plane group, decoded stage by stage (coarsest
    first).

    The exact decoder and the progressive decoder both go through this class, so they run
    the same batches, priors and tables; ``staged`` holds the inverse flow after the stages
    decoded so far.
    """

    def __init__(
        self, flow: IntegerFlow, g: int, batch: list[Tile], entries: dict[ChunkKey, ChunkEntry]
    ) -> None:
        self.flow = flow
        self.group = g
        self.batch = batch
        self.entries = entries
        self.stages = flow.config.stages
        self.staged = StagedInverse(
            flow, len(batch), *core_shape(batch[0], flow.config.granularity)
        )

    @property
    def done(self) -> bool:
        """Whether every stage has been decoded."""
        return self.staged.stage == self.stages

    @exact_arithmetic
    @torch.no_grad()
    def parameters(
        self, staged: StagedInverse
    ) -> tuple[Prior, ans.TableSet, np.ndarray, np.ndarray]:
        """Prior, table set, table ids and offsets of the next stage of ``staged``."""
        prior = staged.prior()
        return (prior, *stream_parameters(self.flow, prior))

    @exact_arithmetic
    @torch.no_grad()
    def decode_stage(self, data: bytes | memoryview) -> None:
        """Entropy-decode the next stage of every tile from ``data`` and push it."""
        s = self.staged.stage
        prior = self.staged.prior()
        first = isinstance(prior, MixturePrior)  # its tables are in each tile's payload
        if isinstance(prior, MixturePrior):
            z = np.empty(prior.shape, dtype=np.int64)
        else:
            q, g = grid_point(prior)
            z = np.empty(q.shape, dtype=np.int64)
        for i, tile in enumerate(self.batch):
            entry = self.entries.get((self.group, tile.index, self.stages - s))
            if entry is None:
                raise CorruptFile(f"tile {tile.index} lacks stage {self.stages - s}")
            chunk = payload(data, entry)
            if first:
                shape = (1, *z.shape[1:])
                tables, tile_ids, tile_offsets, stream = first_stage_streams(
                    self.flow, chunk, shape, tile.index
                )
                z[i] = ans.decode(stream, tile_ids, tile_offsets, tables)
            else:
                shift, stream = logistic_stage(chunk, tile.index)
                ids, offsets = shifted(q[i], g[i], shift)
                z[i] = ans.decode(stream, ids, offsets, logistic_tableset())
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
