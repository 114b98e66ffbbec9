"""Bounded memory and work for any input (issue 19, docs/RELIABILITY.md "Budget"): a
decompression bomb is refused before anything is decoded, decoding holds one tile's working
set, not the image's, the index tables never outlive a decode or encode, and the encoder's
memory follows the tile, not the image. Memory is measured with tracemalloc and work with
the decoder's counters, never with a clock."""

from __future__ import annotations

import importlib.util
import math
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image

from idfcompress.codec import decoder, encoder
from idfcompress.entropy import tables
from idfcompress.errors import ImageTooLarge
from idfcompress.imageio import from_array
from idfcompress.predictive import coder, lattice

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def _fuzz():
    """scripts/fuzz.py, which makes the expensive files (loaded once per session)."""
    if "idfc_fuzz" not in sys.modules:
        spec = importlib.util.spec_from_file_location("idfc_fuzz", ROOT / "scripts" / "fuzz.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["idfc_fuzz"]


def traced(call):
    """``call()``'s result (or exception) and the peak of the allocations it traced."""
    tracemalloc.start(1)
    try:
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------- finding 1


def test_a_zero_cost_bomb_is_refused_before_anything_is_decoded():
    # the tester's file: one 1448 px tile (2^21 pixels, the most a tile may have) of zeros,
    # every context's logistic at log-scale 0, so a few bytes describe all 6.3 M values
    bomb = _fuzz().zeros_file(1448, 1448, "RGB", 1448, "g0")
    assert len(bomb) < 400
    work = coder.Work()
    error, peak = traced(lambda: decoder.decode(bomb, work=work))
    assert isinstance(error, ImageTooLarge) and "budget" in str(error)
    assert "\n" not in str(error)
    assert work.values == 0 and work.steps == 0
    assert peak < 1448 * 1448 * 3 + 4 * MIB  # the output image and next to nothing else


def test_without_limits_a_bomb_decodes_in_one_tiles_memory():
    side = 1024
    bomb = _fuzz().zeros_file(side, side, "RGB", side, "g0")
    work = coder.Work()
    image, peak = traced(lambda: decoder.decode(bomb, max_pixels=None, work=work))
    assert not isinstance(image, Exception) and not image.pixels.any()
    values = side * side * 3
    assert work.values == values
    assert work.steps == (side - 1) + 2 * (coder.BAND - 1) + 2 + 1
    # the image and about 4 bytes per value (the decoded planes, R and B, the region); the
    # index tables of the whole tile took ~110 bytes per value (0.7 GiB at 1448 px)
    assert peak < values + 6 * values + 8 * MIB, peak / values


def test_the_encoders_payloads_are_well_within_the_budget():
    # the encoder's narrowest logistic codes a value in no fewer bits than this
    floor = -math.log2(tables.heaviest_fit_weight() / tables.PROB_TOTAL)
    assert 8 / floor < coder.VALUES_PER_BYTE / 2
    zeros = np.zeros((96, 96, 3), np.uint8)  # the cheapest region there is
    payload = coder.plan([zeros]).payload()
    stream = len(payload) - coder.head_size(3)
    assert zeros.size <= 16 * (stream + 8)
    assert np.array_equal(coder.decode(payload, [zeros.shape])[0], zeros)


def test_the_budget_grows_with_the_pixel_limit():
    data = encoder.encode(from_array(np.zeros((8, 8, 3), np.uint8)))[0]
    assert decoder.Decoding.of(data).budget == coder.VALUES_PER_BYTE
    raised = decoder.Decoding.of(data, max_pixels=4 * decoder.MAX_PIXELS)
    assert raised.budget == 4 * coder.VALUES_PER_BYTE
    assert decoder.Decoding.of(data, max_pixels=None).budget is None
    bomb = _fuzz().zeros_file(256, 256, "L", 256, "g0")
    with pytest.raises(ImageTooLarge, match="raise max_pixels"):
        decoder.decode(bomb, max_pixels=4 * decoder.MAX_PIXELS)


def test_index_tables_are_released_after_every_decode_and_encode(rng):
    image = smooth_image(rng, 150, 170, 3)  # tiles of four shapes
    files = [encoder.encode(from_array(image), tile_size=t)[0] for t in (32, 48, 64)]
    assert lattice.cached_bytes() == 0
    decoder.decode(files[0])  # warm-up: tables that do not depend on the input
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        for data in files:  # a new set of shapes each time
            decoded = decoder.decode(data)
            assert np.array_equal(decoded.pixels, image)
            del decoded
            assert lattice.cached_bytes() == 0
            assert tracemalloc.get_traced_memory()[0] - before < MIB
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------- finding 2


def test_encoder_memory_follows_the_tile_not_the_image(rng):
    small = from_array(smooth_image(rng, 128, 128, 3))  # 4 tiles of 64 px
    large = from_array(smooth_image(rng, 256, 512, 3))  # 32 tiles
    peaks = {}
    for name, image in (("small", small), ("large", large)):
        encoder.encode(image, tile_size=64)  # warm-up: tables
        (data, _), peak = traced(lambda image=image: encoder.encode(image, tile_size=64))
        peaks[name] = peak - 3 * len(data)  # the chunks, the file and its header: the output
    # (the flow's encoder once kept every tile's estimates until its batch had run: ~80
    # bytes per pixel, 8.6 MB more for the large image)
    assert peaks["large"] < peaks["small"] + 2 * MIB, peaks
    assert lattice.cached_bytes() == 0
