import math
import time

import numpy as np
import pytest

from idfcompress.entropy import tables as D

# SHA-256 of the grid's integer weights as built on the development machine (numpy 2.x,
# x86-64). A different value means this machine builds different tables: files made on one
# would not decode on the other.
EXPECTED_GRID_FINGERPRINT = "a92ea8d66786c330994c3110551e67da2d43132ab237fdbb1ff07c6ea4e856f7"


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _analytic(values, mean, scale, low, high):
    """Discretized logistic over low..high with tail mass in the edge bins (reference)."""
    x = np.asarray(values, dtype=np.float64)
    hi = np.where(x >= high, 1.0, _sigmoid((x + 0.5 - mean) / scale))
    lo = np.where(x <= low, 0.0, _sigmoid((x - 0.5 - mean) / scale))
    return hi - lo


def test_constants_and_half_widths():
    assert D.MEAN_STEPS == 16
    assert D.LOGSCALE_MIN == -3.0
    assert D.LOGSCALE_STEP == 1 / 16
    assert D.LOGSCALE_COUNT == 145
    assert D.LOGSCALE_MAX == 6.0
    assert D.NUM_LOGISTIC_TABLES == 2320
    assert D.HALF_WIDTHS.shape == (145,)
    for g in (0, 1, 47, 48, 100, 144):
        s = math.exp(-3.0 + g / 16)
        assert D.HALF_WIDTHS[g] == max(4, math.ceil(12 * s))
    assert D.HALF_WIDTHS[0] == 4
    assert D.HALF_WIDTHS[48] == 12
    assert D.HALF_WIDTHS[144] == 4842


def test_grid_tables_are_normalised_positive_and_on_grid():
    t0 = time.perf_counter()
    tables = D.logistic_tables()
    print(f"\nlogistic grid: {len(tables)} tables built in {time.perf_counter() - t0:.3f} s")
    assert len(tables) == D.NUM_LOGISTIC_TABLES
    for tid, t in enumerate(tables):
        g = tid // D.MEAN_STEPS
        assert t.dtype == np.float64 and t.flags.c_contiguous
        assert t.shape == (2 * D.HALF_WIDTHS[g] + 1,)
        assert abs(t.sum() - 1.0) < 1e-9
        assert t.min() > 0
        w = t * D.PROB_TOTAL
        assert np.array_equal(w, np.rint(w))
        assert w.sum() == D.PROB_TOTAL
    assert D.logistic_tables()[5] is tables[5]  # cached


def test_grid_tables_match_the_formula():
    tables = D.logistic_tables()
    for g in (0, 20, 48, 90, 144):
        for f in (0, 5, 15):
            w = int(D.HALF_WIDTHS[g])
            s = math.exp(-3.0 + g / 16)
            r = np.arange(-w, w + 1)
            ref = _analytic(r, f / 16, s, -w, w)
            t = tables[g * D.MEAN_STEPS + f]
            # Snapping to 2**-24 moves each bin by at most a few units.
            assert np.max(np.abs(t - ref)) < 64 / D.PROB_TOTAL, (g, f)


def test_grid_fingerprint_is_stable():
    fp = D.logistic_grid_fingerprint()
    assert len(fp) == 64
    assert fp == EXPECTED_GRID_FINGERPRINT, (
        "the logistic grid differs from the one on the development machine; files would not "
        "decode across the two"
    )


def test_quantize_logistic_hand_picked():
    mean = np.array([0.0, -0.01, 2.5, 2.53, -3.0, 1e9, -np.inf, np.nan, 7.9999])
    ls = np.array([0.0, -10.0, 100.0, -3 + 1 / 32, -3 + 3 / 32, np.inf, -np.inf, np.nan, 1.0])
    ids, off = D.quantize_logistic(mean, ls)
    assert ids.dtype == np.int32 and off.dtype == np.int64
    q = [0, -1, 40, 40, -48, 2**24, -(2**24), 0, 127]
    g = [48, 0, 144, 0, 2, 144, 0, 48, 64]  # -3+1/32 is a tie: round half to even -> 0
    for i in range(len(mean)):
        k, f = q[i] // 16, q[i] % 16
        assert ids[i] == g[i] * 16 + f, i
        assert off[i] == k - D.HALF_WIDTHS[g[i]], i
    assert ids[0] == 768 and off[0] == -12
    assert ids[1] == 15 and off[1] == -1 - 4


def test_quantize_logistic_shapes_and_float32():
    rng = np.random.default_rng(0)
    mean = rng.uniform(-100, 100, (3, 4, 5)).astype(np.float32)
    ls = rng.uniform(-4, 7, (3, 4, 5)).astype(np.float32)
    ids, off = D.quantize_logistic(mean, ls)
    assert ids.shape == off.shape == (3, 4, 5)
    ids64, off64 = D.quantize_logistic(mean.astype(np.float64), ls.astype(np.float64))
    assert np.array_equal(ids, ids64) and np.array_equal(off, off64)
    assert ids.min() >= 0 and ids.max() < D.NUM_LOGISTIC_TABLES
    with pytest.raises(ValueError):
        D.quantize_logistic(np.zeros(3), np.zeros(4))
    i0, o0 = D.quantize_logistic(np.float64(1.5), np.float64(0.0))
    assert i0.shape == () and o0.shape == ()


