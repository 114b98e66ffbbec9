"""Histogram packing: packed channels unpack exactly, it is used only where it pays, and
its sets are read with every bad byte refused."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import smooth_image

from idfcompress.errors import CorruptFile
from idfcompress.predictive import coder as predictive
from idfcompress.predictive import packing, prior, regions


def test_pack_and_unpack_invert(rng):
    region = rng.choice(np.array([3, 9, 10, 200], np.uint8), (17, 11, 2))
    used = np.zeros(256, bool)
    used[[3, 9, 10, 200]] = True
    packed = packing.pack([region], [None, used])
    assert np.array_equal(packed[0][..., 0], region[..., 0])
    assert set(np.unique(packed[0][..., 1])) <= {0, 1, 2, 3}
    assert np.array_equal(packing.unpack(packed, [None, used])[0], region)


def test_only_channels_with_regular_gaps_are_packed(rng):
    photo = smooth_image(rng, 96, 80, 3)
    assert packing.choose([photo]) == [None, None, None]
    tails = photo.copy()  # a value missing in one tail: not worth a set
    tails[tails == tails.max()] -= 1
    assert packing.choose([tails]) == [None, None, None]
    scaled = photo.copy()
    scaled[..., 1] = scaled[..., 1] // 4 * 4  # stretched from 64 levels
    sets = packing.choose([scaled])
    assert sets[0] is None and sets[2] is None
    assert sets[1] is not None and np.array_equal(np.flatnonzero(sets[1]) % 4, sets[1].sum() * [0])


def test_packing_shrinks_a_payload_of_few_levels(rng):
    region = smooth_image(rng, 64, 64, 1) // 3 * 3
    payload = regions.encode_regions([region])
    assert payload[0] == regions.SCALED and payload[2] == 1  # channel 0 packed
    assert np.array_equal(regions.decode_regions(payload, [region.shape])[0], region)
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    plain = 3 + len(predictive.plan([region], learned).payload())  # the same, unpacked
    assert len(payload) < 0.95 * plain


def test_a_rank_past_its_set_is_corrupt(rng):
    region = smooth_image(rng, 64, 64, 1) // 3 * 3
    payload = bytearray(regions.encode_regions([region]))
    assert payload[2] == 1
    top = 3 + packing.SET_BYTES - 1 - next(  # clear the highest value of the set
        i for i, b in enumerate(reversed(payload[3 : 3 + packing.SET_BYTES])) if b
    )
    payload[top] &= (1 << (int(payload[top]).bit_length() - 1)) - 1
    with pytest.raises(CorruptFile):
        regions.decode_regions(bytes(payload), [region.shape])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "mask"),
        (b"\x02", "channel"),
        (b"\x01" + bytes(31), "cut short"),
        (b"\x01" + bytes(32), "empty"),
    ],
)
def test_bad_sets_are_corrupt(data, message):
    with pytest.raises(CorruptFile, match=message):
        packing.read_sets(data, 1)


def test_sets_are_read_back_as_written(rng):
    used = rng.random(256) < 0.3
    sets = [used, None, ~used]
    data = packing.write_sets(sets) + b"rest"
    read, size = packing.read_sets(data, 3)
    assert size == 1 + 2 * packing.SET_BYTES and data[size:] == b"rest"
    assert np.array_equal(read[0], used) and read[1] is None and np.array_equal(read[2], ~used)
