"""imageio: metadata into every output format (or a one-line warning), Pillow's warnings
never raw, MemoryError and decompression bombs as ImageTooLarge, animations refused."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

import idfcompress as ic
from idfcompress import api, imageio
from idfcompress.codec import encoder
from idfcompress.errors import (
    IdfWarning,
    ImageTooLarge,
    ImageWarning,
    MetadataWarning,
    UnsupportedImage,
)
from idfcompress.imageio import LOSSLESS_FORMATS, PixelImage, encode_image, read_image

FORMATS = sorted(set(LOSSLESS_FORMATS.values()))
ICC = b"not a real ICC profile" * 5


def _pixels(mode: str = "RGB", height: int = 12, width: int = 17) -> np.ndarray:
    channels = imageio.CHANNELS[mode]
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def _camera_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "idfcompress camera"  # Make
    exif[0x0131] = "test suite"  # Software
    exif.get_ifd(0x8769)[0x9003] = "2026:12:03 10:00:00"  # Exif IFD: DateTimeOriginal
    exif.get_ifd(0x8825)[0x0001] = "N"  # GPS IFD: GPSLatitudeRef
    return exif.tobytes()


def _read_back(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading our output must not make Pillow warn
        image = Image.open(io.BytesIO(data))
        image.load()
    return image


def _same_pixels(image: Image.Image, pixels: np.ndarray) -> bool:
    array = np.asarray(image).reshape(image.height, image.width, -1)
    return np.array_equal(array, pixels)


def _encoded(image: PixelImage, fmt: str) -> tuple[bytes, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = encode_image(image, fmt)
    return data, caught


def _strip(exif: bytes) -> bytes:
    return exif[6:] if exif.startswith(b"Exif\0\0") else exif


def _mode_for(fmt: str) -> str:
    return "RGB" if "RGB" in imageio.FORMAT_MODES[fmt] else "L"


# ------------------------------------------------------------------------------ metadata


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_round_trips_or_is_named_in_one_warning(fmt):
    pixels = _pixels(_mode_for(fmt))
    image = PixelImage(pixels, _mode_for(fmt), metadata={"ICCP": ICC, "EXIF": _camera_exif()})
    data, caught = _encoded(image, fmt)
    back = _read_back(data)
    assert _same_pixels(back, pixels) and back.mode == image.mode
    stored = imageio.FORMAT_METADATA.get(fmt, set())
    if "ICCP" in stored:
        assert back.info["icc_profile"] == ICC
    if fmt in ("PNG", "WEBP"):  # the block itself, byte for byte
        assert _strip(back.info["exif"]) == _strip(_camera_exif())
        assert _strip(read_image(data).metadata["EXIF"]) == _strip(_camera_exif())
    if fmt == "TIFF":  # merged into the TIFF's directory, as tags
        exif = back.getexif()
        assert exif[0x010F] == "idfcompress camera" and exif[0x0131] == "test suite"
        assert exif.get_ifd(0x8769)[0x9003] == "2026:12:03 10:00:00"
        assert exif.get_ifd(0x8825)[0x0001] == "N"
    if stored:
        assert caught == []
    else:
        assert [w.category for w in caught] == [MetadataWarning]
        message = str(caught[0].message)
        assert "\n" not in message and "ICC profile" in message and "EXIF" in message
        assert fmt in message


def test_short_exif_png_decompresses_to_every_format():
    """The tester's case: a PNG whose eXIf chunk is ``MM\\0*`` (Pillow writes and reads it)."""
    pixels = _pixels()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", exif=b"MM\0*")
    decoded = ic.decompress_pixels(ic.compress(read_image(buffer.getvalue())))
    assert decoded.metadata["EXIF"] == b"Exif\0\0MM\0*"
    for fmt in FORMATS:
        if "RGB" not in imageio.FORMAT_MODES[fmt]:
            continue
        data, caught = _encoded(decoded, fmt)
        assert _same_pixels(_read_back(data), pixels), fmt
        assert all(issubclass(w.category, IdfWarning) for w in caught), fmt
        if fmt == "TIFF":
            assert [w.category for w in caught] == [MetadataWarning]
            assert "EXIF" in str(caught[0].message) and "4 bytes" in str(caught[0].message)
        if fmt in ("PNG", "WEBP"):
            assert caught == [] and _strip(_read_back(data).info["exif"]) == b"MM\0*"


def test_fuzzed_exif_never_breaks_tiff_output():
    """600 damaged EXIF blocks (bytes changed, blocks cut): every TIFF holds the exact pixels,
    only our warnings are given (the previous imageio failed on 34 of 600 such blocks)."""
    pixels = _pixels(height=6, width=7)
    base = bytearray(_camera_exif())
    rng = np.random.default_rng(2026)
    warned = 0
    for _ in range(600):
        block = bytearray(base)
        if rng.integers(0, 4) == 0:
            block = block[: rng.integers(0, len(block))]
        else:
            for _ in range(rng.integers(1, 6)):
                block[rng.integers(0, len(block))] = rng.integers(0, 256)
        image = PixelImage(pixels, "RGB", metadata={"EXIF": bytes(block)})
        data, caught = _encoded(image, "TIFF")
        back = _read_back(data) if not caught else Image.open(io.BytesIO(data))
        assert _same_pixels(back, pixels) and back.mode == "RGB"
        assert all(w.category is MetadataWarning for w in caught)
        assert all("\n" not in str(w.message) for w in caught)
        warned += bool(caught)
    assert 0 < warned < 600  # the damage was seen where there was some, and only there


