"""Predictive region payloads: exact round trips, the blend, gains, bands, corrupt data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from idfcompress.errors import CorruptFile
from idfcompress.predictive import coder as predictive
from idfcompress.predictive import kernel, regions

shapes = st.tuples(st.integers(0, 12), st.integers(0, 12), st.sampled_from([1, 2, 3, 4]))


@settings(max_examples=200, deadline=None)
@given(st.lists(shapes.flatmap(lambda s: arrays(np.uint8, s)), min_size=1, max_size=3))
def test_round_trip(parts):
    payload = predictive.plan(parts).payload()
    decoded = predictive.decode(payload, [r.shape for r in parts])
    assert all(np.array_equal(a, b) for a, b in zip(parts, decoded, strict=True))


def _blend(predictors: np.ndarray, errors: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    return kernel.blend(predictors, errors, nbr, predictive.BLEND_WEIGHTS)


def test_blend_follows_the_predictor_that_was_right():
    # the pixel's W is cell 4 (value 8), its N, NE and WW cell 3 (8), its NW and NN cell 2 (9)
    values = np.array([0, 7, 9, 8, 8, 0], dtype=np.int64)
    nbr = np.array([[4, 3, 2, 3, 3, 2]])
    predictors = predictive.PREDICTOR_MATRIX @ values[nbr.T]
    # W + N - NW, N, W, (W + NE) / 2, NE, (W + N) / 2, 2 N - NN, 2 W - WW
    assert (predictors[:, 0] // 16).tolist() == [7, 8, 8, 8, 8, 8, 7, 8]
    predictors = np.arange(predictive.PREDICTORS)[:, None] * 160  # 0, 10, 20, ... pixels
    for right in range(predictive.PREDICTORS):
        errors = np.full((6, predictive.PREDICTORS), 4000, dtype=np.int64)
        errors[:, right] = 0
        blend = _blend(predictors, errors, nbr)
        assert abs(int(blend[0]) - 160 * right) <= 16  # within a pixel of the right one
    equal = _blend(predictors, np.zeros((6, predictive.PREDICTORS), np.int64), nbr)
    assert int(equal[0]) == 160 * (predictive.PREDICTORS - 1) // 2  # the plain mean, rounded


def test_regions_beyond_a_band_and_wider_than_tall_round_trip(rng):
    y, x = np.mgrid[0:150, 0:40]
    smooth = (128 + 60 * np.sin(x / 9.0 + y / 13.0))[:, :, None] + rng.normal(0, 2, (150, 40, 3))
    for region in (
        np.clip(smooth, 0, 255).astype(np.uint8),
        np.clip(smooth, 0, 255).astype(np.uint8).transpose(1, 0, 2),
        rng.integers(0, 256, (70, 3, 4), dtype=np.uint8),
        rng.integers(0, 256, (2, 130, 2), dtype=np.uint8),
    ):
        assert region.shape[0] > predictive.BAND or region.shape[1] > predictive.BAND
        payload = predictive.plan([region]).payload()
        assert np.array_equal(predictive.decode(payload, [region.shape])[0], region)


def test_gains_follow_errors_shared_between_planes(rng):
    # R - G = G / 2 - 64: the R - G plane's prediction errors are half of G's
    g = np.clip(
        128 + 40 * np.sin(np.arange(96) / 7.0)[None, :] + rng.normal(0, 6, (96, 96)), 0, 255
    )
    g = np.round(g).astype(np.int64)
    region = np.stack([g + g // 2 - 64, g, g], axis=2).astype(np.uint8)
    plan = predictive.plan([region])
    first_gain = np.frombuffer(plan.payload()[:4], dtype=np.int8)[0]
    assert 3 <= first_gain <= 5  # about half, in eighths
    assert predictive.Plan([region], gains=False).size > 1.05 * plan.size


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
    head = predictive.head_size(3)
    bad_scale = bytearray(payload)
    bad_scale[2 * 2 + 1] = 200  # after the gains: a log-scale index beyond the grid
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


def test_rebuilt_colour_outside_a_byte_is_corrupt():
    # each plane within its range (G 0..255, R - G -255..255), their sum not
    planes = np.array([[250, 0], [20, 0], [0, 0]], dtype=np.int64)
    with pytest.raises(CorruptFile, match="out-of-range"):
        predictive.rebuilt_region(planes, 1, 2)
    assert predictive.rebuilt_region(planes * [[1], [0], [1]], 1, 2).tolist() == [
        [[250, 250, 250], [0, 0, 0]]
    ]
