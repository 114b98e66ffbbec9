"""Region payloads (tile margins, raw tiles): the delta filter inverts, bad streams fail."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import smooth_image
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from idfcompress.errors import CorruptFile
from idfcompress.predictive import coder as predictive
from idfcompress.predictive import packing, prior, regions

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


def _candidates(region: np.ndarray) -> dict[int, int]:
    """Payload size under each filter."""
    sets = packing.choose([region])
    learned = predictive.plan(
        packing.pack([region], sets), prior.load_prior(prior.DEFAULT_PRIOR), online=True,
        by_scale=True,
    )
    return {
        regions.NO_FILTER: 1 + len(regions.compress(region.tobytes())),
        regions.DELTA_FILTER: 1 + len(regions.compress(regions.delta_filter(region).tobytes())),
        regions.SCALED: 2 + len(packing.write_sets(sets)) + len(learned.payload()),
    }


def test_the_smallest_payload_is_chosen(rng):
    y, x = np.mgrid[0:64, 0:64]
    ramp = ((x * 3 + y * 2) % 256).astype(np.uint8)[:, :, None]  # photo-like
    dots = np.tile(rng.integers(0, 256, (8, 8, 1), np.uint8), (8, 8, 1))  # repeats: no filter
    smooth = np.clip(128 + 0.05 * (x - 32) * (y - 20) + rng.normal(0, 1.5, x.shape), 0, 255)
    smooth = smooth.astype(np.uint8)[:, :, None]  # prediction wins
    for region, expected in ((dots, regions.NO_FILTER), (smooth, regions.SCALED)):
        sizes = _candidates(region)
        payload = regions.encode_regions([region])
        assert payload[0] == expected == min(sizes, key=sizes.get)
        assert len(payload) == sizes[expected]
    assert len(regions.encode_regions([ramp])) == min(_candidates(ramp).values())


def test_quick_estimate_payloads_decode_and_are_close_to_the_best(rng):
    y, x = np.mgrid[0:64, 0:64]
    ramp = ((x * 3 + y * 2) % 256).astype(np.uint8)[:, :, None]
    dots = rng.choice(np.array([0, 255], np.uint8), (64, 64, 1))
    smooth = np.clip(100 + x + rng.normal(0, 2, x.shape), 0, 255).astype(np.uint8)
    for region in (ramp, dots, np.repeat(smooth[:, :, None], 3, axis=2)):
        estimate = regions.RegionCoding([region])
        payload = estimate.payload()
        assert np.array_equal(regions.decode_regions(payload, [region.shape])[0], region)
        assert len(payload) <= 1.1 * min(_candidates(region).values()) + 8
        assert estimate.size <= 1 + len(zlib.compress(regions.delta_filter(region).tobytes(), 6))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01not lzma",
        b"\x05" + regions.compress(bytes(12)),
        b"\x02" + bytes(11),
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


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([(5, 7, 1), (9, 4, 3), (6, 6, 4)]))
def test_any_learned_payload_decodes_or_is_refused(body, shape):
    """Filter 3 with the shipped prior and any bytes after it (packing mask, sets, tables,
    stream): a region of the right shape, or an IdfError, never anything else."""
    from idfcompress.errors import IdfError

    try:
        out = regions.decode_regions(b"\x03\x01" + body, [shape])
    except IdfError:
        return
    assert len(out) == 1 and out[0].shape == shape and out[0].dtype == np.uint8


def test_a_packed_learned_payload_survives_every_truncation(rng):
    from idfcompress.errors import IdfError

    region = smooth_image(rng, 32, 24, 3) // 6 * 6
    payload = regions.encode_regions([region])
    assert payload[0] == regions.SCALED and payload[2]  # packed
    for cut in range(len(payload)):
        with pytest.raises(IdfError):
            regions.decode_regions(payload[:cut], [region.shape])


def test_shifts_by_scale_bin_the_priors_log_scale_and_matter(rng):
    """Filters 6 and 7 take each value's shifts from the bin of its prior log-scale index
    (docs/FORMAT.md, "Shifts by scale"); read as filter 4 (shifts by context) the same
    bytes are not the image."""
    from idfcompress.errors import IdfError
    from idfcompress.predictive import kernel

    scale = np.arange(-40, 200, dtype=np.int64)
    assert np.array_equal(kernel.scale_contexts(scale), np.clip((scale - 20) // 5, 0, 15))
    region = smooth_image(rng, 48, 40, 3)
    payload = regions.encode_regions([region])
    assert payload[0] == regions.SCALED
    assert np.array_equal(regions.decode_regions(payload, [region.shape])[0], region)
    forged = bytes([regions.ONLINE]) + payload[1:]
    try:
        other = regions.decode_regions(forged, [region.shape])[0]
    except IdfError:
        return
    assert not np.array_equal(other, region)
