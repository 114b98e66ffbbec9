"""The decorator of the package's compiled kernels: numba's ``njit`` with the GIL
released, cached on disk where numba can write its cache.

numba keeps compiled code beside the source (``__pycache__``) or in the user's cache
folder. Where neither is writable (a read-only install run by a user without a home),
``cache=True`` raises at import; the kernels are then compiled in every process instead
(about 10 s at the first call), which is slow but works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

__all__ = ["jit"]


def jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, nogil=True, **options)``, without the cache where numba has
    nowhere to keep it."""

    def compile_(function: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, nogil=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, nogil=True, **options)(function)

    return compile_
