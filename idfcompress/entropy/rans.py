"""The ANS stack coder of constriction (``AnsCoder``: 64-bit state, 32-bit words, 24-bit
probabilities), compiled with numba so that a whole payload of segments (``ans``'s layout:
bins by table, then the escapes' overflows), each symbol with a table of its own, is pushed
in one call and a segment popped in one call, instead of one call per table.

It writes exactly constriction's bytes (tests/entropy/test_rans.py compares the two on
random streams): pushing symbol ``s`` of probability ``p`` and left cumulative ``c`` first
spills the state's low word when ``state >> 40 >= p``, then sets
``state = (state // p) << 24 | (c + state % p)``; popping reverses it and refills a word
when the state falls below ``2**32``. The payload is the spilled words in order, then the
final state's nonzero words from least to most significant; a decoder starts by reading
words from the end until the state reaches ``2**32`` (constriction's ``read_initial_state``).
All arithmetic is on unsigned 64-bit integers, so every machine gives the same bits.
"""

from __future__ import annotations

import numpy as np

from ..compiled import jit

__all__ = [
    "CHUNK_BITS",
    "LENGTH_BITS",
    "MAX_LENGTH",
    "PRECISION",
    "Decoder",
    "Encoder",
    "pop_segment",
    "pop_value",
]

PRECISION = 24
_MASK = np.uint64((1 << PRECISION) - 1)
_SPILL = np.uint64(64 - PRECISION)
_WORD = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)
_REFILL = np.uint64(1 << 32)
_P = np.uint64(PRECISION)

LENGTH_BITS = 6
"""An escaped value's overflow length is a uniform over 0 .. 63."""
MAX_LENGTH = 61
"""The longest overflow length an encoder writes (``u + 1 <= 2**61 + 1``)."""
CHUNK_BITS = 16
"""An overflow's bits are coded in uniforms of at most this many bits."""


