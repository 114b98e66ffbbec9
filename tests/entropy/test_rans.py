"""The compiled ANS coder writes constriction's bytes: a reference built on constriction's
own AnsCoder (one call per table, as the coder did until format 8) gives the same payload,
and constriction decodes ours; constriction's categorical uses exactly our weights."""

from __future__ import annotations

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idfcompress.entropy import ans as E
from idfcompress.entropy import rans
from idfcompress.entropy import tables as D
from idfcompress.errors import CorruptFile

_model = constriction.stream.model


def _categorical(tables: E.TableSet, t: int):
    # constriction's fast quantisation adds 1 to each entry of a table summing to
    # 2**24 - n, so w - 1 makes it use exactly the weights w
    return _model.Categorical((tables.weights(t) - 1).astype(np.float64), perfect=False)


def reference_payload(segments, tables: E.TableSet) -> bytes:
    """encode_segments through constriction itself, one push per table and segment."""
    coder = constriction.stream.stack.AnsCoder()
    for x, tid, off in reversed([tuple(np.asarray(a, np.int64) for a in s) for s in segments]):
        b = x - off
        last = tables.sizes[tid] - 1
        bins = np.clip(b, 0, last).astype(np.int32)
        esc = np.flatnonzero((b <= 0) | (b >= last))
        if esc.size:
            u = np.where(b[esc] <= 0, -b[esc], b[esc] - last[esc])
            v = u + 1
            lengths = np.array([int(n).bit_length() - 1 for n in v], dtype=np.int64)
            chunks, sizes = [], []
            for value, length in zip(v.tolist(), lengths.tolist(), strict=True):
                for s in range(0, length, 16):
                    n = min(16, length - s)
                    chunks.append((value >> s) & ((1 << n) - 1))
                    sizes.append(1 << n)
            if chunks:
                coder.encode_reverse(
                    np.array(chunks, np.int32), _model.Uniform(), np.array(sizes, np.int32)
                )
            coder.encode_reverse(lengths.astype(np.int32), _model.Uniform(64))
        order = np.argsort(tid, kind="stable")
        for t in np.unique(tid)[::-1].tolist():
            coder.encode_reverse(bins[order][tid[order] == t], _categorical(tables, t))
    return coder.get_compressed().astype("<u4").tobytes()


def _segments(rng, tables, count, escapes=0.02):
    out = []
    for _ in range(count):
        n = int(rng.integers(0, 60))
        tid = rng.integers(0, len(tables), n)
        off = rng.integers(-100, 100, n)
        x = off + rng.integers(0, 1, n) + (rng.random(n) * tables.sizes[tid]).astype(np.int64)
        wild = rng.random(n) < escapes
        x[wild] += rng.integers(-(2**40), 2**40, int(wild.sum()))
        out.append((x, tid, off))
    return out


def _tables(rng) -> E.TableSet:
    grid = D.logistic_tables()
    picked = [grid[i] for i in rng.choice(len(grid), 12, replace=False)]
    return E.TableSet(picked + [rng.dirichlet(np.full(int(rng.integers(2, 40)), 0.5))])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_payloads_are_constrictions(seed, count):
    rng = np.random.default_rng(seed)
    tables = _tables(rng)
    segments = _segments(rng, tables, count)
    ours = E.encode_segments(segments, tables)
    assert ours == reference_payload(segments, tables)
    decoder = E.SegmentDecoder(ours, tables)
    for x, tid, off in segments:
        assert np.array_equal(decoder.decode(tid, off), x)
    decoder.finish()


def test_constriction_decodes_ours_and_large_pieces_agree():
    rng = np.random.default_rng(1)
    tables = E.TableSet(D.logistic_tables())
    mean = rng.uniform(-30, 30, 200_000)
    ls = rng.uniform(-1, 4, mean.size)
    ids, off = D.quantize_logistic(mean, ls)
    x = np.rint(mean + rng.logistic(0, np.exp(ls))).astype(np.int64)
    cuts = range(0, x.size, 3000)
    segments = [(x[i : i + 3000], ids[i : i + 3000], off[i : i + 3000]) for i in cuts]
    ours = E.encode_segments(segments, tables)
    assert ours == reference_payload(segments, tables)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(ours, "<u4").astype(np.uint32))
    x0, t0, o0 = segments[0]
    order = np.argsort(t0, kind="stable")
    first = [coder.decode(_categorical(tables, t), int((t0 == t).sum())) for t in np.unique(t0)]
    bins = np.clip(x0 - o0, 0, tables.sizes[t0] - 1)[order]
    assert np.array_equal(np.concatenate(first), bins)


def _probe_weights(model, n):
    """The integer weights constriction actually uses, found by decoding chosen quantiles."""

    def symbol_at(q):
        coder = constriction.stream.stack.AnsCoder(np.array([q, 1], dtype=np.uint32))
        return int(coder.decode(model, 1)[0])

    cdf = [0]
    for s in range(1, n):
        lo, hi = 0, D.PROB_TOTAL
        while lo < hi:
            mid = (lo + hi) // 2
            if symbol_at(mid) >= s:
                hi = mid
            else:
                lo = mid + 1
        cdf.append(lo)
    return np.diff(cdf + [D.PROB_TOTAL])


def test_constriction_uses_exactly_our_weights():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(30, 0.4))
    p[4] = 0.0
    tables = E.TableSet([p, D.logistic_tables()[777]])
    assert np.array_equal(_probe_weights(_categorical(tables, 0), 30), D.quantize_weights(p))
    t = tables.table(1)
    weights = _probe_weights(_categorical(tables, 1), t.size)
    assert np.array_equal(weights, np.rint(t * D.PROB_TOTAL))


def test_every_overflow_length_pops_back():
    tables = E.TableSet([D.logistic_tables()[700]])
    last = int(tables.sizes[0]) - 1
    reach = np.int64(E.MAX_ABS_VALUE)
    lengths = np.arange(rans.MAX_LENGTH + 1)
    u = (np.int64(1) << lengths) - 1  # an overflow of length L: 2**L <= u + 1 < 2**(L + 1)
    # below the table (from offset +reach, every length) and above it (from -reach)
    off = np.concatenate([np.full(u.size, reach), np.full(u.size - 1, -reach)])
    x = np.concatenate([reach - u, -reach + last + u[:-1]])
    ids = np.zeros(x.size, np.int64)
    payload = E.encode_segments([(x, ids, off)], tables)
    assert np.array_equal(E.decode(payload, ids, off, tables), x)


def test_an_overflow_longer_than_an_encoders_is_refused():
    tables = E.TableSet([D.logistic_tables()[700]])
    cdf, starts, sizes = tables.cumulative()
    encoder = rans.Encoder()
    shift = np.uint64(rans.PRECISION - rans.LENGTH_BITS)
    # bin 0 (an escape), then an overflow length of 62
    encoder.push(np.array([0, 62 << shift], np.uint64), np.array([cdf[1], 1 << shift], np.uint64))
    payload = encoder.words().astype("<u4").tobytes()
    with pytest.raises(CorruptFile, match="overflow is too long"):
        E.decode(payload, np.zeros(1, np.int64), np.zeros(1, np.int64), tables)