def test_exif_tags_of_the_tiff_layout_are_left_out():
    pixels = _pixels()
    exif = Image.Exif()
    exif[0x010F] = "kept"
    exif[256], exif[257] = 1000, 3  # ImageWidth, ImageLength
    exif[284] = 2  # PlanarConfiguration: separate planes
    exif[274] = 6  # Orientation: Pillow would rotate the pixels it reads back
    data, caught = _encoded(PixelImage(pixels, "RGB", metadata={"EXIF": exif.tobytes()}), "TIFF")
    back = _read_back(data)
    assert back.size == (17, 12) and _same_pixels(back, pixels)
    assert back.getexif()[0x010F] == "kept"
    assert [w.category for w in caught] == [MetadataWarning]
    assert "256, 257, 274, 284" in str(caught[0].message)


def test_unknown_metadata_tags_are_named():
    image = PixelImage(_pixels(), "RGB", metadata={"XMP ": b"<x/>", "ICCP": ICC})
    data, caught = _encoded(image, "PNG")
    assert _read_back(data).info["icc_profile"] == ICC
    assert [w.category for w in caught] == [MetadataWarning]
    assert "'XMP '" in str(caught[0].message)


def test_pillow_warnings_become_one_image_warning_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with imageio.pillow_warnings("reading the image"):
            warnings.warn("Corrupt EXIF data\n  second line", UserWarning, stacklevel=1)
            warnings.warn("Corrupt EXIF data\n  second line", UserWarning, stacklevel=1)
            warnings.warn(MetadataWarning("ours"), stacklevel=1)
            warnings.warn(Image.DecompressionBombWarning("big"), stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [
        (ImageWarning, "reading the image: Corrupt EXIF data second line"),
        (MetadataWarning, "ours"),
    ]


# ------------------------------------------------------------------------------ limits


def test_decompression_bombs_are_image_too_large(monkeypatch):
    buffer = io.BytesIO()
    Image.fromarray(_pixels(height=40, width=50)).save(buffer, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # warns above, refuses above 2x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_image(buffer.getvalue()).pixels.shape == (40, 50, 3)
    assert caught == []  # Pillow's DecompressionBombWarning is not passed on
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 999)
    with pytest.raises(ImageTooLarge) as error:
        read_image(buffer.getvalue())
    assert "2000 pixels" in str(error.value) and "\n" not in str(error.value)


def _no_memory(*args, **kwargs):
    raise MemoryError


@pytest.mark.parametrize("where", ["load", "convert", "asarray"])
def test_memory_errors_while_reading_are_image_too_large(monkeypatch, where):
    buffer = io.BytesIO()
    Image.fromarray(_pixels()).convert("P").save(buffer, "PNG")
    if where == "load":
        monkeypatch.setattr(Image.Image, "load", _no_memory)
        from PIL import ImageFile

        monkeypatch.setattr(ImageFile.ImageFile, "load", _no_memory)
    elif where == "convert":
        monkeypatch.setattr(Image.Image, "convert", _no_memory)
    else:
        monkeypatch.setattr(imageio.np, "asarray", _no_memory)
    with pytest.raises(ImageTooLarge, match="not enough memory to .* 17x12"):
        read_image(buffer.getvalue())


def test_memory_errors_while_writing_and_coding_are_image_too_large(monkeypatch):
    image = PixelImage(_pixels(), "RGB")
    data = ic.compress(image)
    monkeypatch.setattr(Image.Image, "save", _no_memory)
    with pytest.raises(ImageTooLarge, match="not enough memory to write PNG of this 17x12"):
        encode_image(image, "PNG")
    monkeypatch.setattr(encoder, "encode", _no_memory)
    with pytest.raises(ImageTooLarge, match="compress this 17x12 image"):
        api.compress(image)
    monkeypatch.setattr(api.decoder, "decode", _no_memory)
    with pytest.raises(ImageTooLarge, match="decompress"):
        api.decompress(data)


# ------------------------------------------------------------------------------ frames


def _animation(fmt: str, frames: int) -> bytes:
    images = [Image.fromarray(np.full((8, 9, 3), 20 * i, np.uint8)) for i in range(frames)]
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    images[0].save(buffer, fmt, save_all=True, append_images=images[1:], duration=40, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind"), [("GIF", "animated"), ("PNG", "animated"), ("TIFF", "multi-page")]
)
def test_animated_images_are_refused_naming_their_frames(fmt, kind):
    data = _animation(fmt, 12)
    expected = f"{kind} image with 12 frames: idfcompress stores one frame"
    with pytest.raises(UnsupportedImage, match=expected):
        read_image(data)
    with Image.open(io.BytesIO(data)) as opened, pytest.raises(UnsupportedImage, match=expected):
        ic.compress(opened)  # a Pillow image given to the API
    still = read_image(_animation(fmt, 1))  # one frame: fine
    assert still.pixels.shape == (8, 9, 3)


def test_tiff_exif_that_changes_the_pixels_read_back_is_dropped(monkeypatch):
    """The check behind the tag filter: were a layout tag let through, the TIFF is written
    again without the EXIF tags."""
    monkeypatch.setattr(imageio, "TIFF_LAYOUT_TAGS", frozenset())
    pixels = _pixels()
    exif = Image.Exif()
    exif[274] = 3  # Orientation: Pillow turns the pixels it reads by 180 degrees
    data, caught = _encoded(PixelImage(pixels, "RGB", metadata={"EXIF": exif.tobytes()}), "TIFF")
    assert _same_pixels(_read_back(data), pixels)
    assert [w.category for w in caught] == [MetadataWarning]
    assert "change the pixels as read back" in str(caught[0].message)
