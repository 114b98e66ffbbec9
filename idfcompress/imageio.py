"""Conversion between Pillow images / arrays and the pixel layouts the codec stores."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UnsupportedImage

CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
# Pillow formats that store 8-bit pixels losslessly, keyed by file extension.
LOSSLESS_FORMATS = {
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
    ".tga": "TGA",
    ".qoi": "QOI",
}
# Modes each format stores exactly (others would lose alpha or change the mode).
FORMAT_MODES = {
    "PNG": {"L", "LA", "RGB", "RGBA"},
    "TIFF": {"L", "LA", "RGB", "RGBA"},
    "BMP": {"L", "RGB"},
    "WEBP": {"RGB", "RGBA"},
    "PPM": {"L", "RGB"},
    "TGA": {"L", "LA", "RGB", "RGBA"},
    "QOI": {"RGB", "RGBA"},
}


@dataclass
class PixelImage:
    """8-bit pixels (H, W, C) with the mode they represent and metadata to carry along."""

    pixels: np.ndarray
    mode: str
    source_mode: str | None = None
    metadata: dict[str, bytes] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _metadata(image: Image.Image) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    icc = image.info.get("icc_profile")
    if icc:
        meta["ICCP"] = bytes(icc)
    exif = image.info.get("exif")
    if exif:
        meta["EXIF"] = bytes(exif)
    return meta


def from_pil(image: Image.Image) -> PixelImage:
    """Pixels of a Pillow image; P becomes RGB(A), 1 becomes L; deeper modes are refused."""
    mode, source = image.mode, None
    has_transparency = "transparency" in image.info
    if mode == "1":
        image, source = image.convert("L"), "1"
    elif mode in ("P", "PA"):
        image, source = image.convert("RGBA" if has_transparency or mode == "PA" else "RGB"), "P"
    elif mode in ("L", "RGB") and has_transparency:
        image = image.convert("LA" if mode == "L" else "RGBA")
    elif mode not in CHANNELS:
        depth = "16-bit and float images are" if mode.startswith(("I", "F")) else f"mode {mode} is"
        raise UnsupportedImage(
            f"{depth} not supported (image mode {mode}); supported: 8-bit L, LA, RGB, RGBA, P, 1"
        )
    pixels = np.asarray(image, dtype=np.uint8).reshape(
        image.height, image.width, CHANNELS[image.mode]
    )
    return PixelImage(np.ascontiguousarray(pixels), image.mode, source, _metadata(image))


def from_array(array: np.ndarray) -> PixelImage:
    """Pixels of a uint8 array shaped (H, W) or (H, W, C) with C in 1..4."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise UnsupportedImage(f"only uint8 arrays are supported, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise UnsupportedImage(f"array shape {array.shape} is not (H, W) or (H, W, 1..4)")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise UnsupportedImage("the image is empty")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    return PixelImage(np.ascontiguousarray(array), mode)


def read_image(source: str | os.PathLike | bytes) -> PixelImage:
    """Read an image file (path or encoded bytes)."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(handle) as image:
            image.load()
            return from_pil(image)
    except UnsupportedImage:
        raise
    except Image.DecompressionBombError as exc:
        raise UnsupportedImage(str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnsupportedImage(f"cannot read image: {exc}") from None


def to_pil(image: PixelImage) -> Image.Image:
    """A Pillow image with the pixels and metadata (ICC profile, EXIF) attached."""
    pixels = image.pixels
    pil = Image.fromarray(pixels[:, :, 0] if image.mode == "L" else pixels, image.mode)
    if "ICCP" in image.metadata:
        pil.info["icc_profile"] = image.metadata["ICCP"]
    if "EXIF" in image.metadata:
        pil.info["exif"] = image.metadata["EXIF"]
    return pil


def output_format(path: str | os.PathLike) -> str:
    """Pillow format for an output path; lossy or unknown extensions are refused."""
    suffix = Path(path).suffix.lower() or ".png"
    if suffix not in LOSSLESS_FORMATS:
        known = ", ".join(sorted(LOSSLESS_FORMATS))
        raise UnsupportedImage(f"cannot write '{suffix}' losslessly; use one of {known}")
    return LOSSLESS_FORMATS[suffix]


def encode_image(image: PixelImage, fmt: str = "PNG") -> bytes:
    """The image encoded losslessly in a classic format, with its metadata."""
    if image.mode not in FORMAT_MODES[fmt]:
        usable = ", ".join(sorted(FORMAT_MODES[fmt]))
        raise UnsupportedImage(
            f"{fmt} cannot store {image.mode} images exactly (only {usable}); use .png"
        )
    pil = to_pil(image)
    options: dict = {}
    if "ICCP" in image.metadata and fmt in ("PNG", "TIFF", "WEBP"):
        options["icc_profile"] = image.metadata["ICCP"]
    if "EXIF" in image.metadata and fmt in ("PNG", "TIFF", "WEBP"):
        options["exif"] = image.metadata["EXIF"]
    if fmt == "WEBP":
        options.update(lossless=True, exact=True)
    if fmt == "PNG":
        options["compress_level"] = 6
    buffer = io.BytesIO()
    try:
        pil.save(buffer, format=fmt, **options)
    except (OSError, KeyError, ValueError) as exc:
        raise UnsupportedImage(f"{fmt} cannot store this {image.mode} image ({exc})") from None
    return buffer.getvalue()
