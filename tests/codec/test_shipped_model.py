"""A real round trip with the shipped default models on real photographs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import idfcompress as ic
from idfcompress.flow import loading, store

MODELS = Path(__file__).resolve().parents[2] / "models"


def _png_bytes(pixels: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return len(buffer.getvalue())


@pytest.mark.parametrize("channels", sorted(store.DEFAULT_MODELS))
def test_default_models_ship_with_matching_cards(channels):
    name = store.DEFAULT_MODELS[channels]
    card = json.loads((MODELS / f"{name}.json").read_text())
    loaded = loading.load_model(name)
    assert loaded.sha256.hex() == card["sha256"]
    assert loaded.flow.config.in_channels == channels
    assert card["config"] == json.loads(loaded.flow.config.to_json())


@pytest.mark.parametrize("photo", ["coffee", "camera"])
def test_real_photo_round_trip_through_the_flow(photo):
    pixels = getattr(skimage.data, photo)()
    # every core through the shipped model's networks (no region payloads)
    data, stats = ic.compress_with_stats(pixels, mode="flow")
    assert np.array_equal(ic.decompress(data), pixels)
    assert stats.region_tiles == 0
    # the real streams stay within 1 % of the model's ideal code length
    assert abs(stats.overhead) < 0.01, stats.overhead
    # the default (mode "predictive": region payloads) is smaller and decodes too
    default = ic.compress(pixels)
    assert len(default) < len(data)
    assert np.array_equal(ic.decompress(default), pixels)


def test_colour_photo_beats_optimised_png():
    pixels = skimage.data.coffee()
    assert len(ic.compress(pixels)) < _png_bytes(pixels)
