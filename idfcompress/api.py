"""The plain Python API that the command line and other programs call."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from PIL import Image

from .codec import decoder, encoder
from .codec.decoder import MAX_PIXELS
from .codec.encoder import DEFAULT_TILE_SIZE, EncodeStats, Progress
from .codec.threads import set_threads
from .errors import ImageTooLarge, VerificationFailed
from .format import container
from .format.layout import (
    COARSE_KIND,
    MARGIN_KIND,
    REGION_KIND,
    TOP_LOGISTIC,
    coarse_stride,
    is_flow_kind,
)
from .imageio import PixelImage, from_array, from_pil, read_image, to_pil
from .predictive import regions

__all__ = [
    "DEFAULT_TILE_SIZE",
    "MAX_PIXELS",
    "EncodeStats",
    "as_pixel_image",
    "compress",
    "compress_with_stats",
    "decompress",
    "decompress_image",
    "decompress_pixels",
    "info",
    "read_image",
    "read_source",
    "set_threads",
    "warm_up",
]

ImageLike = np.ndarray | Image.Image | PixelImage | str | os.PathLike
# An .idf file: its bytes, a path, or a binary file object (read from where it stands).
Source = bytes | bytearray | memoryview | str | os.PathLike | IO[bytes]
_HEADER_PIECE = 1 << 12  # bytes read at a time while looking for the end of a header


def read_source(source: Source) -> bytes | bytearray | memoryview:
    """The bytes of an .idf file given as bytes (returned as they are), a path or a binary
    file object (read once, to its end)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return source
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read()
    return _read_all(source)


def _read_all(handle: Any, prefix: bytes = b"") -> bytes:
    read = getattr(handle, "read", None)
    if read is None:
        raise TypeError(
            f"expected .idf bytes, a path or a binary file, not {type(handle).__name__}"
        )
    data = read()
    if not isinstance(data, bytes | bytearray):
        raise TypeError("the file must be opened in binary mode ('rb')")
    return prefix + data if prefix else bytes(data)


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
    tile_size: int = DEFAULT_TILE_SIZE,
    verify: bool = False,
) -> bytes:
    """Losslessly compress an image (uint8 array, Pillow image or path) to .idf bytes, coarse
    level first, so that any prefix past it shows the whole picture. ``verify`` decodes the
    result once to make sure."""
    return compress_with_stats(image, tile_size=tile_size, verify=verify)[0]


def compress_with_stats(
    image: ImageLike,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    verify: bool = False,
    progress: Progress | None = None,
) -> tuple[bytes, EncodeStats]:
    """Like :func:`compress`, also returning what was measured (sizes, tiles);
    ``progress(done, total)`` is called once per coded tile.

    ``verify`` decodes the result and raises :class:`VerificationFailed` unless it gives
    back the input's pixels and mode.
    """
    pixels = as_pixel_image(image)
    try:
        data, stats = encoder.encode(pixels, tile_size=tile_size, progress=progress)
    except MemoryError:
        raise ImageTooLarge(
            f"not enough memory to compress this {pixels.width}x{pixels.height} image"
        ) from None
    if verify:
        decoded = decompress_pixels(data, max_pixels=None)
        if decoded.mode != pixels.mode or not np.array_equal(decoded.pixels, pixels.pixels):
            raise VerificationFailed("verification failed: the output does not decode to the input")
    return data, stats


def warm_up() -> None:
    """Prepares the default coder ahead of a first :func:`compress` (tables, the learned
    prior, compiled code from numba's cache: about a second, once per process); optional,
    for callers that can do it meanwhile, on a thread, while they read the image."""
    encoder.warm_up()


def decompress_pixels(source: Source, *, max_pixels: int | None = MAX_PIXELS) -> PixelImage:
    """Decode an .idf file (bytes, a path or a binary file) to pixels, mode and metadata
    (checksum verified)."""
    try:
        return decoder.decode(memoryview(read_source(source)), max_pixels=max_pixels)
    except MemoryError:
        raise ImageTooLarge("not enough memory to decompress this image") from None


