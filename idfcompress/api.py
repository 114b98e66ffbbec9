"""The plain Python API that the command line and other programs call."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from .codec import decoder, encoder
from .codec.decoder import MAX_PIXELS
from .codec.encoder import DEFAULT_MODE, DEFAULT_TILE_SIZE, MODES, EncodeStats, Progress
from .errors import VerificationFailed
from .format import container
from .format.layout import MARGIN_KIND, REGION_KIND, TOP_LOGISTIC, is_flow_kind
from .imageio import PixelImage, from_array, from_pil, read_image, to_pil

__all__ = [
    "DEFAULT_MODE",
    "DEFAULT_TILE_SIZE",
    "MAX_PIXELS",
    "MODES",
    "EncodeStats",
    "as_pixel_image",
    "compress",
    "compress_with_stats",
    "decompress",
    "decompress_image",
    "decompress_pixels",
    "info",
    "read_image",
]

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
    mode: str = DEFAULT_MODE,
    verify: bool = False,
) -> bytes:
    """Losslessly compress an image (uint8 array, Pillow image or path) to .idf bytes.

    ``mode``: ``"predictive"`` (the default) codes every tile with the predictive coder and
    runs no network; ``"flow"`` codes every tile with the flow, coarsest level first, so
    that any prefix of the file shows the whole picture; ``"auto"`` tries both on every tile
    and keeps the smaller (slower). ``verify`` decodes the result once to make sure.
    """
    return compress_with_stats(image, model=model, tile_size=tile_size, mode=mode, verify=verify)[0]


def compress_with_stats(
    image: ImageLike,
    *,
    model: str | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    mode: str = DEFAULT_MODE,
    verify: bool = False,
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """Like :func:`compress`, also returning the measured sizes (real and ideal);
    ``progress(done, total)`` is called once per coded tile.

    ``verify`` decodes the result and raises :class:`VerificationFailed` unless it gives
    back the input's pixels and mode.
    """
    pixels = as_pixel_image(image)
    data, stats = encoder.encode(
        pixels, model=model, tile_size=tile_size, mode=mode, progress=progress
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
    return decoder.decode(data, max_pixels=max_pixels)


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
        "region_tiles": sum(1 for c in chunks if c.kind == REGION_KIND),
        "margins": sum(1 for c in chunks if c.kind == MARGIN_KIND),
        "fitted_first_stages": _fitted_first_stages(data, chunks),
        "payload_bytes": sum(c.length for c in chunks),
        "pixel_sha256": header.pixel_sha256.hex(),
    }


def _fitted_first_stages(data: bytes | memoryview, chunks: list[container.ChunkEntry]) -> int:
    """First-stage chunks whose prior byte says "fitted logistics" (of those present)."""
    flow_chunks = [c for c in chunks if is_flow_kind(c.kind)]
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
        and view[c.offset] == TOP_LOGISTIC
    )
