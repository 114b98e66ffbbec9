"""Region payloads (tile margins, raw cores): the delta filter inverts, bad streams fail."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from idfcompress import regions
from idfcompress.errors import CorruptFile

shapes = st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(1, 4))


@settings(max_examples=200, deadline=None)
@given(st.lists(shapes.flatmap(lambda s: arrays(np.uint8, s)), max_size=3))
def test_regions_round_trip(parts):
    payload = regions.encode_regions(parts)
    decoded = regions.decode_regions(payload, [r.shape for r in parts])
    assert all(np.array_equal(a, b) for a, b in zip(parts, decoded, strict=True))


def test_filter_is_sub_on_the_first_row_and_up_below():
    region = np.array([[10, 30, 25], [12, 40, 20]], dtype=np.uint8)[:, :, None]
    residuals = regions.delta_filter(region)[:, :, 0]
    assert residuals.tolist() == [[10, 20, 251], [2, 10, 251]]
    assert np.array_equal(regions.delta_unfilter(regions.delta_filter(region)), region)


def test_the_smaller_filter_is_chosen(rng):
    y, x = np.mgrid[0:64, 0:64]
    ramp = ((x * 3 + y * 2) % 256).astype(np.uint8)[:, :, None]  # photo-like: delta wins
    payload = regions.encode_regions([ramp])
    assert payload[0] == regions.DELTA_FILTER
    assert len(payload) < len(regions.compress(ramp.tobytes())) / 4
    dots = rng.choice(np.array([0, 255], np.uint8), (64, 64, 1))  # two values: no filter wins
    payload = regions.encode_regions([dots])
    assert payload[0] == regions.NO_FILTER
    assert len(payload) == 1 + len(regions.compress(dots.tobytes()))


def test_quick_estimate_picks_the_filter_its_payload_uses(rng):
    y, x = np.mgrid[0:64, 0:64]
    ramp = ((x * 3 + y * 2) % 256).astype(np.uint8)[:, :, None]
    dots = rng.choice(np.array([0, 255], np.uint8), (64, 64, 1))
    for region, expected in ((ramp, regions.DELTA_FILTER), (dots, regions.NO_FILTER)):
        estimate = regions.QuickEstimate([region])
        assert estimate.filter == expected
        payload = estimate.payload()
        assert payload[0] == expected
        filtered = regions.delta_filter(region) if expected == regions.DELTA_FILTER else region
        assert estimate.size == 1 + len(zlib.compress(filtered.tobytes(), 6))
        assert np.array_equal(regions.decode_regions(payload, [region.shape])[0], region)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01not lzma",
        b"\x02" + regions.compress(bytes(12)),
        regions.compress(bytes(12)),
        b"\x00" + zlib.compress(bytes(12)),
        b"\x00" + regions.compress(bytes(11)),
        b"\x01" + regions.compress(bytes(13)),
        b"\x01" + regions.compress(bytes(12)) + b"\0",
        b"\x01" + regions.compress(bytes(12))[:-1],
    ],
)
def test_bad_filters_and_streams_of_the_wrong_size_are_corrupt(payload):
    with pytest.raises(CorruptFile):
        regions.decode_regions(payload, [(2, 3, 2)])
    regions.decode_regions(b"\x01" + regions.compress(bytes(12)), [(2, 3, 2)])  # the right size
