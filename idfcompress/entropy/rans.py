"""The ANS stack coder of constriction (``AnsCoder``: 64-bit state, 32-bit words, 24-bit
probabilities), compiled with numba so that a whole segment of symbols, each with a table
of its own, is one call instead of one per table.

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

import numba
import numpy as np

__all__ = ["Decoder", "Encoder", "PRECISION"]

PRECISION = 24
_MASK = np.uint64((1 << PRECISION) - 1)
_SPILL = np.uint64(64 - PRECISION)
_WORD = np.uint64(32)
_LOW = np.uint64(0xFFFFFFFF)
_REFILL = np.uint64(1 << 32)
_P = np.uint64(PRECISION)


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _pop_tables(
    tables: np.ndarray, cdf: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
    state: np.uint64, words: np.ndarray, pos: int,
):  # fmt: skip
    """Pops one bin per entry of ``tables`` (table ids) with the tables' cumulative weights
    ``cdf`` (table t's ``size + 1`` entries from ``starts[t]``, 0 first, 2**24 last)."""
    out = np.empty(tables.size, dtype=np.int64)
    for i in range(tables.size):
        t = tables[i]
        base = starts[t]
        q = state & _MASK
        lo, hi = 0, sizes[t]  # the bin j with cdf[j] <= q < cdf[j + 1]
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
        out[i] = lo
    return out, state, pos


@numba.njit(cache=True, nogil=True)
def _pop_uniform(bits: np.ndarray, state: np.uint64, words: np.ndarray, pos: int):
    """Pops one value of ``bits[i]`` bits (a uniform over ``2**bits[i]``, bits <= 24) each."""
    out = np.empty(bits.size, dtype=np.int64)
    for i in range(bits.size):
        shift = _P - np.uint64(bits[i])
        q = state & _MASK
        s = q >> shift
        left = s << shift
        state = (state >> _P) * (np.uint64(1) << shift) + (q - left)
        if state < _REFILL and pos > 0:
            pos -= 1
            state = (state << _WORD) | words[pos]
        out[i] = s
    return out, state, pos


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

    def words(self) -> np.ndarray:
        """The payload as uint32 words."""
        state = int(self._state)
        tail = [(state >> s) & 0xFFFFFFFF for s in range(0, state.bit_length(), 32)]
        return np.concatenate([*self._spilled, np.array(tail, dtype=np.uint64)]).astype(
            np.uint32
        )


class Decoder:
    """Pops symbols of an :class:`Encoder` payload, in the order they were given."""

    def __init__(self, words: np.ndarray) -> None:
        """``ValueError`` for a payload whose last word is zero (no encoder writes one)."""
        self._words = np.ascontiguousarray(words, dtype=np.uint64)
        pos = self._words.size
        state = 0
        if pos:
            if self._words[-1] == 0:
                raise ValueError("payload ends in a zero word")
            while pos and state < 1 << 32:
                pos -= 1
                state = (state << 32) | int(self._words[pos])
        self._state = np.uint64(state)
        self._pos = pos

    def tables(self, ids: np.ndarray, cdf: np.ndarray, starts: np.ndarray, sizes: np.ndarray):
        """One bin per table id in ``ids`` (int64), under the tables' cumulative weights."""
        out, state, self._pos = _pop_tables(
            ids, cdf, starts, sizes, self._state, self._words, self._pos
        )
        self._state = np.uint64(state)
        return out

    def uniform(self, bits: np.ndarray) -> np.ndarray:
        """One ``bits[i]``-bit value per entry (uniform, each bits <= 24)."""
        out, state, self._pos = _pop_uniform(
            np.ascontiguousarray(bits, dtype=np.int64), self._state, self._words, self._pos
        )
        self._state = np.uint64(state)
        return out

    def is_empty(self) -> bool:
        """Whether nothing is left to pop (the state back at 0, every word read)."""
        return int(self._state) == 0 and self._pos == 0
