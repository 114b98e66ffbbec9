"""The coarse level of default files (format 10): first in the file, left out of the
tiles, the first progressive stage; and what a decoder does with a file that breaks it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data as samples

import idfcompress as ic
from idfcompress.app.batch import PREVIEW_EXIT
from idfcompress.app.cli import main
from idfcompress.app.viewer import paint_sequence
from idfcompress.codec.progressive import decode_preview, decode_progressive, upsample
from idfcompress.errors import CorruptFile
from idfcompress.format import container
from idfcompress.format.layout import COARSE_KIND, REGION_KIND, coarse_stride, coarse_tiles
from idfcompress.predictive import regions

DATA = Path(__file__).with_name("data")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse else float("inf")


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, bytes]:
    image = np.ascontiguousarray(samples.astronaut()[:300, :400])
    return image, ic.compress(image, tile_size=128)


def test_the_stride_follows_the_image_and_divides_the_tile():
    assert coarse_stride(500, 500, 256) == 8
    assert coarse_stride(1024, 700, 256) == 16
    assert coarse_stride(3000, 4000, 256) == 32
    assert coarse_stride(5000, 4500, 256) == 64
    assert coarse_stride(5000, 4500, 96) == 32  # 64 does not divide 96
    assert coarse_stride(5000, 4500, 40) == 8
    assert coarse_stride(1, 1, 256) == 8
    assert [t.height for t in coarse_tiles(3000, 4000, 64)] == [64, 64, 30, 30]


def test_default_files_start_with_the_coarse_level(astronaut):
    image, data = astronaut
    _, chunks = container.read(data)
    kinds = [entry.kind for entry, _ in chunks]
    count = len(coarse_tiles(*image.shape[:2], 128))
    assert kinds[:count] == [COARSE_KIND] * count and COARSE_KIND not in kinds[count:]
    info = ic.info(data)
    assert info["coarse_tiles"] == count and info["coarse_stride"] == 8
    tiles = [p for e, p in chunks if e.kind == REGION_KIND]
    assert {p[0] for p in tiles} == {regions.SCALED_GIVEN}  # photo tiles leave the level out
    coarse_bytes = sum(len(p) for e, p in chunks if e.kind == COARSE_KIND)
    assert coarse_bytes < 0.06 * len(data)


def test_files_of_the_flow_have_no_coarse_level():
    for mode in ("flow", "auto"):  # what its retired encoder wrote in format 10
        data = (DATA / "format10" / f"astronaut-112x96-{mode}.idf").read_bytes()
        assert ic.info(data)["coarse_tiles"] == 0
        assert ic.decompress(data).shape == (96, 112, 3)


def test_stage_one_is_the_level_then_a_tile_row_at_a_time(astronaut):
    image, data = astronaut
    stages = list(decode_progressive(data))
    rows = -(-image.shape[0] // 128)
    assert len(stages) == 1 + rows and stages[-1].exact
    assert not any(s.exact for s in stages[:-1])
    first = stages[0]
    assert first.fraction < 0.06 and psnr(first.pixels, image) > 18
    assert np.array_equal(first.pixels[::8, ::8], image[::8, ::8])  # the level itself, exact
    for k, stage in enumerate(stages[1:], start=1):
        done = min(k * 128, image.shape[0])
        assert np.array_equal(stage.pixels[:done], image[:done])
        if done < image.shape[0]:
            assert not np.array_equal(stage.pixels[done:], image[done:])
    assert [s.bytes_used for s in stages] == sorted(s.bytes_used for s in stages)
    assert np.array_equal(stages[-1].pixels, image)


def test_a_prefix_shows_the_whole_picture(astronaut):
    image, data = astronaut
    preview = decode_preview(data[: len(data) * 30 // 100])
    assert not preview.exact and preview.index >= 1 and psnr(preview.pixels, image) > 18
    assert decode_preview(data).exact


def test_upsample_is_exact_at_the_level_and_between_its_neighbours():
    level = np.array([[0, 80], [40, 120]], dtype=np.uint8)[:, :, None]
    plane = np.zeros((12, 13, 1), dtype=np.uint8)
    upsample(level, 8, plane)
    assert plane[0, 0, 0] == 0 and plane[0, 8, 0] == 80 and plane[8, 8, 0] == 120
    assert plane[0, 4, 0] == 40 and plane[4, 0, 0] == 20 and plane[4, 4, 0] == 60
    assert plane[11, 12, 0] == 120  # past the last sample: its edge


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_every_mode_round_trips_with_its_level(channels):
    rng = np.random.default_rng(channels)
    y, x = np.mgrid[0:70, 0:90]
    base = 100 + 50 * np.sin(x / 7.0) * np.cos(y / 5.0)
    image = np.clip(base[:, :, None] + rng.normal(0, 3, (70, 90, channels)), 0, 255)
    image = image.astype(np.uint8)
    data = ic.compress(image, tile_size=32)
    expected = image[:, :, 0] if channels == 1 else image
    assert np.array_equal(ic.decompress(data), expected)
    assert ic.info(data)["coarse_tiles"] == len(ic.info(data)["groups"])
    stages = list(decode_progressive(data))
    assert np.array_equal(stages[-1].pixels, expected)
    # tiles in file order, each tile's plane groups together: a row of tiles is whole first
    _, chunks = container.read(data)
    tiles = [e.tile for e, _ in chunks if e.kind != COARSE_KIND]
    assert tiles == sorted(tiles)
    assert len(stages) == 1 + 3 and [s.bytes_used for s in stages] == sorted(
        {s.bytes_used for s in stages}
    )


def rewritten(data: bytes, keep) -> bytes:
    """The file with only the chunks ``keep(entry)`` accepts, its tables rebuilt."""
    header, chunks = container.read(data)
    kept = [container.Chunk(e.group, e.kind, e.tile, p) for e, p in chunks if keep(e)]
    return container.write(header, kept)


def test_a_missing_coarse_chunk_is_corrupt(astronaut):
    _, data = astronaut
    cut = rewritten(data, lambda e: not (e.kind == COARSE_KIND and e.tile == 0))
    with pytest.raises(CorruptFile, match="coarse"):
        ic.decompress(cut)


def test_tiles_that_need_the_level_without_it_are_corrupt(astronaut):
    _, data = astronaut
    bare = rewritten(data, lambda e: e.kind != COARSE_KIND)
    with pytest.raises(CorruptFile, match="coarse level"):
        ic.decompress(bare)


def test_a_wrong_coarse_level_fails_the_checksum(astronaut):
    _, data = astronaut
    header, chunks = container.read(data)
    flat = np.zeros((64, 64, 3), dtype=np.uint8)
    swapped = [
        container.Chunk(
            e.group,
            e.kind,
            e.tile,
            regions.encode_regions([flat[:38, :50]])
            if e.kind == COARSE_KIND and e.tile == 0
            else p,
        )  # fmt: skip
        for e, p in chunks
    ]
    with pytest.raises(CorruptFile):
        ic.decompress(container.write(header, swapped))


def test_files_are_version_11_and_the_same_every_time(astronaut):
    _, data = astronaut
    assert struct.unpack_from("<H", data, 8)[0] == container.FORMAT_VERSION == 11
    assert zlib.crc32(data) == zlib.crc32(ic.compress(astronaut[0], tile_size=128))


def test_the_cli_and_the_viewer_show_default_files_progressively(astronaut, tmp_path):
    image, data = astronaut
    stages = list(decode_progressive(data))
    painted = list(paint_sequence(data, piece_size=4096))
    assert [p.stage.index for p in painted] == [s.index for s in stages]
    for p, s in zip(painted, stages, strict=True):
        assert np.array_equal(p.stage.pixels, s.pixels)
    (tmp_path / "photo.idf").write_bytes(data)
    runner = CliRunner()
    preview = tmp_path / "preview.png"
    result = runner.invoke(main, ["decompress", str(tmp_path / "photo.idf"), "--bytes", "90%",
                                  "-o", str(preview)])  # fmt: skip
    assert result.exit_code == PREVIEW_EXIT, result.output
    shown = np.asarray(Image.open(preview))
    assert np.array_equal(shown, decode_preview(data[: len(data) * 90 // 100]).pixels)
    assert psnr(shown, image) > 18
    result = runner.invoke(main, ["decompress", str(tmp_path / "photo.idf"), "--progressive",
                                  str(tmp_path / "stages")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "stages").glob("stage-*.png"))) == len(stages)


def test_a_level_of_several_tiles_round_trips_and_streams():
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:200, 0:300]
    base = 120 + 60 * np.sin(x / 11.0) * np.cos(y / 7.0)
    image = np.clip(base[:, :, None] + rng.normal(0, 4, (200, 300, 3)), 0, 255).astype(np.uint8)
    data = ic.compress(image, tile_size=16)
    assert ic.info(data)["coarse_tiles"] == len(coarse_tiles(200, 300, 16)) == 6
    assert np.array_equal(ic.decompress(data), image)
    stages = list(decode_progressive(data, piece_size=1000))
    assert len(stages) == 1 + 200 // 16 + 1 and stages[-1].exact
    assert np.array_equal(stages[0].pixels[::8, ::8], image[::8, ::8])
    assert np.array_equal(stages[-1].pixels, image)
