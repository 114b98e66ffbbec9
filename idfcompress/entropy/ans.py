"""Grouped categorical ANS coding with escapes for out-of-window values.

Every symbol i is a value ``x_i`` coded with the fixed table ``table_ids[i]`` of a
:class:`TableSet` as bin ``b_i = x_i - offsets[i]``. The first and last bin of every table are
escape bins: values at or beyond them also code an overflow count with uniform models.

Layout of the ANS stream, in the order the decoder pops it:

1. the bins, table by table in ascending table id, within a table in ascending flat index;
2. for each escaped position in ascending flat index, the overflow's bit length
   ``L = bit_length(u + 1) - 1`` with Uniform(64);
3. for each escaped position in ascending flat index, the ``L`` bits of ``u + 1`` below its
   leading one, in chunks of at most 16 bits (least significant chunk first).

The payload is the ANS coder's uint32 words as little-endian bytes: constriction's
``AnsCoder`` with 24-bit probabilities, each table's weights as :func:`tables.quantize_weights`
gives them (cumulated in bin order) and the uniform models exact powers of two. ``rans``
codes it: one compiled call pushes a whole payload and one pops a segment (or a caller's
compiled code pops it with ``rans.pop_segment``); the bytes are constriction's
(tests/entropy/test_rans.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ..errors import CorruptFile
from . import rans
from .tables import MAX_TABLE_SIZE, PROB_TOTAL, quantize_weights

__all__ = [
    "MAX_ABS_VALUE",
    "SegmentDecoder",
    "TableSet",
    "decode",
    "encode",
    "encode_cut",
    "encode_segments",
    "ideal_bits_of_tables",
]

MAX_ABS_VALUE = 1 << 60
"""Values and offsets must lie in [-MAX_ABS_VALUE, MAX_ABS_VALUE]."""


class TableSet:
    """A fixed list of discrete distributions (1-D float64 probability vectors, each >= 2 bins);
    the first and last bin of every table are escape bins."""

    def __init__(self, tables: Sequence[np.ndarray]) -> None:
        self._tables = [np.asarray(t, dtype=np.float64) for t in tables]
        for i, t in enumerate(self._tables):
            if t.ndim != 1 or not 2 <= t.size <= MAX_TABLE_SIZE:
                raise ValueError(f"table {i} must be 1-D with 2..{MAX_TABLE_SIZE} bins")
            if not np.all(np.isfinite(t)) or np.any(t < 0) or not np.any(t > 0):
                raise ValueError(f"table {i} must be finite, nonnegative and not all zero")
        self.sizes = np.array([t.size for t in self._tables], dtype=np.int64)
        self.sizes.setflags(write=False)
        self._cdf: np.ndarray | None = None
        self._lock = threading.Lock()
        self._cdf_starts: np.ndarray | None = None
        self._flat: np.ndarray | None = None
        self._starts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._tables)

    def table(self, table_id: int) -> np.ndarray:
        """The probability vector of one table, as given."""
        return self._tables[table_id]

    def weights(self, table_id: int) -> np.ndarray:
        """The integer weights (>= 1, summing to 2**24) one table is coded with."""
        cdf, starts, _ = self.cumulative()
        start, size = int(starts[table_id]), int(self.sizes[table_id])
        return np.diff(cdf[start : start + size + 1]).astype(np.int64)

    def cumulative(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every table's cumulative weights, flattened (uint32; table t has ``size + 1``
        entries from ``starts[t]``, 0 first and 2**24 last), the starts and the sizes
        (built on first use, then kept: 4 bytes a bin, 10 MiB for the logistic grid)."""
        if self._cdf is None:
            with self._lock:  # built once, even when several threads ask at once
                if self._cdf is None:
                    self._cdf_starts, self._cdf = self._cumulate()
        assert self._cdf is not None and self._cdf_starts is not None
        return self._cdf, self._cdf_starts, self.sizes

    def _cumulate(self) -> tuple[np.ndarray, np.ndarray]:
        """The starts and the flat cumulative weights (tables of one size quantised as one
        batch: each row is quantised on its own, so the weights are those of one by one)."""
        starts = np.concatenate([[0], np.cumsum(self.sizes + 1)[:-1]]).astype(np.int64)
        cdf = np.zeros(int((self.sizes + 1).sum()), dtype=np.uint32)
        for size in np.unique(self.sizes).tolist():
            ids = np.flatnonzero(self.sizes == size)
            weights = quantize_weights(np.stack([self._tables[i] for i in ids.tolist()]))
            at = (starts[ids] + 1)[:, None] + np.arange(size)
            cdf[at] = np.cumsum(weights, axis=1)
        assert (cdf[starts + self.sizes] == PROB_TOTAL).all()
        return starts, cdf

    def _flat_tables(self) -> tuple[np.ndarray, np.ndarray]:
        if self._flat is None:
            self._starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
            self._flat = (
                np.concatenate(self._tables) if self._tables else np.zeros(0, dtype=np.float64)
            )
        assert self._starts is not None
        return self._flat, self._starts


