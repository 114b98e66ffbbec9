"""idfcompress: lossless image compression with an Integer Discrete Flow."""

from .api import (
    compress,
    compress_with_stats,
    decompress,
    decompress_image,
    decompress_pixels,
    info,
)
from .errors import IdfError
from .progressive import Stage, decode_progressive

__version__ = "0.1.0"

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
