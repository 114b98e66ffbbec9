"""Predictive region payloads: exact round trips, the median edge predictor, corrupt data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from idfcompress import predictive, regions
from idfcompress.errors import CorruptFile

shapes = st.tuples(st.integers(0, 12), st.integers(0, 12), st.sampled_from([1, 2, 3, 4]))


@settings(max_examples=200, deadline=None)
@given(st.lists(shapes.flatmap(lambda s: arrays(np.uint8, s)), min_size=1, max_size=3))
def test_round_trip(parts):
    payload = predictive.plan(parts).payload()
    decoded = predictive.decode(payload, [r.shape for r in parts])
    assert all(np.array_equal(a, b) for a, b in zip(parts, decoded, strict=True))


def test_median_edge_prediction():
    # W, N, NW = 10, 20, 5: NW below both -> max; 25 above both -> min; 15 between -> W+N-NW
    for northwest, expected in ((5, 20), (25, 10), (15, 15)):
        plane = np.array([[northwest, 20], [10, 0]], dtype=np.int64)
        padded = np.zeros((3, 3), dtype=np.int64)
        padded[1:, 1:] = plane
        at = np.array([2 * 3 + 2])
        prediction, context = predictive._predict(padded.ravel(), at, 3)
        assert prediction.tolist() == [expected]
        activity = abs(10 - northwest) + abs(20 - northwest)
        assert context.tolist() == [min(activity.bit_length(), predictive.CONTEXTS - 1)]


def _camera_like(rng, h=96, w=96, channels=1) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 40 * np.sin(x / 17.0) * np.cos(y / 23.0)
    noise = rng.normal(0, 1.2, base.shape)  # shared by the channels, as in camera images
    planes = [base + 10 * c + noise + rng.normal(0, 0.3, base.shape) for c in range(channels)]
    return np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_smooth_noisy_regions_beat_delta_and_lzma(rng, channels):
    region = _camera_like(rng, channels=channels)
    plan = predictive.plan([region])
    payload = plan.payload()
    lzma_size = len(regions.compress(regions.delta_filter(region).tobytes()))
    assert len(payload) < 0.95 * lzma_size
    assert abs(plan.size - len(payload)) < 0.03 * len(payload) + 16  # the estimate is close
    assert np.array_equal(predictive.decode(payload, [region.shape])[0], region)


def test_corrupt_payloads_raise_only_corrupt_file(rng):
    region = _camera_like(rng, 24, 20, 3)
    payload = predictive.plan([region]).payload()
    shape = [region.shape]
    head = 2 * predictive.CONTEXTS * 3
    bad_scale = bytearray(payload)
    bad_scale[1] = 200  # a log-scale index beyond the grid
    cases = [payload[:-4], payload[:head], payload[: head - 1], payload + bytes(4), bad_scale]
    for _ in range(60):
        flipped = bytearray(payload)
        i = int(rng.integers(len(flipped)))
        flipped[i] ^= 1 << int(rng.integers(8))
        cases.append(bytes(flipped))
    for case in cases:
        try:
            decoded = predictive.decode(bytes(case), shape)
        except CorruptFile:
            continue
        assert decoded[0].shape == region.shape and decoded[0].dtype == np.uint8
    for case in cases[:5]:
        with pytest.raises(CorruptFile):
            predictive.decode(bytes(case), shape)
