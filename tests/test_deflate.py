"""Deflate coding of tile margins and raw cores: the delta filter inverts, bad streams fail."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from idfcompress import deflate
from idfcompress.errors import CorruptFile

shapes = st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(1, 4))


@settings(max_examples=200, deadline=None)
@given(st.lists(shapes.flatmap(lambda s: arrays(np.uint8, s)), max_size=3))
def test_regions_round_trip(regions):
    payload = deflate.encode_regions(regions)
    decoded = deflate.decode_regions(payload, [r.shape for r in regions])
    assert all(np.array_equal(a, b) for a, b in zip(regions, decoded, strict=True))


def test_filter_is_sub_on_the_first_row_and_up_below():
    region = np.array([[10, 30, 25], [12, 40, 20]], dtype=np.uint8)[:, :, None]
    residuals = deflate.delta_filter(region)[:, :, 0]
    assert residuals.tolist() == [[10, 20, 251], [2, 10, 251]]
    assert np.array_equal(deflate.delta_unfilter(deflate.delta_filter(region)), region)


def test_the_smaller_filter_is_chosen(rng):
    y, x = np.mgrid[0:64, 0:64]
    ramp = ((x * 3 + y * 2) % 256).astype(np.uint8)[:, :, None]  # photo-like: delta wins
    payload = deflate.encode_regions([ramp])
    assert payload[0] == deflate.DELTA_FILTER
    assert len(payload) < len(zlib.compress(ramp.tobytes(), 9)) / 4
    dots = rng.choice(np.array([0, 255], np.uint8), (64, 64, 1))  # two values: no filter wins
    payload = deflate.encode_regions([dots])
    assert payload[0] == deflate.NO_FILTER
    assert len(payload) == 1 + len(zlib.compress(dots.tobytes(), 9))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01not deflate",
        b"\x02" + zlib.compress(bytes(12)),
        zlib.compress(bytes(12)),
        b"\x00" + zlib.compress(bytes(11)),
        b"\x01" + zlib.compress(bytes(13)),
        b"\x01" + zlib.compress(bytes(12)) + b"\0",
    ],
)
def test_bad_filters_and_streams_of_the_wrong_size_are_corrupt(payload):
    with pytest.raises(CorruptFile):
        deflate.decode_regions(payload, [(2, 3, 2)])
    deflate.decode_regions(b"\x01" + zlib.compress(bytes(12)), [(2, 3, 2)])  # the right size
