"""Files of format version 7 (recorded before the learned prior) still decode, exactly."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import idfcompress
from idfcompress.format import container

FILES = sorted((Path(__file__).with_name("data") / "format7").glob("*.idf"))


def test_the_recorded_files_are_there():
    assert len(FILES) >= 10 and {"flow", "predictive"} <= {p.stem.rsplit("-", 1)[1] for p in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_version_7_files_decode_and_recode_as_version_8(path):
    data = path.read_bytes()
    assert struct.unpack_from("<H", data, 8)[0] == 7
    pixels = idfcompress.decompress(data)  # checked against the file's pixel SHA-256
    again = idfcompress.compress(pixels, mode="predictive")
    assert struct.unpack_from("<H", again, 8)[0] == container.FORMAT_VERSION == 8
    assert np.array_equal(idfcompress.decompress(again), pixels)