def test_quantized_table_is_the_logistic_at_grid_parameters():
    tables = D.logistic_tables()
    rng = np.random.default_rng(1)
    for _ in range(50):
        mean = rng.integers(-1000, 1000) / 16
        ls = rng.integers(0, 145) / 16 - 3
        ids, off = D.quantize_logistic(np.array(mean), np.array(ls))
        t = tables[int(ids)]
        x = np.arange(int(off) + 1, int(off) + t.size - 1)  # interior bins
        ref = _analytic(x, mean, math.exp(ls), -np.inf, np.inf)
        assert np.max(np.abs(t[x - int(off)] - ref)) < 64 / D.PROB_TOTAL


def test_mixture_of_one_equals_grid_table():
    tables = D.logistic_tables()
    rng = np.random.default_rng(2)
    cases = [(0, 0, 0), (3, 7, 48), (-5, 15, 144), (1000, 1, 100)]
    cases += [(int(rng.integers(-300, 300)), int(rng.integers(16)), int(rng.integers(145)))]
    for k, f, g in cases:
        w = int(D.HALF_WIDTHS[g])
        t = D.mixture_table(
            np.array([0.7]), np.array([k + f / 16]), np.array([-3.0 + g / 16]), k - w, k + w
        )
        assert np.array_equal(t, tables[g * 16 + f]), (k, f, g)


def test_mixture_table_matches_formula():
    logits = np.array([0.5, -1.0, 2.0])
    means = np.array([-3.2, 10.0, 40.7])
    ls = np.array([0.3, 1.5, 2.2])
    low, high = -20, 60
    t = D.mixture_table(logits, means, ls, low, high)
    assert t.shape == (high - low + 1,)
    assert abs(t.sum() - 1.0) < 1e-9 and t.min() > 0
    wts = np.exp(logits - logits.max())
    wts /= wts.sum()
    x = np.arange(low, high + 1)
    ref = sum(wts[c] * _analytic(x, means[c], np.exp(ls[c]), low, high) for c in range(3))
    assert np.max(np.abs(t - ref)) < 16 / D.PROB_TOTAL


def test_mixture_table_edge_cases():
    t = D.mixture_table([0.0], [0.0], [0.0], 0, 1)
    assert t.shape == (2,) and abs(t.sum() - 1) < 1e-12
    t = D.mixture_table([np.nan, 1e308], [np.nan, np.inf], [np.nan, -np.inf], -5, 5)
    assert abs(t.sum() - 1) < 1e-12 and t.min() > 0
    with pytest.raises(ValueError):
        D.mixture_table([0.0], [0.0], [0.0], 3, 3)
    with pytest.raises(ValueError):
        D.mixture_table([0.0, 1.0], [0.0], [0.0], 0, 10)


def test_quantize_weights():
    rng = np.random.default_rng(3)
    for n in (2, 3, 17, 1000, 70000):
        p = rng.dirichlet(np.full(n, 0.3))
        p[rng.integers(n)] = 0.0
        p /= p.sum()
        w = D.quantize_weights(p * 3.7)  # need not be normalised
        assert w.dtype == np.int64 and w.sum() == D.PROB_TOTAL and w.min() >= 1
        assert np.array_equal(D.quantize_weights(w / D.PROB_TOTAL), w)  # on grid: unchanged
        assert np.max(np.abs(w - p * D.PROB_TOTAL)) <= 2 + n / 1000
    batch = rng.random((5, 40))
    wb = D.quantize_weights(batch)
    for row, wr in zip(batch, wb, strict=True):
        assert np.array_equal(D.quantize_weights(row), wr)
    for bad in ([1.0], [0.0, 0.0], [1.0, -0.1], [1.0, np.nan], np.ones(D.MAX_TABLE_SIZE + 1)):
        with pytest.raises(ValueError):
            D.quantize_weights(np.array(bad))


def test_grid_ids_are_what_quantize_logistic_selects():
    q = np.array([-40, -17, 0, 5, 16, 31999])
    g = np.array([0, 28, 60, 100, 144, 3])
    ids, offsets = D.grid_ids(q, g)
    ref_ids, ref_offsets = D.quantize_logistic(
        q / D.MEAN_STEPS, D.LOGSCALE_MIN + g * D.LOGSCALE_STEP
    )
    assert np.array_equal(ids, ref_ids) and np.array_equal(offsets, ref_offsets)


def test_fit_logistic_finds_the_scale_and_median_of_each_row():
    rng = np.random.default_rng(0)
    rows = np.stack(
        [
            np.round(rng.logistic(-7.0, 4.0, 20000)),
            np.round(rng.logistic(30.0, 0.8, 20000)),
            np.full(20000, 3.0),  # constant: the smallest scale allowed
        ]
    ).astype(np.int64)
    q, g, bits = D.fit_logistic(rows)
    assert q.tolist() == [-7 * 16, 30 * 16, 3 * 16]
    scales = np.exp(D.LOGSCALE_MIN + g * D.LOGSCALE_STEP)
    assert abs(scales[0] - 4.0) < 0.3 and abs(scales[1] - 0.8) < 0.15
    assert g[2] == D.FIT_MIN_LOGSCALE
    assert 0.4 * 20000 < bits[2] < 0.8 * 20000  # about half a bit per symbol at that scale
    assert np.all(g >= D.FIT_MIN_LOGSCALE)
    # the estimate is the code length under the chosen grid table, give or take its tails
    ids, offsets = D.grid_ids(q[:1], g[:1])
    table = D.logistic_tables()[int(ids[0])]
    b = np.clip(rows[0] - offsets[0], 0, table.size - 1)
    assert bits[0] == pytest.approx(-np.log2(table[b]).sum(), rel=0.01)