# --------------------------------------------------------------------------------------------
# helpers


def _check_args(
    table_ids: np.ndarray, offsets: np.ndarray, tables: TableSet
) -> tuple[np.ndarray, np.ndarray]:
    table_ids = np.asarray(table_ids)
    offsets = np.asarray(offsets)
    if table_ids.shape != offsets.shape:
        raise ValueError(f"shape mismatch: table_ids {table_ids.shape} vs offsets {offsets.shape}")
    # dtype kinds rather than np.issubdtype: a tenth of the time, for one call per segment
    if table_ids.size and table_ids.dtype.kind not in "iu":
        raise ValueError("table_ids must be integers")
    if offsets.size and offsets.dtype.kind not in "iu":
        raise ValueError("offsets must be integers")
    tid = table_ids.reshape(-1).astype(np.int64, copy=False)
    off = offsets.reshape(-1).astype(np.int64, copy=False)
    if tid.size:
        if tid.min() < 0 or tid.max() >= len(tables):
            raise ValueError(f"table ids must lie in [0, {len(tables)})")
        if np.abs(off).max() > MAX_ABS_VALUE:
            raise ValueError(f"offsets must lie within +-{MAX_ABS_VALUE}")
    return tid, off


# --------------------------------------------------------------------------------------------
# public API


def encode(
    values: np.ndarray, table_ids: np.ndarray, offsets: np.ndarray, tables: TableSet
) -> bytes:
    """Entropy-codes ``values`` (integers, any shape) with their tables; returns the payload.

    Raises ValueError on mismatched shapes, unknown table ids, non-integer input or values or
    offsets beyond +-MAX_ABS_VALUE.
    """
    return encode_segments([(values, table_ids, offsets)], tables)


def encode_segments(
    segments: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], tables: TableSet
) -> bytes:
    """One payload of several ``(values, table_ids, offsets)`` segments, each laid out as
    :func:`encode` lays out its values, segment after segment in the order the decoder pops
    them (:class:`SegmentDecoder`); the same argument checks as :func:`encode`."""
    for values, table_ids, _ in segments:
        if np.shape(values) != np.shape(table_ids):
            raise ValueError(
                f"shape mismatch: values {np.shape(values)} vs table_ids {np.shape(table_ids)}"
            )

    def joined(k: int) -> np.ndarray:
        parts = [np.ravel(segment[k]) for segment in segments]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    cuts = np.cumsum([np.size(segment[0]) for segment in segments])[:-1]
    return encode_cut(joined(0), joined(1), joined(2), cuts, tables)


