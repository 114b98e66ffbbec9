"""The Pillow plugin (idfcompress.pillow): Image.open / load / save of .idf files."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import recorded, smooth_image
from PIL import Image, ImageFile, UnidentifiedImageError

import idfcompress
from idfcompress import pillow as pillow_plugin
from idfcompress.errors import CorruptFile, IdfError, TruncatedFile
from idfcompress.format import container
from idfcompress.format.layout import COARSE_KIND
from idfcompress.pillow import IdfImageFile, accept

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}

FORMAT9 = Path(__file__).parent / "codec" / "data" / "format9"


def pil_image(rng, mode: str, height: int = 30, width: int = 41) -> Image.Image:
    pixels = smooth_image(rng, height, width, MODES[mode])
    return Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_round_trip_by_path(rng, tmp_path, mode):
    image = pil_image(rng, mode)
    path = tmp_path / "x.idf"
    image.save(path)
    assert path.read_bytes()[:8] == container.MAGIC
    with Image.open(path) as opened:
        assert isinstance(opened, IdfImageFile)
        assert (opened.format, opened.mode, opened.size) == ("IDF", mode, image.size)
        opened.load()
        assert opened.fp is None  # the file is closed once read
        assert np.array_equal(np.asarray(opened), np.asarray(image))


def test_save_writes_what_compress_writes(rng):
    image = pil_image(rng, "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="IDF")
    assert buffer.getvalue() == idfcompress.compress(image)
    with Image.open(io.BytesIO(buffer.getvalue())) as opened:
        assert np.array_equal(np.asarray(opened), np.asarray(image))


def test_extension_and_mime_are_registered():
    assert Image.registered_extensions()[".idf"] == "IDF"
    assert Image.MIME["IDF"] == "image/x-idf"


@pytest.mark.parametrize(("mode", "stored"), [("P", "RGB"), ("1", "L")], ids=["palette", "bilevel"])
def test_palette_and_bilevel_are_stored_as_compress_stores_them(rng, mode, stored):
    image = pil_image(rng, "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="IDF")
    with Image.open(buffer) as opened:
        assert opened.mode == stored
        assert np.array_equal(np.asarray(opened), np.asarray(image.convert(stored)))


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "F"])
def test_modes_the_codec_cannot_store_raise_and_leave_no_file(tmp_path, mode):
    path = tmp_path / "x.idf"
    with pytest.raises(OSError, match="cannot write mode"):
        Image.new(mode, (8, 8)).save(path)
    assert not path.exists()


def test_icc_and_exif_are_carried(rng, tmp_path):
    image = pil_image(rng, "RGBA")
    exif = Image.Exif()
    exif[0x010F] = "idfc test camera"  # Make
    icc = b"not a real profile, kept opaque" * 5
    image.info["icc_profile"] = icc
    path = tmp_path / "meta.idf"
    image.save(path, exif=exif)
    with Image.open(path) as opened:
        assert opened.info["icc_profile"] == icc
        assert opened.getexif()[0x010F] == "idfc test camera"
        copy = io.BytesIO()
        opened.save(copy, format="PNG")  # Pillow passes them on to other formats
    with Image.open(copy) as png:
        assert png.info["icc_profile"] == icc
    dropped = tmp_path / "dropped.idf"
    with Image.open(path) as opened:
        opened.save(dropped, icc_profile=None, exif=b"")
    with Image.open(dropped) as opened:
        assert "icc_profile" not in opened.info and "exif" not in opened.info
        assert np.array_equal(np.asarray(opened), np.asarray(image))


def test_save_options(rng):
    image = pil_image(rng, "RGB", 40, 48)
    files = {}
    # the retired flow's options are ignored, as Pillow's plugins ignore what they do not know
    for options in ({}, {"tile_size": 16}, {"verify": True}, {"progressive": True, "effort": 2}):
        buffer = io.BytesIO()
        image.save(buffer, format="IDF", **options)
        files[str(options)] = buffer.getvalue()
        with Image.open(buffer) as opened:
            assert np.array_equal(np.asarray(opened), np.asarray(image))
    assert files["{}"] == idfcompress.compress(image) == files["{'verify': True}"]
    assert files["{'progressive': True, 'effort': 2}"] == files["{}"]
    assert files["{'tile_size': 16}"] == idfcompress.compress(image, tile_size=16)


class _Counting(io.BytesIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        piece = super().read(size)
        self.read_bytes += len(piece)
        return piece

    def readinto(self, view) -> int:  # type: ignore[override]
        got = super().readinto(view)
        self.read_bytes += got
        return got


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_draft_reads_only_the_coarse_level(rng, mode):
    image = pil_image(rng, mode, 300, 420)  # coarse level: every 8th pixel, 53x38
    data = idfcompress.compress(image)
    source = _Counting(data)
    with Image.open(source) as opened:
        assert opened.draft(None, (50, 30)) == (mode, (0, 0, 420 / 8, 300 / 8))
        assert opened.size == (53, 38) and opened.info["idf_draft"] == 8
        assert opened.draft(None, (10, 10)) is None  # configured once
        opened.load()
        assert opened.mode == mode
        assert np.array_equal(np.asarray(opened), np.asarray(image)[::8, ::8])
    assert source.read_bytes < 0.1 * len(data)  # the tiles were never read
    with Image.open(io.BytesIO(data)) as opened:
        opened.thumbnail((26, 19))  # Pillow asks for twice the size: the level serves it
        assert opened.size == (26, 19) and opened.info["idf_draft"] == 8


def test_draft_falls_back_to_the_exact_image(rng, tmp_path):
    image = pil_image(rng, "RGB", 64, 80)  # coarse level 10x8
    path = tmp_path / "x.idf"
    image.save(path)
    with Image.open(path) as opened:
        assert opened.draft("RGB", (11, 8)) is None  # larger than the coarse level
        assert opened.size == (80, 64)
        opened.thumbnail((20, 16))
        expected = image.copy()
        expected.thumbnail((20, 16))
        assert np.array_equal(np.asarray(opened), np.asarray(expected))
        assert "idf_draft" not in opened.info
    old = FORMAT9 / "astronaut-112x96-predictive.idf"  # no coarse level before format 10
    with Image.open(old) as opened:
        assert opened.draft(None, (8, 8)) is None and opened.size == (112, 96)
    flow = FORMAT9.parent / "format10" / "astronaut-112x96-flow.idf"

    def planned(*args):
        raise AssertionError("a file without a coarse level was planned (its model loaded)")

    with Image.open(flow) as opened, pytest.MonkeyPatch.context() as patch:
        patch.setattr(pillow_plugin, "Decoding", planned)
        assert opened.draft(None, (8, 8)) is None  # no coarse level either
    with Image.open(path) as opened:
        opened.load()
        assert opened.draft(None, (8, 8)) is None  # already decoded


def test_draft_of_a_cut_file(rng):
    image = pil_image(rng, "RGB", 300, 420)
    data = idfcompress.compress(image)
    _, entries = container.read_header(data)
    end = max(e.offset + e.length for e in entries if e.kind == COARSE_KIND)
    with Image.open(io.BytesIO(data[: end + 10])) as opened:  # the tiles cut off
        opened.draft(None, (50, 30))
        opened.load()
        assert np.array_equal(np.asarray(opened), np.asarray(image)[::8, ::8])
    with Image.open(io.BytesIO(data[: end - 1])) as opened, pytest.raises(OSError, match="trunc"):
        opened.draft(None, (50, 30))
        opened.load()


def _damaged(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x40
    return bytes(changed)


def test_corrupt_files_raise(rng):
    data = idfcompress.compress(pil_image(rng, "RGB"))
    with pytest.raises(OSError) as caught:  # the header's CRC
        Image.open(io.BytesIO(_damaged(data, 20)))
    assert not isinstance(caught.value, UnidentifiedImageError)
    assert isinstance(caught.value.__cause__, IdfError)
    opened = Image.open(io.BytesIO(_damaged(data, len(data) - 3)))  # a payload byte
    with pytest.raises(OSError, match="checksum") as caught:
        opened.load()
    assert isinstance(caught.value.__cause__, CorruptFile)
    with pytest.raises(OSError, match="unexpected bytes"):
        Image.open(io.BytesIO(data + b"\0")).load()


def test_pixel_checksum_is_verified(rng):
    """A file whose structure and chunk CRCs are intact but whose pixel SHA-256 is not
    that of its pixels: load() refuses it, as decompress() does."""
    data = idfcompress.compress(pil_image(rng, "RGB"))
    header, chunks = container.read(data)
    wrong = container.write(
        replace(header, pixel_sha256=bytes(32)),
        [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in chunks],
    )
    with pytest.raises(CorruptFile):
        idfcompress.decompress(wrong)
    opened = Image.open(io.BytesIO(wrong))
    with pytest.raises(OSError, match="checksum mismatch"):
        opened.load()


def ic_first_stage(data: bytes) -> int:
    """Bytes of the first progressive stage of a file."""
    return next(iter(idfcompress.decode_progressive(data))).bytes_used


def test_truncated_files(rng, tiny_models, monkeypatch):
    image = pil_image(rng, "RGB", 40, 48)
    default = idfcompress.compress(image)
    progressive = recorded("rgb-72x40-t32")  # flow-coded: four stages
    stages = list(idfcompress.decode_progressive(progressive))
    assert len(stages) > 2
    prefix = progressive[: stages[1].bytes_used]
    with pytest.raises(OSError, match="truncated") as caught:
        Image.open(io.BytesIO(prefix)).load()
    assert isinstance(caught.value.__cause__, TruncatedFile)
    # Pillow's opt-in for damaged files: the best stage the bytes hold, said to be a preview
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    opened = Image.open(io.BytesIO(prefix))
    opened.load()
    assert opened.info["idf_preview"] == (2, len(stages))
    assert np.array_equal(np.asarray(opened), stages[1].pixels)
    with Image.open(io.BytesIO(progressive)) as whole:
        whole.load()
        assert "idf_preview" not in whole.info
    with pytest.raises(OSError, match="nothing can be shown"):  # not even the coarse level
        Image.open(io.BytesIO(default[: ic_first_stage(default) - 1])).load()


def test_other_files_are_not_claimed(rng, tmp_path):
    image = pil_image(rng, "RGB")
    png = tmp_path / "really-a-png.idf"
    image.save(png, format="PNG")
    with Image.open(png) as opened:
        assert opened.format == "PNG"
    assert not accept(png.read_bytes()[:16])
    assert accept(idfcompress.compress(image)[:16])
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89IDX\r\n\x1a\n" + bytes(64)))


def _run(script: str) -> None:
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


ROUND_TRIP = (
    "import io, numpy as np\n"
    "a = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)\n"
    "buffer = io.BytesIO()\n"
    "Image.fromarray(a).save(buffer, format='IDF')\n"
    "with Image.open(buffer) as opened:\n"
    "    assert type(opened).__name__ == 'IdfImageFile', type(opened)\n"
    "    assert np.array_equal(np.asarray(opened), a)\n"
)


def test_import_registers_without_importing_pillow():
    """``import idfcompress`` leaves Pillow unimported; importing it afterwards (here
    through PIL.ImageFile, which imports PIL.Image midway) registers the plugin and the
    import hook goes away."""
    _run(
        "import sys, idfcompress\n"
        "assert 'PIL' not in sys.modules\n"
        "hooks = len(sys.meta_path)\n"
        "from PIL import ImageFile, Image\n"
        "assert len(sys.meta_path) == hooks - 1\n"
        "assert 'idfcompress.pillow' not in sys.modules  # until an .idf file is used\n"
        "from idfcompress.format.container import MAGIC\n"
        "assert Image.OPEN['IDF'][1](MAGIC + bytes(8))\n"
        "assert not Image.OPEN['IDF'][1](b'\\x89PNG\\r\\n\\x1a\\n' + bytes(8))\n" + ROUND_TRIP
    )


def test_import_after_pillow_registers():
    _run("from PIL import Image\nimport idfcompress\n" + ROUND_TRIP)
