"""The decoder's walk over a region (lanes and their ring of columns) and the bounded cache
of index tables."""

from __future__ import annotations

import numpy as np
import pytest

from idfcompress.predictive import lattice

SHAPES = [(1, 1, 1), (5, 1, 3), (64, 1, 1), (70, 3, 4), (130, 9, 2), (20, 20, 3), (150, 40, 3)]


def _walk(h: int, w: int, c: int) -> None:
    """Follow every step: each cell read (neighbours, and the earlier planes at the pixel)
    must hold the value the encoder's tables name (or be the zero cell), and the steps
    must visit the values in the encoder's coding order."""
    lanes = lattice.Lanes(h, w, c)
    nbr = lattice.neighbours(h, w)  # cells 1 + y w + x of one plane; 0: the zero cell
    order, bounds = lattice.steps(h, w, c)
    expected_steps = np.split(order, bounds)
    held = np.full(lanes.cells, -1)  # which value (p h w + y w + x) each ring cell holds
    held[0] = -2  # the zero cell
    steps = [lanes.step(s) for s in range(lanes.count)]
    assert len(steps) == len(expected_steps)
    for step, expected in zip(steps, expected_steps, strict=True):
        if step is None:
            assert expected.size == 0
            continue
        plane, here, first, before, dest, near = step
        p, cell = np.divmod(expected, h * w + 1)
        assert np.array_equal(dest, p * h * w + cell - 1)  # the encoder's order
        pixel = cell - 1
        want = nbr[pixel]  # (n, 6) cells within the plane, 0 for the zero cell
        want_value = np.where(want > 0, p[:, None] * h * w + want - 1, -2)
        assert np.array_equal(held[near], want_value)
        later = plane > 0
        assert np.array_equal(held[first[later]], pixel[later])  # plane 0 at the pixel
        assert np.array_equal(held[before[later]], (plane[later] - 1) * h * w + pixel[later])
        held[here] = dest


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lanes_read_what_the_encoder_predicts_from(shape):
    _walk(*shape)


def test_the_ring_is_a_few_columns_whatever_the_width():
    narrow, wide = lattice.Lanes(200, 10, 3), lattice.Lanes(200, 190, 3)
    assert narrow.cells == wide.cells == 1 + 3 * 200 * narrow.ring
    assert narrow.ring <= 5


def test_byte_cache_is_bounded_and_least_recently_used():
    cache = lattice.ByteCache(1000)
    built = []

    def array(n):
        def build():
            built.append(n)
            return np.zeros(n, np.uint8)

        return build

    cache.get("a", array(400))
    cache.get("b", array(400))
    cache.get("a", array(400))  # cached: a is now the most recent
    assert built == [400, 400] and cache.nbytes == 800
    cache.get("c", array(400))  # evicts b, the least recently used
    assert cache.nbytes == 800
    cache.get("a", array(400))
    assert built == [400, 400, 400]
    cache.get("b", array(400))
    assert built == [400, 400, 400, 400]
    big = cache.get("big", array(2000))  # built, but larger than the bound: not kept
    assert big.size == 2000 and cache.nbytes <= 1000
    cache.clear()
    assert cache.nbytes == 0


def test_large_regions_are_walked_without_caching_their_steps():
    lattice.release()
    lanes, walk = lattice.schedule(1448, 1448, 3)
    assert lattice.cached_bytes() == 0 and not isinstance(walk, list)
    lanes, walk = lattice.schedule(64, 64, 3)
    assert isinstance(walk, list) and 0 < lattice.cached_bytes() <= lattice.CACHE_BYTES
    lattice.release()
    assert lattice.cached_bytes() == 0
