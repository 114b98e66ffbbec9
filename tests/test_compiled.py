"""The kernels' decorator: numba's cache where it can be written, none where it cannot."""

from __future__ import annotations

import numba
import numpy as np

from idfcompress import compiled


def test_a_kernel_without_a_writable_cache_is_still_compiled(monkeypatch):
    real = numba.njit

    def no_locator(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real(*args, **options)

    monkeypatch.setattr(compiled.numba, "njit", no_locator)

    @compiled.jit()
    def total(values):
        s = 0
        for v in values:
            s += v
        return s

    assert total(np.arange(10)) == 45 and isinstance(total, numba.core.dispatcher.Dispatcher)
