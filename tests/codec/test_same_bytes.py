"""The encoder's bytes do not change without a format change: a fixed set of images against
the SHA-256 recorded in data/golden_bytes.json (golden.py)."""

from __future__ import annotations

import hashlib
import json

import pytest
from golden import GOLDEN, cases, encode

EXPECTED = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize(
    ("name", "image", "tile_size"),
    list(cases()),
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bytes_are_the_recorded_ones(name, image, tile_size):
    digest = hashlib.sha256(encode(image, tile_size)).hexdigest()
    assert digest == EXPECTED[name], "rerun tests/codec/golden.py only with a format change"


def test_every_recorded_case_is_tested():
    assert {name for name, _, _ in cases()} == set(EXPECTED)
