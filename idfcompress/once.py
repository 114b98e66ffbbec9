"""A thread-safe cache for the value of a function without arguments (``functools.cache``
lets two threads that call it together both compute it)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["once"]

T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """``build``'s value, computed by the first caller while any others wait, then kept."""
    lock = threading.Lock()
    done: list[T] = []

    @functools.wraps(build)
    def value() -> T:
        if not done:
            with lock:
                if not done:
                    done.append(build())
        return done[0]

    return value
