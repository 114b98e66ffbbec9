"""Exact round trips through the whole codec, the recorded flow-coded files, and refusal of
bad files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import recorded, smooth_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import idfcompress as ic
from idfcompress.entropy.tables import FIT_MIN_LOGSCALE, LOGSCALE_COUNT
from idfcompress.errors import (
    CorruptFile,
    FormatError,
    IdfError,
    ImageTooLarge,
    ModelError,
    NotAnIdfFile,
    TruncatedFile,
    UnsupportedImage,
)
from idfcompress.flow import loading, store
from idfcompress.format import container, layout
from idfcompress.predictive import regions

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    channels=st.sampled_from([1, 2, 3, 4]),
    tile=st.sampled_from([8, 16, 24, 64]),
    noise=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact(height, width, channels, tile, noise, seed):
    rng = np.random.default_rng(seed)
    if noise:
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    else:
        image = smooth_image(rng, height, width, channels)
    data, stats = ic.compress_with_stats(image, tile_size=tile)
    out = ic.decompress(data)
    expected = image[:, :, 0] if channels == 1 else image
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    info = ic.info(data)
    assert info["mode"] == MODES[channels]
    groups = len(layout.plane_groups(MODES[channels]))
    assert info["region_tiles"] == stats.tiles == groups * info["tiles"]  # one chunk per tile
    assert info["chunks"] == stats.tiles + stats.coarse_tiles  # and the coarse level's


def test_noise_falls_back_to_raw_and_barely_grows(tiny_models, rng):
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    data = ic.compress(image, tile_size=32)
    assert ic.info(data)["region_coders"].get("LZMA2", 0) >= 1
    assert len(data) < image.size * 1.02 + 400
    assert np.array_equal(ic.decompress(data), image)


def test_the_encoder_writes_the_coarse_level_then_one_region_chunk_per_tile(rng):
    image = smooth_image(rng, 37, 27, 4)  # RGBA: two plane groups; a tile too small for a core
    data = ic.compress(image, tile_size=32)
    header, entries = container.read_header(data)
    kinds = [(e.kind, e.tile, e.group) for e in entries]
    coarse = [k for k in kinds if k[0] == layout.COARSE_KIND]
    assert kinds[: len(coarse)] == coarse == [(layout.COARSE_KIND, 0, g) for g in range(2)]
    assert kinds[len(coarse) :] == [(layout.REGION_KIND, t, g) for t in range(2) for g in range(2)]
    for group in header.groups:  # no flow model codes the groups
        assert (group.model_name, group.model_sha256) == (container.NO_MODEL, bytes(32))
    assert np.array_equal(ic.decompress(data), image)
    with pytest.raises(TypeError, match="mode"):  # the flow's encoder is retired
        ic.compress(image, mode="flow")  # type: ignore[call-arg]


def test_pil_modes_round_trip(tiny_models, rng):
    rgb = Image.fromarray(smooth_image(rng, 20, 30, 3))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = ic.decompress_image(ic.compress(palette))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(palette.convert("RGB")))
    assert ic.info(ic.compress(palette))["source_mode"] == "P"

    bilevel = Image.fromarray(rng.integers(0, 2, (17, 23), dtype=np.uint8) * 255).convert("1")
    out = ic.decompress_image(ic.compress(bilevel))
    assert out.mode == "L" and np.array_equal(np.asarray(out), np.asarray(bilevel.convert("L")))

    with_transparency = palette.copy()
    with_transparency.info["transparency"] = 0
    out = ic.decompress_image(ic.compress(with_transparency))
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out), np.asarray(with_transparency.convert("RGBA")))


def test_icc_and_exif_survive(tiny_models, rng):
    image = Image.fromarray(smooth_image(rng, 16, 16, 3))
    exif = Image.Exif()
    exif[0x010F] = "idfcompress test camera"
    buffer = io.BytesIO()
    icc = b"fake-icc-profile" * 10
    image.save(buffer, format="PNG", icc_profile=icc, exif=exif.tobytes())
    data = ic.compress(Image.open(io.BytesIO(buffer.getvalue())))
    out = ic.decompress_image(data)
    assert out.info["icc_profile"] == icc
    assert Image.Exif().load(out.info["exif"]) is None or out.info["exif"] == exif.tobytes()


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "CMYK"])
def test_unsupported_modes_are_refused(tiny_models, mode):
    image = Image.new(mode, (4, 4))
    with pytest.raises(UnsupportedImage, match="not supported"):
        ic.compress(image)


def test_unsupported_arrays_are_refused(tiny_models):
    with pytest.raises(UnsupportedImage):
        ic.compress(np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(UnsupportedImage):
        ic.compress(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(UnsupportedImage):
        ic.compress(np.zeros((0, 4), dtype=np.uint8))


@pytest.fixture()
def small_file(tiny_models):
    """Six flow-coded tiles of tiny-rgb (40x24, tile size 16)."""
    return recorded("rgb-40x24-t16")


def _rewrite_payload(data: bytes, index: int, mutate) -> bytes:
    """Change one payload and fix its CRC so that only the pixel checksum can catch it."""
    header, chunks = container.read(data)
    rebuilt = [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in chunks]
    c = rebuilt[index]
    rebuilt[index] = container.Chunk(c.group, c.kind, c.tile, mutate(c.payload))
    return container.write(header, rebuilt)


def test_tampered_payload_never_gives_a_wrong_image(small_file):
    header, chunks = container.read(small_file)
    for index in range(len(chunks)):

        def flip(payload: bytes) -> bytes:
            if not payload:
                return b"\x01\x00\x00\x00"
            b = bytearray(payload)
            b[len(b) // 2] ^= 0x10
            return bytes(b)

        with pytest.raises(CorruptFile):
            ic.decompress(_rewrite_payload(small_file, index, flip))


def test_truncation_and_bit_flips_give_format_errors(small_file):
    for cut in range(0, len(small_file), max(1, len(small_file) // 60)):
        with pytest.raises(FormatError):
            ic.decompress(small_file[:cut])
    rng = np.random.default_rng(0)
    for _ in range(60):
        damaged = bytearray(small_file)
        damaged[rng.integers(len(damaged))] ^= 1 << rng.integers(8)
        with pytest.raises(IdfError):
            ic.decompress(bytes(damaged))


def test_foreign_files_are_refused():
    with pytest.raises(NotAnIdfFile):
        ic.decompress(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(TruncatedFile):
        ic.decompress(b"")


def test_wrong_model_is_named(small_file, tiny_model_dir, monkeypatch, tmp_path):
    # same name, other weights: the hash no longer matches
    other = tmp_path / "tiny-rgb.safetensors"
    other.write_bytes((tiny_model_dir / "tiny-gray.safetensors").read_bytes())
    monkeypatch.setenv(store.MODELS_ENV, str(tmp_path))
    with pytest.raises(ModelError, match="tiny-rgb"):
        ic.decompress(small_file)
    monkeypatch.setenv(store.MODELS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="tiny-rgb"):
        ic.decompress(small_file)


def test_pixel_limit_guards_decoding(small_file):
    with pytest.raises(ImageTooLarge):
        ic.decompress(small_file, max_pixels=100)
    assert ic.decompress(small_file, max_pixels=None).shape == (24, 40, 3)


def test_raw_cores_with_bad_payloads_are_corrupt(rng):
    image = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    data = ic.compress(image)
    assert ic.info(data)["region_tiles"] == 1
    tile = 1  # after the coarse level's chunk
    for payload in (
        b"\0" + regions.compress(b"short"),
        b"\0not lzma",
        b"\0" + regions.compress(image.tobytes() + b"x"),
        b"\7" + regions.compress(image.tobytes()),
        b"\0" + zlib.compress(image.tobytes()),
    ):
        with pytest.raises(CorruptFile):
            ic.decompress(_rewrite_payload(data, tile, lambda _p, payload=payload: payload))
    unfiltered = b"\0" + regions.compress(image.tobytes())  # any valid payload decodes
    rewritten = _rewrite_payload(data, tile, lambda _p: unfiltered)
    assert np.array_equal(ic.decompress(rewritten), image)


def test_chunk_order_puts_coarsest_stage_first(small_file):
    _, entries = container.read_header(small_file)
    kinds = [e.kind for e in entries]
    assert kinds == sorted(kinds, reverse=True)
    assert max(kinds) == loading.load_model("tiny-rgb").flow.config.stages


def test_tiles_batch_by_core_shape():
    tiles = layout.tiles_of(20, 44, 16)  # tile rows of 16 and 4 px, columns of 16, 16, 12
    batches = list(layout.tile_batches(tiles, 8))
    assert sorted(t.index for b in batches for t in b) == [0, 1, 2]  # 4 px rows have no core
    assert [layout.core_shape(t, 8) for t in tiles] == [(16, 16), (16, 16), (16, 8)] + [(0, 0)] * 3
    for batch in batches:
        assert len({layout.core_shape(t, 8) for t in batch}) == 1
    assert layout.margin_shapes(tiles[0], 8, 3) == []
    assert layout.margin_shapes(tiles[2], 8, 3) == [(16, 4, 3), (0, 12, 3)]
    assert layout.margin_shapes(tiles[3], 8, 1) == [(0, 16, 1), (4, 16, 1)]


def test_struct_of_header_starts_with_magic(small_file):
    assert small_file.startswith(container.MAGIC)
    assert struct.unpack_from("<H", small_file, 8)[0] == 10  # the flow's last version


@pytest.mark.parametrize("height,width", [(41, 27), (7, 30), (30, 7), (9, 9), (1, 1), (17, 33)])
def test_tile_margins_decode_beside_the_flow(tiny_models, height, width):
    data = recorded(f"rgb-{width}x{height}-t16")
    assert ic.decompress(data).shape == (height, width, 3)  # exact: the pixel SHA-256 matched
    _, entries = container.read_header(data)
    margins = [e for e in entries if e.kind == layout.MARGIN_KIND]
    tiles = layout.tiles_of(height, width, 16)
    assert len(margins) == sum(1 for t in tiles if layout.margin_shapes(t, 8, 3))
    assert ic.info(data)["margins"] == len(margins)
    assert ic.info(data)["region_tiles"] == 0


def _drop_or_add_margin(data: bytes, add: bool) -> bytes:
    header, pairs = container.read(data)
    chunks = [
        container.Chunk(e.group, e.kind, e.tile, bytes(p))
        for e, p in pairs
        if add or e.kind != layout.MARGIN_KIND
    ]
    if add:
        chunks.append(container.Chunk(0, layout.MARGIN_KIND, 0, b"\0" + regions.compress(b"")))
    return container.write(header, chunks)


def test_missing_extra_or_corrupt_margins_are_refused(tiny_models):
    odd = recorded("rgb-21x23-t32")  # one tile: a 16x16 core and margins
    with pytest.raises(CorruptFile, match="lacks its margin"):
        ic.decompress(_drop_or_add_margin(odd, add=False))
    even = recorded("rgb-16x16-t16")
    with pytest.raises(CorruptFile, match="unexpected margin"):
        ic.decompress(_drop_or_add_margin(even, add=True))
    header, pairs = container.read(odd)
    index = next(i for i, (e, _) in enumerate(pairs) if e.kind == layout.MARGIN_KIND)
    size = 3 * (16 * 5 + 7 * 21)  # right strip 16x5, bottom strip 7x21

    def shorter(payload: bytes) -> bytes:
        return payload[:1] + regions.compress(regions.decompress(payload[1:], size)[1:])

    with pytest.raises(CorruptFile, match="margin of tile"):
        ic.decompress(_rewrite_payload(odd, index, shorter))


def test_region_coded_tiles_cover_the_whole_tile_alone(tiny_models, rng):
    image = smooth_image(rng, 23, 21, 3)  # one tile: a 16x16 core and margins
    data = ic.compress(image, tile_size=32)
    _, entries = container.read_header(data)
    # no margin chunk beside it (the coarse level's chunk first)
    assert [e.kind for e in entries] == [layout.COARSE_KIND, layout.REGION_KIND]
    assert np.array_equal(ic.decompress(data), image)
    with pytest.raises(CorruptFile, match="needs one raw or margin chunk"):
        ic.decompress(_drop_or_add_margin(data, add=True))
    header, pairs = container.read(recorded("rgb-21x23-t32"))
    chunks = [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in pairs]
    raw = container.Chunk(0, layout.REGION_KIND, 0, regions.encode_regions([image]))
    with pytest.raises(CorruptFile, match="raw chunk and other chunks"):
        ic.decompress(container.write(header, [raw, *chunks]))


def _first_stage_payloads(data: bytes) -> list[bytes]:
    header, chunks = container.read(data)
    first = max(e.kind for e, _ in chunks if e.kind not in (layout.REGION_KIND, layout.MARGIN_KIND))
    return [bytes(p) for e, p in chunks if e.kind == first]


def test_first_stages_use_mixtures_or_fitted_logistics_and_decode(tiny_models):
    """The tiny model's mixtures are random; the encoder coded the bright upper tiles with a
    logistic fitted to each, the others with the mixtures. Both decode."""
    data = recorded("rgb-64x64-t32-fitted")
    assert ic.decompress(data).shape == (64, 64, 3)
    kinds = [p[0] for p in _first_stage_payloads(data)]
    assert layout.TOP_LOGISTIC in kinds
    assert set(kinds) <= {layout.TOP_MIXTURE, layout.TOP_LOGISTIC}


def test_invalid_first_stage_priors_are_corrupt(tiny_models):
    data = recorded("rgb-32x32-bright")
    header, chunks = container.read(data)
    index = next(i for i, (e, _) in enumerate(chunks) if e.kind == max(c.kind for c, _ in chunks))
    payload = bytes(chunks[index][1])
    assert payload[0] == layout.TOP_LOGISTIC
    c = loading.load_model("tiny-rgb").flow.mixture_channels
    bad_g = bytearray(payload)
    bad_g[1] = FIT_MIN_LOGSCALE - 1
    too_big_g = bytearray(payload)
    too_big_g[1] = LOGSCALE_COUNT
    for forged in (
        b"",
        b"\x02" + payload[1:],
        payload[: 3 * c],
        bytes(bad_g),
        bytes(too_big_g),
    ):  # too short for its core (checked first, from the chunk table) or an invalid prior
        with pytest.raises(CorruptFile, match="first.stage"):
            ic.decompress(_rewrite_payload(data, index, lambda _p, forged=forged: forged))


def test_logistic_stages_carry_their_shift_and_the_decoder_applies_it(tiny_models):
    data = recorded("rgb-64x64-t32")
    header, chunks = container.read(data)
    first = max(e.kind for e, _ in chunks)
    logistic = [i for i, (e, _) in enumerate(chunks) if 1 <= e.kind < first]
    assert logistic and all(len(chunks[i][1]) >= 1 for i in logistic)
    index = logistic[0]
    other = bytes([(chunks[index][1][0] + 3) % 256])
    forged = _rewrite_payload(data, index, lambda p: other + p[1:])
    with pytest.raises(CorruptFile):  # other tables: the entropy decoder goes astray
        ic.decompress(forged)
    empty = _rewrite_payload(data, index, lambda _p: b"")
    with pytest.raises(CorruptFile, match="empty flow stage|too short|lacks"):
        ic.decompress(empty)


def test_files_without_flow_chunks_decode_without_their_model(
    tiny_models, rng, monkeypatch, tmp_path
):
    image = smooth_image(rng, 37, 27, 3)  # a tile with a core and one too small for a core
    default = ic.compress(image, tile_size=32)
    flow = recorded("rgb-27x37-t32")
    kinds = {e.kind for e in container.read_header(default)[1]}
    assert kinds == {layout.COARSE_KIND, layout.REGION_KIND}
    monkeypatch.setenv(store.MODELS_ENV, str(tmp_path))  # no models installed
    assert np.array_equal(ic.decompress(default), image)
    assert [s.exact for s in ic.decode_progressive(default)] == [False, False, True]
    with pytest.raises(ModelError, match="needs model"):
        ic.decompress(flow)
    header, pairs = container.read(default)
    chunks = [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in pairs]
    region = next(c for c in chunks if c.kind == layout.REGION_KIND and c.tile == 1)
    extra = container.Chunk(0, layout.MARGIN_KIND, 0, region.payload)  # beside tile 0's raw one
    with pytest.raises(CorruptFile, match="needs one raw or margin chunk"):
        ic.decompress(container.write(header, [*chunks, extra]))