@jit()
def _push(cum: np.ndarray, prob: np.ndarray, state: np.uint64, out: np.ndarray):
    """Pushes the symbols from the last to the first; returns the state and words spilled."""
    n = 0
    for i in range(cum.size - 1, -1, -1):
        p = prob[i]
        if (state >> _SPILL) >= p:
            out[n] = state & _LOW
            n += 1
            state = state >> _WORD
        state = ((state // p) << _P) | (cum[i] + state % p)
    return state, n


@jit(inline="always")
def _push_one(cum, prob, state, out, n):
    """Pushes one symbol; returns the state and the words spilled so far."""
    if (state >> _SPILL) >= prob:
        out[n] = state & _LOW
        n += 1
        state = state >> _WORD
    return ((state // prob) << _P) | (cum + state % prob), n


@jit(inline="always")
def _push_bits(value, bits, state, out, n):
    """Pushes one ``bits``-bit value (a uniform over ``2**bits``)."""
    shift = _P - np.uint64(bits)
    return _push_one(np.uint64(value) << shift, np.uint64(1) << shift, state, out, n)


@jit()
def _overflow(b, last):
    """The overflow ``u + 1`` of an escaped bin ``b`` and its bit length minus one."""
    v = (-b if b <= 0 else b - last) + 1
    length = 0
    while (v >> (length + 1)) > 0:
        length += 1
    return v, length


@jit(inline="always")
def _push_bin(x, tid, off, i, cdf, starts, sizes, state, out, n):
    """Pushes the bin of value ``i`` (its table's end bin for an escape)."""
    t = tid[i]
    at = starts[t] + min(max(x[i] - off[i], 0), sizes[t] - 1)
    cum = np.uint64(cdf[at])
    return _push_one(cum, np.uint64(cdf[at + 1]) - cum, state, out, n)


@jit()
def push_segments(x, tid, off, bounds, cdf, starts, sizes, state):
    """Pushes segments ``bounds[k] .. bounds[k + 1]`` of the values ``x`` (table ids
    ``tid``, offsets ``off``) so that a decoder pops them with :func:`pop_segment`, first
    segment first; returns the state and the words spilled (uint64)."""
    room = x.size
    for i in range(x.size):
        b = x[i] - off[i]
        if b <= 0 or b >= sizes[tid[i]] - 1:
            room += 1 + (_overflow(b, sizes[tid[i]] - 1)[1] + CHUNK_BITS - 1) // CHUNK_BITS
    out = np.empty(room, dtype=np.uint64)
    n = 0
    for k in range(bounds.size - 2, -1, -1):
        lo, hi = bounds[k], bounds[k + 1]
        # the reverse of the pop order: chunks, lengths, bins (by table)
        for i in range(hi - 1, lo - 1, -1):
            last = sizes[tid[i]] - 1
            b = x[i] - off[i]
            if b <= 0 or b >= last:
                v, length = _overflow(b, last)
                top = ((length - 1) // CHUNK_BITS) * CHUNK_BITS if length else -1
                for shift in range(top, -1, -CHUNK_BITS):
                    bits = min(CHUNK_BITS, length - shift)
                    chunk = (v >> shift) & ((np.int64(1) << bits) - 1)
                    state, n = _push_bits(chunk, bits, state, out, n)
        for i in range(hi - 1, lo - 1, -1):
            last = sizes[tid[i]] - 1
            b = x[i] - off[i]
            if b <= 0 or b >= last:
                state, n = _push_bits(_overflow(b, last)[1], LENGTH_BITS, state, out, n)
        # a one-value segment (the online predictive coder's) needs no sort
        if hi - lo == 1:  # a one-value segment (the online predictive coder's): no sort
            state, n = _push_bin(x, tid, off, lo, cdf, starts, sizes, state, out, n)
            continue
        order = np.argsort(tid[lo:hi], kind="mergesort") + lo
        for j in range(order.size - 1, -1, -1):
            state, n = _push_bin(x, tid, off, order[j], cdf, starts, sizes, state, out, n)
    return state, out[:n]


@jit(inline="always")
def _pop_bin(cdf: np.ndarray, base: int, size: int, state: np.uint64, words: np.ndarray, pos: int):
    """Pops one bin of the table whose ``size + 1`` cumulative weights start at
    ``cdf[base]``; returns it, the state and the position."""
    q = state & _MASK
    lo, hi = 0, size  # the bin j with cdf[j] <= q < cdf[j + 1]
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if cdf[base + mid] <= q:
            lo = mid
        else:
            hi = mid
    left = cdf[base + lo]
    state = (state >> _P) * (cdf[base + lo + 1] - left) + (q - left)
    if state < _REFILL and pos > 0:
        pos -= 1
        state = (state << _WORD) | words[pos]
    return lo, state, pos


@jit(inline="always")
def _pop_bits(bits: int, state: np.uint64, words: np.ndarray, pos: int):
    """Pops one ``bits``-bit value (a uniform over ``2**bits``, bits <= 24)."""
    shift = _P - np.uint64(bits)
    q = state & _MASK
    s = q >> shift
    state = (state >> _P) * (np.uint64(1) << shift) + (q - (s << shift))
    if state < _REFILL and pos > 0:
        pos -= 1
        state = (state << _WORD) | words[pos]
    return s, state, pos


@jit()
def pop_segment(
    tid: np.ndarray, off: np.ndarray, cdf: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
    state: np.uint64, words: np.ndarray, pos: int, out: np.ndarray,
):  # fmt: skip
    """Pops one segment laid out as ``ans`` lays it out (its bins table by table in
    ascending id, then its escapes' overflow lengths, then their chunks) into ``out``: the
    value of each entry of ``tid`` (table ids) and ``off`` (offsets), under the tables'
    cumulative weights ``cdf`` (table t's ``size + 1`` entries from ``starts[t]``). Returns
    the state, the position and whether an overflow was too long to be an encoder's."""
    n = tid.size
    order = np.argsort(tid, kind="mergesort")  # stable
    escapes = 0
    for i in range(n):
        j = order[i]
        t = tid[j]
        b, state, pos = _pop_bin(cdf, starts[t], sizes[t], state, words, pos)
        out[j] = b
        if b == 0 or b == sizes[t] - 1:
            escapes += 1
    if escapes == 0:
        for j in range(n):
            out[j] += off[j]
        return state, pos, False
    lengths = np.empty(escapes, dtype=np.int64)
    for e in range(escapes):
        length, state, pos = _pop_bits(LENGTH_BITS, state, words, pos)
        if length > MAX_LENGTH:
            return state, pos, True
        lengths[e] = length
    e = 0
    for j in range(n):
        b = out[j]
        last = sizes[tid[j]] - 1
        x = b + off[j]
        if b == 0 or b == last:
            length = lengths[e]
            e += 1
            v = np.int64(1) << length
            for shift in range(0, length, CHUNK_BITS):
                chunk, state, pos = _pop_bits(min(CHUNK_BITS, length - shift), state, words, pos)
                v |= np.int64(chunk) << shift
            x = x - (v - 1) if b == 0 else x + (v - 1)
        out[j] = x
    return state, pos, False


@jit(inline="always")
def pop_value(
    t: int, off: int, cdf: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
    state: np.uint64, words: np.ndarray, pos: int,
):  # fmt: skip
    """Pops a segment of one value (what :func:`pop_segment` pops for one value: its bin,
    then, for an escape, its overflow's length and chunks) of table ``t`` at offset ``off``;
    returns the value, the state, the position and whether the overflow was too long."""
    b, state, pos = _pop_bin(cdf, starts[t], sizes[t], state, words, pos)
    x = b + off
    if b == 0 or b == sizes[t] - 1:
        length, state, pos = _pop_bits(LENGTH_BITS, state, words, pos)
        if length > MAX_LENGTH:
            return x, state, pos, True
        v = np.int64(1) << length
        for shift in range(0, length, CHUNK_BITS):
            chunk, state, pos = _pop_bits(min(CHUNK_BITS, length - shift), state, words, pos)
            v |= np.int64(chunk) << shift
        x = x - (v - 1) if b == 0 else x + (v - 1)
    return x, state, pos, False


class Encoder:
    """Pushes symbols given as (left cumulative, probability) pairs; :meth:`words` is the
    payload."""

    def __init__(self) -> None:
        self._state = np.uint64(0)
        self._spilled: list[np.ndarray] = []

    def push(self, cum: np.ndarray, prob: np.ndarray) -> None:
        """Pushes the symbols so that a decoder pops them in the given order."""
        cum = np.ascontiguousarray(cum, dtype=np.uint64)
        prob = np.ascontiguousarray(prob, dtype=np.uint64)
        out = np.empty(cum.size, dtype=np.uint64)
        state, n = _push(cum, prob, self._state, out)
        self._state = np.uint64(state)  # numba hands a uint64 back as a Python int
        self._spilled.append(out[:n])

    def push_segments(
        self, x: np.ndarray, tid: np.ndarray, off: np.ndarray, bounds: np.ndarray,
        cdf: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
    ) -> None:  # fmt: skip
        """Pushes the segments of :func:`push_segments` (before anything pushed earlier is
        popped)."""
        state, spilled = push_segments(x, tid, off, bounds, cdf, starts, sizes, self._state)
        self._state = np.uint64(state)
        self._spilled.append(spilled)

    def words(self) -> np.ndarray:
        """The payload as uint32 words."""
        state = int(self._state)
        tail = [(state >> s) & 0xFFFFFFFF for s in range(0, state.bit_length(), 32)]
        return np.concatenate([*self._spilled, np.array(tail, dtype=np.uint64)]).astype(np.uint32)


class Decoder:
    """Pops symbols of an :class:`Encoder` payload, in the order they were given.

    ``words`` (uint64), ``state`` and ``pos`` (the next word to read is ``words[pos - 1]``)
    are public so that a compiled caller may pop with :func:`pop_segment` and hand them
    back."""

    def __init__(self, words: np.ndarray) -> None:
        """``ValueError`` for a payload whose last word is zero (no encoder writes one)."""
        self.words = np.ascontiguousarray(words, dtype=np.uint64)
        pos = self.words.size
        state = 0
        if pos:
            if self.words[-1] == 0:
                raise ValueError("payload ends in a zero word")
            while pos and state < 1 << 32:
                pos -= 1
                state = (state << 32) | int(self.words[pos])
        self.state = np.uint64(state)
        self.pos = pos

    def segment(
        self, tid: np.ndarray, off: np.ndarray, cdf: np.ndarray, starts: np.ndarray,
        sizes: np.ndarray,
    ) -> np.ndarray | None:  # fmt: skip
        """The values of one :func:`pop_segment` segment (int64), None when its overflows
        cannot be an encoder's."""
        out = np.empty(tid.size, dtype=np.int64)
        state, self.pos, bad = pop_segment(
            tid, off, cdf, starts, sizes, self.state, self.words, self.pos, out
        )
        self.state = np.uint64(state)
        return None if bad else out

    def is_empty(self) -> bool:
        """Whether nothing is left to pop (the state back at 0, every word read)."""
        return int(self.state) == 0 and self.pos == 0
