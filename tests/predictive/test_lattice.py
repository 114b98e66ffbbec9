"""The bounded cache of the encoder's index tables."""

from __future__ import annotations

import numpy as np

from idfcompress.predictive import lattice


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
