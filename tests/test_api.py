"""The API's decoders and info() take bytes, paths and binary file objects."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import recorded, smooth_image
from PIL import Image

import idfcompress
from idfcompress.errors import CorruptFile, TruncatedFile


class CountingFile(io.BytesIO):
    """A seekable binary file that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.bytes_read += len(piece)
        return piece

    def readinto(self, buffer) -> int:  # not used by the API; counted all the same
        got = super().readinto(buffer)
        self.bytes_read += got
        return got


class Stream:
    """A pipe-like source: ``read`` only, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)


@pytest.fixture()
def image(rng):
    pixels = smooth_image(rng, 70, 90, 3)
    pixels[::7, ::5] = rng.integers(0, 256, pixels[::7, ::5].shape)  # a file of a few KB
    return pixels


@pytest.fixture()
def data(image):
    return idfcompress.compress(image)


@pytest.fixture()
def path(data, tmp_path):
    path = tmp_path / "x.idf"
    path.write_bytes(data)
    return path


def _at_offset(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(b"prefix" + data)
    handle.seek(6)  # a file object is read from where it stands
    return handle


# The same file in every form the API takes, made from (data, path).
SOURCES = {
    "bytes": lambda data, path: data,
    "bytearray": lambda data, path: bytearray(data),
    "memoryview": lambda data, path: memoryview(data),
    "str": lambda data, path: str(path),
    "Path": lambda data, path: path,
    "file": lambda data, path: open(path, "rb"),  # closed by the test
    "BytesIO": lambda data, path: io.BytesIO(data),
    "BytesIO at an offset": lambda data, path: _at_offset(data),
    "stream": lambda data, path: Stream(data),
}
KINDS = list(SOURCES)


@pytest.mark.parametrize("kind", KINDS)
def test_decoders_take_every_kind_of_source(image, data, path, kind):
    for function in ("decompress", "decompress_pixels", "decompress_image"):
        source = SOURCES[kind](data, path)
        result = getattr(idfcompress, function)(source)
        if hasattr(source, "close"):
            source.close()
        if function == "decompress_pixels":
            result = result.pixels
        assert np.array_equal(np.asarray(result), image), (function, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_info_takes_every_kind_of_source(data, path, kind):
    source = SOURCES[kind](data, path)
    assert idfcompress.info(source) == idfcompress.info(data)
    if hasattr(source, "close"):
        source.close()


def test_info_of_a_seekable_file_reads_only_the_header(data):
    handle = CountingFile(data)
    fields = idfcompress.info(handle)
    assert fields["width"] == 90 and fields["payload_bytes"] > 0
    assert handle.bytes_read < len(data) - fields["payload_bytes"] + 4096


def test_info_counts_fitted_first_stages_from_a_file(tiny_models, tmp_path):
    data = recorded("rgb-64x64-t32-fitted")  # flow-coded, some first stages fitted
    path = tmp_path / "flow.idf"
    path.write_bytes(data)
    assert idfcompress.info(path) == idfcompress.info(data) == idfcompress.info(Stream(data))
    info = idfcompress.info(data)
    assert info["region_tiles"] == 0 and info["fitted_first_stages"] >= 1
    assert info["groups"][0]["flow_chunks"] == 4 * info["tiles"]  # four stages per tile


def test_bad_sources(data, path, tmp_path):
    with pytest.raises(FileNotFoundError):
        idfcompress.decompress(tmp_path / "missing.idf")
    with open(path, encoding="latin-1") as text:
        with pytest.raises(TypeError, match="binary mode"):
            idfcompress.decompress(text)
    with open(path, encoding="latin-1") as text:
        with pytest.raises(TypeError, match="binary mode"):
            idfcompress.info(text)
    with pytest.raises(TypeError, match="not int"):
        idfcompress.decompress(42)  # type: ignore[arg-type]
    (tmp_path / "short.idf").write_bytes(data[:-5])
    with pytest.raises(TruncatedFile):
        idfcompress.decompress(tmp_path / "short.idf")
    with pytest.raises(CorruptFile):
        idfcompress.decompress_image(io.BytesIO(data + b"\0"))


def test_compress_and_decompress_image_round_trip_through_files(image, tmp_path):
    png = tmp_path / "x.png"
    Image.fromarray(image).save(png)
    out = tmp_path / "x.idf"
    out.write_bytes(idfcompress.compress(png))
    assert np.array_equal(np.asarray(idfcompress.decompress_image(out)), image)
