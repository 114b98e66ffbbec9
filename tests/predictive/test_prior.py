"""The learned prior: exact integer features and network, weight files, learned payloads."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from safetensors.numpy import save_file

from idfcompress.errors import CorruptFile, ModelError
from idfcompress.predictive import coder, prior, regions

shapes = st.tuples(st.integers(0, 10), st.integers(0, 10), st.sampled_from([1, 2, 3, 4]))
RANDOM = prior.random_prior(3)


def _smooth(rng, h: int, w: int, c: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 50 * np.sin(x / 7.0 + y / 11.0)
    planes = np.stack([base + 15 * i for i in range(c)], -1) + rng.normal(0, 3, (h, w, c))
    return np.clip(planes, 0, 255).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(st.lists(shapes.flatmap(lambda s: arrays(np.uint8, s)), min_size=1, max_size=3))
def test_learned_round_trip(parts):
    payload = coder.plan(parts, RANDOM).payload()
    decoded = coder.decode(payload, [r.shape for r in parts], learned=RANDOM)
    assert all(np.array_equal(a, b) for a, b in zip(parts, decoded, strict=True))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_shipped_prior_round_trips_and_beats_an_untrained_one(channels):
    from skimage import data

    photo = data.astronaut()[120:200, 140:236] if channels > 2 else data.camera()[:80, 150:246]
    photo = photo if photo.ndim == 3 else photo[:, :, None]
    alpha = np.full(photo.shape[:2] + (1,), 255, np.uint8)
    region = np.concatenate([photo, alpha], -1) if channels in (2, 4) else photo
    shipped = prior.load_prior(prior.DEFAULT_PRIOR)
    sizes = {}
    for name, net in (("shipped", shipped), ("untrained", prior.random_prior(0))):
        payload = coder.plan([region], net).payload()
        assert np.array_equal(coder.decode(payload, [region.shape], learned=net)[0], region)
        sizes[name] = len(payload)
    assert sizes["shipped"] < sizes["untrained"]


def test_signed_root_is_exact():
    xs = np.array([0, 1, 2, 3, 4, 15, 16, 17, 10**12, 10**12 - 1, 2**49 + 12345], np.int64)
    xs = np.concatenate([xs, -xs])
    expected = [int(math.copysign(math.isqrt(abs(int(x))), x)) for x in xs]
    assert prior.signed_root(xs).tolist() == expected


def test_features_are_integers_and_the_network_agrees_across_row_orders(rng):
    planes, _ = coder.analyse(_smooth(rng, 40, 50, 3), with_features=True)
    feats = np.concatenate([p.features for p in planes])
    assert feats.shape[1] == prior.FEATURES and np.array_equal(feats, np.rint(feats))
    mean, scale = RANDOM.params(feats)
    order = rng.permutation(len(feats))
    mean2, scale2 = RANDOM.params(feats[order])
    assert np.array_equal(mean[order], mean2) and np.array_equal(scale[order], scale2)
    one = [RANDOM.params(feats[i : i + 1]) for i in range(0, len(feats), 97)]
    assert [int(m[0]) for m, _ in one] == mean[::97].tolist()


def test_quantized_network_follows_the_float_one(rng):
    sizes = [(prior.FEATURES, prior.HIDDEN), (prior.HIDDEN, prior.HIDDEN), (prior.HIDDEN, 2)]
    weights = [rng.normal(0, 1, s) / np.sqrt(s[0]) for s in sizes]
    biases = [rng.normal(0, 0.1, s[1]) for s in sizes]
    feats = rng.integers(-30, 60, (500, prior.FEATURES)).astype(np.float64)
    h = feats / 16
    for i in range(3):
        h = h @ weights[i] + biases[i]
        h = np.maximum(h, 0) if i < 2 else h
    mean, scale = prior.quantize(weights, biases).params(feats)
    assert np.abs(mean - np.clip(h[:, 0], -4080, 4080)).max() < 2
    assert np.abs(scale - prior.LOGSCALE_CENTRE - h[:, 1]).max() < 2


def test_weight_files_round_trip_even_from_transposed_arrays(rng, tmp_path):
    sizes = [(prior.HIDDEN, prior.FEATURES), (prior.HIDDEN, prior.HIDDEN), (2, prior.HIDDEN)]
    weights = [rng.normal(0, 0.3, s).T for s in sizes]  # Fortran-ordered, as torch's .T gives
    net = prior.quantize(weights, [np.zeros(s[0]) for s in sizes])
    save_file(net.tensors(), str(tmp_path / "p.safetensors"))
    again = prior.load_file(tmp_path / "p.safetensors")
    feats = rng.integers(0, 50, (200, prior.FEATURES)).astype(np.float64)
    assert all(
        np.array_equal(a, b) for a, b in zip(net.params(feats), again.params(feats), strict=True)
    )


def test_bad_weight_files_are_model_errors(tmp_path, monkeypatch):
    tensors = RANDOM.tensors()
    bad = {
        "missing": {k: v for k, v in tensors.items() if k != "w1"},
        "shape": tensors | {"w0": np.zeros((3, 3), np.int32)},
        "range": tensors | {"w2": np.full((prior.HIDDEN, 2), 1 << 20, np.int32)},
        "shift": tensors | {"shifts": np.array([0, 0, 99], np.int32)},
    }
    for name, t in bad.items():
        save_file(t, str(tmp_path / f"{name}.safetensors"))
        with pytest.raises(ModelError):
            prior.load_file(tmp_path / f"{name}.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a weight file")
    with pytest.raises(ModelError):
        prior.load_file(tmp_path / "junk.safetensors")
    # a file under a shipped prior's name whose bytes differ is refused, not used
    save_file(tensors, str(tmp_path / "prior-x.safetensors"))
    monkeypatch.setenv("IDFC_MODELS", str(tmp_path))
    monkeypatch.setitem(prior.PRIORS, 200, ("prior-x", hashlib.sha256(b"other").hexdigest()))
    monkeypatch.setitem(prior.PRIORS, 201, ("prior-absent", "0" * 64))
    prior.load_prior.cache_clear()
    try:
        with pytest.raises(ModelError, match="SHA-256"):
            prior.load_prior(200)
        with pytest.raises(ModelError, match="not found"):
            prior.load_prior(201)
        with pytest.raises(ModelError, match="unknown learned prior 77"):
            prior.load_prior(77)
    finally:
        prior.load_prior.cache_clear()


def test_learned_region_payloads_name_their_prior(rng):
    region = _smooth(rng, 30, 40, 3)
    payload = regions.encode_regions([region])
    assert payload[:2] == bytes([regions.SCALED, prior.DEFAULT_PRIOR])
    assert np.array_equal(regions.decode_regions(payload, [region.shape])[0], region)
    rule = regions.encode_regions([region], prior_id=None)
    assert rule[0] == regions.PREDICTIVE
    assert np.array_equal(regions.decode_regions(rule, [region.shape])[0], region)
    with pytest.raises(ModelError, match="unknown learned prior 250"):
        regions.decode_regions(payload[:1] + b"\xfa" + payload[2:], [region.shape])
    with pytest.raises(CorruptFile):
        regions.decode_regions(payload[:1], [region.shape])


def test_corrupt_learned_payloads_raise_only_corrupt_file(rng):
    region = _smooth(rng, 20, 24, 3)
    payload = bytearray(coder.plan([region], RANDOM).payload())
    for _ in range(40):
        broken = bytearray(payload)
        at = int(rng.integers(len(broken)))
        broken[at] ^= 1 << int(rng.integers(8))
        try:
            decoded = coder.decode(bytes(broken), [region.shape], learned=RANDOM)
        except CorruptFile:
            continue
        assert decoded[0].shape == region.shape  # a wrong image is caught by the file checksum
    with pytest.raises(CorruptFile):
        coder.decode(bytes(payload[:-3]), [region.shape], learned=RANDOM)
