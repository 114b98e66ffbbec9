"""The encoder's bytes do not change without a format change: a fixed set of images in
every mode against the SHA-256 recorded in data/golden_bytes.json (golden.py)."""

from __future__ import annotations

import json

import pytest
from golden import GOLDEN, cases, encode

EXPECTED = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize(
    ("name", "image", "tile_size", "mode"),
    [(n, i, t, m) for n, i, t, modes in cases() for m in modes],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bytes_are_the_recorded_ones(name, image, tile_size, mode):
    import hashlib

    digest = hashlib.sha256(encode(image, tile_size, mode)).hexdigest()
    assert digest == EXPECTED[f"{name}/{mode}"], (
        "rerun tests/codec/golden.py only with a format change"
    )


def test_every_recorded_case_is_tested():
    assert {f"{n}/{m}" for n, _, _, modes in cases() for m in modes} == set(EXPECTED)
