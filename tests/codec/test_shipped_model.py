"""A real round trip with the shipped priors on real photographs; the shipped flow models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import idfcompress as ic
from idfcompress.flow import loading

MODELS = Path(__file__).resolve().parents[2] / "models"


def _png_bytes(pixels: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return len(buffer.getvalue())


@pytest.mark.parametrize("name,channels", [("idf-rgb-c1", 3), ("idf-gray-c2", 1)])
def test_the_flow_models_ship_with_matching_cards(name, channels):
    """The retired flow's models stay, to decode its files (test_old_formats.py)."""
    card = json.loads((MODELS / f"{name}.json").read_text())
    loaded = loading.load_model(name)
    assert loaded.sha256.hex() == card["sha256"]
    assert loaded.flow.config.in_channels == channels
    assert card["config"] == json.loads(loaded.flow.config.to_json())


@pytest.mark.parametrize("photo", ["coffee", "camera"])
def test_real_photo_round_trip(photo):
    pixels = getattr(skimage.data, photo)()
    data = ic.compress(pixels)
    assert np.array_equal(ic.decompress(data), pixels)
    assert ic.info(data)["coarse_tiles"] >= 1


def test_colour_photo_beats_optimised_png():
    pixels = skimage.data.coffee()
    assert len(ic.compress(pixels)) < _png_bytes(pixels)
