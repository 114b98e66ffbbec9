import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idfcompress.entropy import ans as E
from idfcompress.entropy import tables as D
from idfcompress.errors import CorruptFile


def _random_tables(rng, count, min_size=2, max_size=300):
    tables = []
    for _ in range(count):
        n = int(rng.integers(min_size, max_size + 1))
        tables.append(rng.dirichlet(np.full(n, 0.5)) + 1e-12)
    return E.TableSet(tables)


def _roundtrip(values, table_ids, offsets, tables):
    data = E.encode(values, table_ids, offsets, tables)
    assert isinstance(data, bytes) and len(data) % 4 == 0
    out = E.decode(data, table_ids, offsets, tables)
    assert out.dtype == np.int64 and out.shape == np.shape(table_ids)
    assert np.array_equal(out, values)
    return data


@pytest.fixture(scope="module")
def grid():
    return E.TableSet(D.logistic_tables())


def test_roundtrip_random_tables_with_escapes():
    rng = np.random.default_rng(0)
    tables = _random_tables(rng, 40)
    shape = (37, 53)
    tid = rng.integers(0, len(tables), shape)
    off = rng.integers(-1000, 1000, shape)
    n = tables.sizes[tid]
    x = off + rng.integers(0, n)  # mostly inside the window
    far = rng.random(shape) < 0.05
    mag = (2.0 ** rng.uniform(0, 40, shape)).astype(np.int64)
    x = np.where(far, off + np.where(rng.random(shape) < 0.5, -mag, n - 1 + mag), x)
    x.flat[:6] = [2**40, -(2**40), off.flat[2], off.flat[3] + n.flat[3] - 1, 0, -1]
    _roundtrip(x, tid, off, tables)


def test_escape_boundaries():
    """Overflows around the chunk and bit-length boundaries, and the extreme magnitudes."""
    tables = E.TableSet([np.array([0.1, 0.8, 0.1]), np.array([0.5, 0.5])])
    us = [0, 1, 2, 3, 2**15 - 2, 2**15 - 1, 2**16 - 2, 2**16 - 1, 2**16, 2**32 - 1, 2**32]
    us += [2**48 - 1, 2**48, 2**53 + 1, 2**60 - 3]
    vals, tids, offs = [], [], []
    for u in us:
        for t in (0, 1):
            last = tables.sizes[t] - 1
            vals += [-u, last + u]
            tids += [t, t]
            offs += [0, 0]
    m = E.MAX_ABS_VALUE
    vals += [m, -m, m, -m, 0]
    tids += [0, 0, 1, 1, 0]
    offs += [-m, m, m, -m, m]
    _roundtrip(np.array(vals), np.array(tids), np.array(offs), tables)


def test_empty_single_one_table_many_tables(grid):
    rng = np.random.default_rng(1)
    tables = _random_tables(rng, 3)
    for shape in ((0,), (0, 3), (4, 0)):
        z = np.zeros(shape, dtype=np.int64)
        data = _roundtrip(z, z, z, tables)
        assert data == b""
    data = _roundtrip(np.array([5]), np.array([0]), np.array([3]), tables)
    assert len(data) <= 8
    _roundtrip(np.array(7), np.array(1), np.array(0), tables)  # 0-d
    # one table
    one = E.TableSet([np.array([0.05, 0.2, 0.5, 0.2, 0.05])])
    x = rng.integers(-3, 8, 10_000)
    _roundtrip(x, np.zeros_like(x), np.zeros_like(x), one)
    # many tables (more than int16 ids)
    many = E.TableSet([np.array([0.3, 0.7])] * 40_000)
    tid = rng.integers(0, 40_000, 5000)
    _roundtrip(rng.integers(-5, 6, 5000), tid, np.zeros(5000, dtype=np.int64), many)
    # the logistic grid
    ids, off = D.quantize_logistic(rng.uniform(-9, 9, 2000), rng.uniform(-4, 7, 2000))
    _roundtrip(rng.integers(-60, 60, 2000), ids, off, grid)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(-(2**40), 2**40),
            st.integers(-(2**20), 2**20),
        ),
        max_size=60,
    )
)
def test_roundtrip_property(items):
    tables = E.TableSet(
        [
            np.array([0.5, 0.5]),
            np.array([0.01, 0.97, 0.02]),
            np.arange(1.0, 11.0),
            np.array([1e-9, 1.0, 1.0, 1e-9]),
        ]
    )
    tid = np.array([t for t, _, _ in items], dtype=np.int64)
    x = np.array([v for _, v, _ in items], dtype=np.int64)
    off = np.array([o for _, _, o in items], dtype=np.int64)
    _roundtrip(x, tid, off, tables)