def decompress(source: Source, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode an .idf file (bytes, a path or a binary file) to a uint8 array (H, W) for L,
    else (H, W, C); checksum verified."""
    pixels = decompress_pixels(source, max_pixels=max_pixels).pixels
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def decompress_image(source: Source, *, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode an .idf file (bytes, a path or a binary file) to a Pillow image carrying the
    ICC profile and EXIF."""
    return to_pil(decompress_pixels(source, max_pixels=max_pixels))


def info(source: Source) -> dict[str, Any]:
    """Header fields of an .idf file (no decoding): bytes, a path or a binary file. Of a
    path or a seekable file only the header, one byte per first flow stage and two per region
    payload are read."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        header, chunks = container.read_header(view)
        return _info(header, chunks, _byte_in(view))
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return _info_of_file(handle)
    return _info_of_file(source)


def _byte_in(view: memoryview) -> Callable[[int], int | None]:
    return lambda offset: view[offset] if offset < view.nbytes else None


def _info_of_file(handle: Any) -> dict[str, Any]:
    """:func:`info` of a file object: its header, then single bytes where it can seek."""
    prefix = b""
    while (size := container.header_size_needed(prefix)) is None or len(prefix) < size:
        piece = handle.read(_HEADER_PIECE if size is None else size - len(prefix))
        if not isinstance(piece, bytes | bytearray):
            raise TypeError("the file must be opened in binary mode ('rb')")
        if not piece:
            break
        prefix += piece
    header, chunks = container.read_header(prefix)
    seekable = getattr(handle, "seekable", None)
    if not (seekable and seekable()):
        view = memoryview(_read_all(handle, prefix))
        return _info(header, chunks, _byte_in(view))
    start = handle.tell() - len(prefix)

    def byte_at(offset: int) -> int | None:
        handle.seek(start + offset)
        got = handle.read(1)
        return got[0] if got else None

    return _info(header, chunks, byte_at)


def _info(
    header: container.Header,
    chunks: list[container.ChunkEntry],
    byte_at: Callable[[int], int | None],
) -> dict[str, Any]:
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
                "flow_chunks": sum(1 for c in chunks if c.group == i and is_flow_kind(c.kind)),
            }
            for i, g in enumerate(header.groups)
        ],
        "metadata": {tag: len(value) for tag, value in header.metadata.items()},
        "chunks": len(chunks),
        "region_tiles": sum(1 for c in chunks if c.kind == REGION_KIND),
        "margins": sum(1 for c in chunks if c.kind == MARGIN_KIND),
        "coarse_tiles": sum(1 for c in chunks if c.kind == COARSE_KIND),
        "coarse_stride": coarse_stride(header.height, header.width, header.tile_size)
        if any(c.kind == COARSE_KIND for c in chunks)
        else 0,
        "fitted_first_stages": _fitted_first_stages(byte_at, chunks),
        "region_coders": _region_coders(byte_at, chunks),
        "payload_bytes": sum(c.length for c in chunks),
        "pixel_sha256": header.pixel_sha256.hex(),
    }


def _region_coders(
    byte_at: Callable[[int], int | None], chunks: list[container.ChunkEntry]
) -> dict[str, int]:
    """How many region, margin and coarse payloads each coder codes (from their first two
    bytes)."""
    counts: dict[str, int] = {}
    for c in chunks:
        if c.kind in (REGION_KIND, MARGIN_KIND, COARSE_KIND) and c.length:
            second = byte_at(c.offset + 1) if c.length > 1 else None
            name = regions.coder_name(byte_at(c.offset), second)
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _fitted_first_stages(
    byte_at: Callable[[int], int | None], chunks: list[container.ChunkEntry]
) -> int:
    """First-stage chunks whose prior byte says "fitted logistics" (of those present)."""
    flow_chunks = [c for c in chunks if is_flow_kind(c.kind)]
    first: dict[int, int] = {}
    for c in flow_chunks:
        first[c.group] = max(first.get(c.group, 0), c.kind)
    return sum(
        1
        for c in flow_chunks
        if c.kind == first[c.group] and c.length and byte_at(c.offset) == TOP_LOGISTIC
    )
