"""The threads tiles are coded on, side by side: the predictive coder's compiled kernels
release the GIL, so one image uses every core. The bytes are the same for any count."""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["map_tiles", "requested", "set_threads", "threads"]

T = TypeVar("T")
R = TypeVar("R")

_threads: int | None = None


def threads() -> int:
    """The threads one encode or decode uses: :func:`set_threads`'s count, or the cores this
    process may use."""
    if _threads is not None:
        return _threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def requested() -> int | None:
    """:func:`set_threads`'s count, None when it was not set (the flow's networks then use
    torch's own count)."""
    return _threads


def set_threads(count: int | None) -> None:
    """Code tiles, and run the flow's networks, on ``count`` threads (None: as many as the
    cores)."""
    global _threads
    if count is not None and count < 1:
        raise ValueError("threads must be at least 1")
    _threads = count


def map_tiles(work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``work`` of each item, in order, on :func:`threads` threads; at most twice that many
    are started ahead of the one the caller waits for, so that memory follows the threads,
    not the image. An exception comes out where its item's result would have."""
    count = threads()
    if count == 1:
        yield from map(work, items)
        return
    with cf.ThreadPoolExecutor(count, thread_name_prefix="idfc-tile") as pool:
        pending: list[cf.Future[R]] = []
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) > 2 * count:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()
