"""Conversion between Pillow images / arrays and the pixel layouts the codec stores.

Metadata. The codec keeps an image's ICC profile (tag ``ICCP``) and EXIF block (``EXIF``)
as bytes. On output each format gets what it can store: PNG and WebP both, byte for byte
(up to the ``Exif\\0\\0`` prefix, which Pillow adds or strips by format); TIFF the profile,
and the EXIF tags merged into the TIFF's own directory (how Pillow writes EXIF to TIFF),
less the tags that describe the pixel layout or orientation, which would change the image
as read back; BMP, PPM, TGA and QOI neither. Whatever is left out is named in one
:class:`~idfcompress.errors.MetadataWarning`; an EXIF block Pillow cannot parse is left out
of TIFF output the same way, never an error. Pillow's own warnings while reading or writing
are passed on as one-line :class:`~idfcompress.errors.ImageWarning` (its
``DecompressionBombWarning`` is dropped: the codec applies its own limits).

Errors. A ``MemoryError`` while reading, converting or writing an image becomes
``ImageTooLarge``, and so does Pillow's ``DecompressionBombError``; an animated or
multi-frame input (GIF, APNG, multi-page TIFF, ...) is ``UnsupportedImage``, naming its
frame count, since the codec stores one frame.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import IdfWarning, ImageTooLarge, ImageWarning, MetadataWarning, UnsupportedImage

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
# Metadata tags each format stores (see the module docstring); others are left out, warned.
FORMAT_METADATA = {"PNG": {"ICCP", "EXIF"}, "WEBP": {"ICCP", "EXIF"}, "TIFF": {"ICCP", "EXIF"}}
METADATA_NAMES = {"ICCP": "ICC profile", "EXIF": "EXIF"}
# TIFF tags an EXIF block must not set in a TIFF's directory: they say how the pixels are
# stored or shown (size, samples, strips, compression, colour map, orientation, ...), and
# the ICC profile, which comes from the ICCP tag.
TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281}
    | {284, 290, 291, 292, 293, 296, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332}
    | {333, 334, 338, 339, 340, 341, 347, 34675}
    | set(range(512, 522))
    | {529, 530, 531, 532}
)


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


def _one_line(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def pillow_warnings(context: str) -> Iterator[None]:
    """Run Pillow calls with their warnings caught; each is passed on as one
    :class:`ImageWarning` line (``context: message``) once the block ends. Ours pass
    through unchanged, DecompressionBombWarning is dropped, deprecations keep their class."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for item in caught:
        if issubclass(item.category, Image.DecompressionBombWarning):
            continue
        if issubclass(item.category, (IdfWarning, DeprecationWarning, PendingDeprecationWarning)):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
            continue
        message = _one_line(item.message)
        if message not in seen:
            seen.add(message)
            warnings.warn(ImageWarning(f"{context}: {message}"), stacklevel=3)


def _metadata(image: Image.Image) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    icc = image.info.get("icc_profile")
    if icc:
        meta["ICCP"] = bytes(icc)
    exif = image.info.get("exif")
    if exif:
        meta["EXIF"] = bytes(exif)
    return meta


def frame_count(image: Image.Image) -> int:
    """Frames (or pages) of an opened image: 1 for a still one."""
    return max(1, int(getattr(image, "n_frames", 1)))


def _refuse_animation(image: Image.Image) -> None:
    frames = frame_count(image)
    if frames > 1:
        kind = "multi-page" if image.format == "TIFF" else "animated"
        raise UnsupportedImage(
            f"{kind} image with {frames} frames: idfcompress stores one frame "
            "(save the frame to keep as a still image first)"
        )


def _too_large(image: Image.Image, doing: str) -> ImageTooLarge:
    return ImageTooLarge(
        f"not enough memory to {doing} this {image.width}x{image.height} {image.mode} image"
    )


def from_pil(image: Image.Image) -> PixelImage:
    """Pixels of a Pillow image; P becomes RGB(A), 1 becomes L; deeper modes are refused,
    and so are images of several frames."""
    _refuse_animation(image)
    mode, source = image.mode, None
    has_transparency = "transparency" in image.info
    try:
        with pillow_warnings("reading the image"):
            if mode == "1":
                image, source = image.convert("L"), "1"
            elif mode in ("P", "PA"):
                rgba = has_transparency or mode == "PA"
                image, source = image.convert("RGBA" if rgba else "RGB"), "P"
            elif mode in ("L", "RGB") and has_transparency:
                image = image.convert("LA" if mode == "L" else "RGBA")
            elif mode not in CHANNELS:
                kind = "16-bit and float images are" if mode.startswith(("I", "F")) else None
                depth = kind or f"mode {mode} is"
                raise UnsupportedImage(
                    f"{depth} not supported (image mode {mode}); "
                    "supported: 8-bit L, LA, RGB, RGBA, P, 1"
                )
            pixels = np.asarray(image, dtype=np.uint8).reshape(
                image.height, image.width, CHANNELS[image.mode]
            )
            pixels = np.ascontiguousarray(pixels)
    except MemoryError:
        raise _too_large(image, "convert") from None
    return PixelImage(pixels, image.mode, source, _metadata(image))


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
    try:
        return PixelImage(np.ascontiguousarray(array), mode)
    except MemoryError:
        raise ImageTooLarge(f"not enough memory for a {array.shape} array") from None