def test_output_is_deterministic():
    rng = np.random.default_rng(2)
    tables = _random_tables(rng, 10)
    tid = rng.integers(0, 10, 3000)
    x = rng.integers(-20, 300, 3000)
    off = np.zeros(3000, dtype=np.int64)
    a = E.encode(x, tid, off, tables)
    b = E.encode(x, tid, off, E.TableSet([tables.table(i) for i in range(10)]))
    assert a == b


def test_invalid_arguments_raise_value_error():
    tables = E.TableSet([np.array([0.5, 0.5])])
    z = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError):
        E.encode(z, z + 1, z, tables)
    with pytest.raises(ValueError):
        E.encode(z, z[:2], z, tables)
    with pytest.raises(ValueError):
        E.encode(z + 0.5, z, z, tables)
    with pytest.raises(ValueError):
        E.encode(z + E.MAX_ABS_VALUE + 1, z, z, tables)
    with pytest.raises(ValueError):
        E.decode(b"", z - 1, z, tables)
    with pytest.raises(ValueError):
        E.TableSet([np.array([1.0])])
    with pytest.raises(ValueError):
        E.TableSet([np.array([1.0, np.nan])])


def test_size_close_to_table_ideal():
    rng = np.random.default_rng(4)
    tables = _random_tables(rng, 50, min_size=4, max_size=200)
    n_sym = 200_000
    tid = rng.integers(0, len(tables), n_sym)
    x = np.empty(n_sym, dtype=np.int64)
    for t in range(len(tables)):
        idx = np.flatnonzero(tid == t)
        p = tables.table(t)[1:-1]
        x[idx] = 1 + rng.choice(p.size, idx.size, p=p / p.sum())  # interior: no escapes
    off = rng.integers(-50, 50, n_sym)
    x += off
    data = _roundtrip(x, tid, off, tables)
    ideal = E.ideal_bits_of_tables(x, tid, off, tables)
    real = 8 * len(data)
    print(f"\nrandom tables: {real} bits vs ideal {ideal:.0f} ({real / ideal - 1:+.4%})")
    assert real / ideal - 1 < 0.01


def _logistic_data(rng, n, mean_range=(-50, 50), ls_range=(-1, 3)):
    mean = rng.uniform(*mean_range, n)
    ls = rng.uniform(*ls_range, n)
    x = np.round(mean + np.exp(ls) * rng.logistic(size=n)).astype(np.int64)
    return mean, ls, x


def _continuous_ideal_bits(x, mean, ls):
    s = np.exp(ls)
    hi = (x + 0.5 - mean) / s
    lo = (x - 0.5 - mean) / s
    # log(sigmoid(hi) - sigmoid(lo)), stable for these moderate arguments
    p = 1.0 / (1.0 + np.exp(-hi)) - 1.0 / (1.0 + np.exp(-lo))
    return float(-np.log2(p).sum())


def test_logistic_size_overheads(grid):
    rng = np.random.default_rng(5)
    mean, ls, x = _logistic_data(rng, 200_000)
    ids, off = D.quantize_logistic(mean, ls)
    data = _roundtrip(x, ids, off, grid)
    real = 8 * len(data)
    table_ideal = E.ideal_bits_of_tables(x, ids, off, grid)
    cont = _continuous_ideal_bits(x, mean, ls)
    print(
        f"\nlogistic: {real / x.size:.4f} bits/symbol; coder vs table ideal "
        f"{real / table_ideal - 1:+.4%}; table ideal vs continuous {table_ideal / cont - 1:+.4%}; "
        f"total vs continuous {real / cont - 1:+.4%}"
    )
    assert real / table_ideal - 1 < 0.001
    assert table_ideal / cont - 1 < 0.001


