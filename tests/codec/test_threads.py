"""Tiles coded on threads: the same bytes and pixels for any count, results in order, and
the first failing tile's error."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import smooth_image

import idfcompress
from idfcompress.codec import threads
from idfcompress.errors import CorruptFile
from idfcompress.format import container


@pytest.fixture
def thread_count():
    yield threads.set_threads
    threads.set_threads(None)


def test_any_thread_count_gives_the_same_file_and_pixels(rng, thread_count):
    image = smooth_image(rng, 150, 200, 3)
    files = {}
    for count in (1, 2, 5):
        thread_count(count)
        files[count] = idfcompress.compress(image, tile_size=64)
        assert np.array_equal(idfcompress.decompress(files[count]), image)
    assert files[1] == files[2] == files[5]


def test_results_come_in_order_from_several_threads(thread_count):
    thread_count(3)
    assert list(threads.map_tiles(lambda i: i * i, range(40))) == [i * i for i in range(40)]
    assert threads.threads() == 3


def test_the_first_failing_tile_is_the_one_reported(rng, thread_count):
    thread_count(2)
    data = bytearray(idfcompress.compress(smooth_image(rng, 128, 128, 3), tile_size=32))
    _, table = container.read_header(bytes(data))
    for entry in table[3:9]:  # break several tiles' payloads in the middle
        at = entry.offset + entry.length // 2
        data[at : at + 4] = bytes(4)
    with pytest.raises(CorruptFile) as first:
        idfcompress.decompress(bytes(data))
    thread_count(1)
    with pytest.raises(CorruptFile) as serial:
        idfcompress.decompress(bytes(data))
    assert str(first.value) == str(serial.value)


def test_a_thread_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        threads.set_threads(0)
