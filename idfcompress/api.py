"""The plain Python API that the command line and other programs call."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from . import codec, container
from .codec import DEFAULT_EFFORT, DEFAULT_TILE_SIZE, MAX_PIXELS, EncodeStats
from .errors import VerificationFailed
from .imageio import PixelImage, from_array, from_pil, read_image, to_pil

__all__ = ["read_image"]

ImageLike = np.ndarray | Image.Image | PixelImage | str | os.PathLike


def as_pixel_image(image: ImageLike) -> PixelImage:
    """Accept an array, a Pillow image, a PixelImage or an image file path."""
    if isinstance(image, PixelImage):
        return image
    if isinstance(image, Image.Image):
        return from_pil(image)
    if isinstance(image, np.ndarray):
        return from_array(image)
    return read_image(image)


def compress(
    image: ImageLike,
    *,
    model: str | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    effort: int = DEFAULT_EFFORT,
    verify: bool = False,
) -> bytes:
    """Losslessly compress an image (uint8 array, Pillow image or path) to .idf bytes;
    ``effort`` 2 also tries the flow on every tile (slower), ``verify`` decodes the result
    once to make sure (:func:`compress_with_stats`)."""
    return compress_with_stats(
        image, model=model, tile_size=tile_size, effort=effort, verify=verify
    )[0]


def compress_with_stats(
    image: ImageLike,
    *,
    model: str | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    allow_raw: bool = True,
    effort: int = DEFAULT_EFFORT,
    verify: bool = False,
    progress: codec.Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """Like :func:`compress`, also returning the measured sizes (real and ideal).

    ``effort``: 1 (the default) codes every tile as a region payload (predictive coding, or
    LZMA where that is smaller), 2 also codes every tile with the flow and keeps the smaller.

    ``verify`` decodes the result and raises :class:`VerificationFailed` unless it gives
    back the input's pixels and mode.
    """
    pixels = as_pixel_image(image)
    data, stats = codec.encode(
        pixels,
        model=model,
        tile_size=tile_size,
        allow_raw=allow_raw,
        effort=effort,
        progress=progress,
    )
    if verify:
        decoded = decompress_pixels(data, max_pixels=None)
        if decoded.mode != pixels.mode or not np.array_equal(decoded.pixels, pixels.pixels):
            raise VerificationFailed("verification failed: the output does not decode to the input")
    return data, stats


def decompress_pixels(
    data: bytes | memoryview, *, max_pixels: int | None = MAX_PIXELS
) -> PixelImage:
    """Decode .idf bytes to pixels, mode and metadata (checksum verified)."""
    return codec.decode(data, max_pixels=max_pixels)


def decompress(data: bytes | memoryview, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode .idf bytes to a uint8 array (H, W) for L, else (H, W, C); checksum verified."""
    pixels = decompress_pixels(data, max_pixels=max_pixels).pixels
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def decompress_image(
    data: bytes | memoryview, *, max_pixels: int | None = MAX_PIXELS
) -> Image.Image:
    """Decode .idf bytes to a Pillow image carrying the ICC profile and EXIF."""
    return to_pil(decompress_pixels(data, max_pixels=max_pixels))


def info(data: bytes | memoryview) -> dict[str, Any]:
    """Header fields of an .idf file (no decoding)."""
    header, chunks = container.read_header(data)
    return {
        "width": header.width,
        "height": header.height,
        "mode": header.mode,
        "source_mode": header.source_mode,
        "tile_size": header.tile_size,
        "tiles": header.tile_count,
        "groups": [
            {
                "channels": g.channels,
                "first_channel": g.first_channel,
                "model": g.model_name,
                "model_sha256": g.model_sha256.hex(),
                "arithmetic": container.ARITHMETICS.get(g.arithmetic, str(g.arithmetic)),
            }
            for g in header.groups
        ],
        "metadata": {tag: len(value) for tag, value in header.metadata.items()},
        "chunks": len(chunks),
        "raw_tiles": sum(1 for c in chunks if c.kind == codec.RAW_KIND),
        "margins": sum(1 for c in chunks if c.kind == codec.MARGIN_KIND),
        "fitted_first_stages": _fitted_first_stages(data, chunks),
        "payload_bytes": sum(c.length for c in chunks),
        "pixel_sha256": header.pixel_sha256.hex(),
    }


def _fitted_first_stages(data: bytes | memoryview, chunks: list[container.ChunkEntry]) -> int:
    """First-stage chunks whose prior byte says "fitted logistics" (of those present)."""
    flow_chunks = [c for c in chunks if c.kind not in (codec.RAW_KIND, codec.MARGIN_KIND)]
    first: dict[int, int] = {}
    for c in flow_chunks:
        first[c.group] = max(first.get(c.group, 0), c.kind)
    view = memoryview(data)
    return sum(
        1
        for c in flow_chunks
        if c.kind == first[c.group]
        and c.length
        and c.offset < view.nbytes
        and view[c.offset] == codec.TOP_LOGISTIC
    )