def test_corrupt_payloads_raise_only_corrupt_file(grid):
    rng = np.random.default_rng(6)
    mean, ls, x = _logistic_data(rng, 3000)
    x[::97] += rng.integers(-(2**30), 2**30, x[::97].size)  # some escapes
    ids, off = D.quantize_logistic(mean, ls)
    good = _roundtrip(x, ids, off, grid)

    payloads = [b"", b"\x01", good[:-1], good + b"\x00", b"\x00\x00\x00\x00"]
    payloads += [good[:-4], good[4:], good + b"\x01\x00\x00\x00", good[: len(good) // 2]]
    for _ in range(30):
        payloads.append(rng.bytes(4 * int(rng.integers(1, 300))))
    for _ in range(30):
        bad = bytearray(good)
        bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        payloads.append(bytes(bad))
    outcomes = {"corrupt": 0, "wrong": 0, "right": 0}
    for p in payloads:
        try:
            out = E.decode(p, ids, off, grid)
        except CorruptFile:
            outcomes["corrupt"] += 1
            continue
        assert out.shape == x.shape and out.dtype == np.int64
        outcomes["right" if np.array_equal(out, x) else "wrong"] += 1
    print(f"\ncorrupt payloads: {outcomes}")
    # Odd lengths are always rejected.
    for p in (b"\x01", good[:-1], good + b"\x00"):
        with pytest.raises(CorruptFile):
            E.decode(p, ids, off, grid)
    # Data for symbols that aren't there is rejected.
    with pytest.raises(CorruptFile):
        E.decode(good, ids[:0], off[:0], grid)


def test_ideal_bits_of_tables():
    tables = E.TableSet([np.array([0.25, 0.5, 0.25]), np.array([0.125, 0.875])])
    x = np.array([1, 0, 2, -7, 9])
    tid = np.array([0, 0, 0, 1, 1])
    off = np.zeros(5, dtype=np.int64)
    bits = E.ideal_bits_of_tables(x, tid, off, tables)
    assert bits == pytest.approx(1 + 2 + 2 + 3 - np.log2(0.875))
    assert E.ideal_bits_of_tables(x[:0], tid[:0], off[:0], tables) == 0.0


def test_an_image_of_logistic_symbols_round_trips(grid):
    """One 768x512 RGB image's worth of symbols (speed: scripts/arithmetic_bench.py)."""
    rng = np.random.default_rng(7)
    n = 1_179_648
    mean, ls, x = _logistic_data(rng, n)
    ids, off = D.quantize_logistic(mean, ls)
    data = E.encode(x, ids, off, grid)
    assert np.array_equal(E.decode(data, ids, off, grid), x)
    assert 8 * len(data) < 1.01 * E.ideal_bits_of_tables(x, ids, off, grid) + 64


def test_segments_round_trip_one_by_one():
    """Each segment pops with the table ids and offsets it was pushed with, escapes
    included."""
    rng = np.random.default_rng(5)
    tables = _random_tables(rng, 6, max_size=40)
    segments = []
    for _ in range(40):
        n = int(rng.integers(0, 30))
        tid = rng.integers(0, 6, n)
        offsets = rng.integers(-3, 3, n)
        values = offsets + rng.integers(-8, 60, n)  # some beyond the tables: escapes
        segments.append((values, tid, offsets))
    whole = E.encode_segments(segments, tables)
    decoder = E.SegmentDecoder(whole, tables)
    for values, tid, offsets in segments:
        assert np.array_equal(decoder.decode(tid, offsets), values)
    decoder.finish()


def test_cut_arrays_give_the_segments_payload():
    rng = np.random.default_rng(8)
    tables = _random_tables(rng, 5, max_size=30)
    sizes = [3, 0, 7, 0, 0, 12, 1]  # empty segments too
    segments = []
    for n in sizes:
        tid = rng.integers(0, 5, n)
        offsets = rng.integers(-3, 3, n)
        segments.append((offsets + rng.integers(-5, 40, n), tid, offsets))
    flat = [np.concatenate([s[k] for s in segments]) for k in range(3)]
    cuts = np.cumsum(sizes)[:-1]
    assert E.encode_cut(*flat, cuts, tables) == E.encode_segments(segments, tables)
