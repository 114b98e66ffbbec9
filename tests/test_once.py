"""once: a value built by one thread while the others wait; the codec's warm-up."""

from __future__ import annotations

import threading
import time

import idfcompress
from idfcompress.once import once
from idfcompress.predictive import lattice


def test_a_value_is_built_once_whatever_the_threads():
    calls = []

    @once
    def value() -> list[int]:
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to ask while it builds
        return [42]

    results = []
    threads = [threading.Thread(target=lambda: results.append(value())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and all(r is results[0] for r in results) and results[0] == [42]


def test_warm_up_leaves_no_index_tables_behind():
    idfcompress.warm_up()
    assert lattice.cached_bytes() == 0