def read_image(source: str | os.PathLike | bytes) -> PixelImage:
    """Read an image file (path or encoded bytes): ``UnsupportedImage`` if it is not an
    image of one frame Pillow can read, ``ImageTooLarge`` beyond memory or Pillow's
    decompression-bomb limit."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with pillow_warnings("reading the image"), Image.open(handle) as image:
            _refuse_animation(image)
            try:
                image.load()
            except MemoryError:
                raise _too_large(image, "read") from None
            return from_pil(image)
    except (UnsupportedImage, ImageTooLarge):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(_one_line(exc)) from None
    except MemoryError:
        raise ImageTooLarge("not enough memory to read this image") from None
    except FileNotFoundError as exc:
        raise UnsupportedImage(f"cannot read image: {_one_line(exc)}") from None
    except Exception as exc:  # Pillow's parsers raise many kinds on damaged files
        raise UnsupportedImage(
            f"cannot read image: {_one_line(exc) or type(exc).__name__}"
        ) from None


def to_pil(image: PixelImage) -> Image.Image:
    """A Pillow image with the pixels and metadata (ICC profile, EXIF) attached."""
    pixels = image.pixels
    try:
        pil = Image.fromarray(pixels[:, :, 0] if image.mode == "L" else pixels, image.mode)
    except MemoryError:
        raise ImageTooLarge(
            f"not enough memory for this {image.width}x{image.height} image"
        ) from None
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


def _tiff_exif(exif: bytes, left_out: list[str]) -> Image.Exif | None:
    """The EXIF tags a TIFF's directory can take (``None`` if none), what is left out
    appended to ``left_out``."""
    parsed = Image.Exif()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parsed.load(exif)
            groups = {key: dict(parsed.get_ifd(key)) for key in (0x8769, 0x8825) if key in parsed}
            thumbnail = bool(parsed.get_ifd(0x1))  # IFD1: Pillow does not write it to TIFF
        except Exception as exc:  # a damaged block: struct.error, SyntaxError, ...
            left_out.append(f"EXIF (Pillow cannot read it: {_one_line(exc, 80)})")
            return None
    if caught:
        left_out.append(f"EXIF tags Pillow cannot read ({_one_line(caught[0].message, 80)})")
    layout = sorted(key for key in parsed if key in TIFF_LAYOUT_TAGS)
    if layout:
        tags = ", ".join(map(str, layout))
        left_out.append(f"EXIF tags {tags} (they would change the TIFF's layout)")
    if thumbnail:
        left_out.append("the EXIF thumbnail")
    kept = Image.Exif()
    for key, value in parsed.items():
        if key in groups:  # the sub-directory first, then the tag that points to it
            kept.get_ifd(key).update(groups[key])
        if key not in TIFF_LAYOUT_TAGS:
            kept[key] = value
    return kept if len(kept) else None


def _same_pixels(data: bytes, image: PixelImage) -> bool:
    """Whether Pillow reads ``data`` back as exactly ``image``'s pixels and mode."""
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as back:
            warnings.simplefilter("ignore")
            back.load()
            pixels = np.asarray(back).reshape(back.height, back.width, -1)
            return back.mode == image.mode and np.array_equal(pixels, image.pixels)
    except Exception:
        return False


def _save(pil: Image.Image, fmt: str, options: dict) -> bytes:
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def encode_image(image: PixelImage, fmt: str = "PNG") -> bytes:
    """The image encoded losslessly in a classic format, with the metadata it can store;
    each left out is named in one :class:`MetadataWarning`."""
    if image.mode not in FORMAT_MODES[fmt]:
        usable = ", ".join(sorted(FORMAT_MODES[fmt]))
        raise UnsupportedImage(
            f"{fmt} cannot store {image.mode} images exactly (only {usable}); use .png"
        )
    stored = FORMAT_METADATA.get(fmt, set())
    left_out = [
        METADATA_NAMES.get(tag, f"metadata tag {tag!r}")
        for tag in image.metadata
        if tag not in stored
    ]
    pil = to_pil(image)
    pil.info.clear()  # what is written is decided here, by format
    options: dict = {}
    if "ICCP" in image.metadata and "ICCP" in stored:
        options["icc_profile"] = image.metadata["ICCP"]
    exif = image.metadata.get("EXIF") if "EXIF" in stored else None
    if exif is not None:
        options["exif"] = _tiff_exif(exif, left_out) if fmt == "TIFF" else exif
        if options["exif"] is None:
            del options["exif"]
    if fmt == "WEBP":
        options.update(lossless=True, exact=True)
    if fmt == "PNG":
        options["compress_level"] = 6
    try:
        data = _write(pil, fmt, options, image, left_out)
    except MemoryError:
        raise _too_large(pil, f"write {fmt} of") from None
    if left_out:
        warnings.warn(
            MetadataWarning(f"{fmt} output: left out {'; '.join(left_out)}"), stacklevel=2
        )
    return data


def _write(
    pil: Image.Image, fmt: str, options: dict, image: PixelImage, left_out: list[str]
) -> bytes:
    """Encode, with TIFF's merged EXIF tags checked: if writing them fails or changes the
    pixels as read back, the file is written without them."""
    try:
        with pillow_warnings(f"writing {fmt}"):
            if fmt == "TIFF" and "exif" in options:
                try:
                    data = _save(pil, fmt, options)
                    if _same_pixels(data, image):
                        return data
                    reason = "they change the pixels as read back"
                except (MemoryError, UnsupportedImage):
                    raise
                except Exception as exc:
                    reason = f"Pillow cannot write them: {_one_line(exc, 80)}"
                left_out.append(f"the EXIF tags ({reason})")
                del options["exif"]
            return _save(pil, fmt, options)
    except (OSError, KeyError, ValueError) as exc:
        raise UnsupportedImage(
            f"{fmt} cannot store this {image.mode} image ({_one_line(exc)})"
        ) from None