def encode_cut(
    values: np.ndarray, table_ids: np.ndarray, offsets: np.ndarray, cuts: np.ndarray,
    tables: TableSet,
) -> bytes:  # fmt: skip
    """:func:`encode_segments` of 1-D arrays cut into segments at the indices ``cuts`` (as
    ``np.split`` cuts them), without making the segments."""
    x, tid, off = _check_segment(values, table_ids, offsets, tables)
    if not x.size:
        return b""
    bounds = np.concatenate([[0], np.asarray(cuts, np.int64), [x.size]]).astype(np.int64)
    coder = rans.Encoder()
    coder.push_segments(x, tid, off, bounds, *tables.cumulative())
    return coder.words().astype("<u4").tobytes()


def _check_segment(
    values: np.ndarray, table_ids: np.ndarray, offsets: np.ndarray, tables: TableSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(values)
    tid, off = _check_args(table_ids, offsets, tables)
    if values.shape != np.shape(table_ids):
        raise ValueError(
            f"shape mismatch: values {values.shape} vs table_ids {np.shape(table_ids)}"
        )
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError("values must be integers")
    x = values.reshape(-1).astype(np.int64, copy=False)
    if x.size and np.abs(x).max() > MAX_ABS_VALUE:
        raise ValueError(f"values must lie within +-{MAX_ABS_VALUE}")
    return x, tid, off


def decode(data: bytes, table_ids: np.ndarray, offsets: np.ndarray, tables: TableSet) -> np.ndarray:
    """Decodes values (int64, shape of ``table_ids``) coded by :func:`encode` with the same
    table ids, offsets and tables.

    Raises CorruptFile when the payload cannot be decoded; corrupt data that happens to decode
    may give wrong values (the container's checksums catch those). Raises ValueError on
    invalid arguments (as :func:`encode`).
    """
    decoder = SegmentDecoder(data, tables)
    values = decoder.decode(table_ids, offsets)
    decoder.finish()
    return values


class SegmentDecoder:
    """Pops the segments of an :func:`encode_segments` payload one by one, each with table
    ids and offsets the caller may derive from the segments before it.

    ``decode`` raises CorruptFile when the payload cannot be decoded (ValueError on invalid
    arguments); ``finish`` when data is left after the last segment. ``coder`` is the
    underlying :class:`rans.Decoder`, for compiled callers that pop segments themselves."""

    def __init__(self, data: bytes, tables: TableSet) -> None:
        data = bytes(data)
        if len(data) % 4:
            raise CorruptFile("entropy-coded payload length is not a multiple of 4")
        self._tables = tables
        try:
            self.coder = rans.Decoder(np.frombuffer(data, dtype="<u4"))
        except ValueError:
            raise CorruptFile("entropy-coded payload ends in a zero word") from None

    def decode(self, table_ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The next segment's values (int64, shape of ``table_ids``)."""
        shape = np.shape(table_ids)
        tid, off = _check_args(table_ids, offsets, self._tables)
        x = self.coder.segment(tid, off, *self._tables.cumulative())
        if x is None:
            raise CorruptFile("entropy-coded overflow is too long")
        if x.size and np.abs(x).max() > MAX_ABS_VALUE:
            raise CorruptFile("entropy-coded payload decodes to out-of-range values")
        return x.reshape(shape)

    def finish(self) -> None:
        """Checks that the payload held nothing after the segments decoded."""
        if not self.coder.is_empty():
            raise CorruptFile("entropy-coded payload has data left after decoding")


def ideal_bits_of_tables(
    values: np.ndarray, table_ids: np.ndarray, offsets: np.ndarray, tables: TableSet
) -> float:
    """Sum of -log2 p(bin) over all symbols under the float tables (overflow bits excluded)."""
    tid, off = _check_args(table_ids, offsets, tables)
    x = np.asarray(values).reshape(-1).astype(np.int64, copy=False)
    if x.size != tid.size:
        raise ValueError("values and table_ids differ in size")
    if x.size == 0:
        return 0.0
    flat, starts = tables._flat_tables()
    bins = np.clip(x - off, 0, tables.sizes[tid] - 1)
    p = flat[starts[tid] + bins]
    with np.errstate(divide="ignore"):
        return float(-np.log2(p).sum())
