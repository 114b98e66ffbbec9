"""idfcompress: lossless image compression with an Integer Discrete Flow.

The names below are loaded on first use, so that ``import idfcompress`` (and ``idfc
--version``) costs almost nothing; torch is imported only when a network runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import IdfError

__version__ = "0.1.0"

_LAZY = {
    "compress": "api",
    "compress_with_stats": "api",
    "decompress": "api",
    "decompress_image": "api",
    "decompress_pixels": "api",
    "info": "api",
    "Stage": "codec.progressive",
    "decode_progressive": "codec.progressive",
}

__all__ = [
    "IdfError",
    "Stage",
    "__version__",
    "compress",
    "compress_with_stats",
    "decode_progressive",
    "decompress",
    "decompress_image",
    "decompress_pixels",
    "info",
]

if TYPE_CHECKING:
    from .api import (
        compress,
        compress_with_stats,
        decompress,
        decompress_image,
        decompress_pixels,
        info,
    )
    from .codec.progressive import Stage, decode_progressive


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
