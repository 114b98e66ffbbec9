"""Files of older format versions, older priors and the retired flow encoder still decode,
exactly: version 7 (recorded before the learned prior), version 8 (the learned prior without
the online filter), version 9 (the online filter, no coarse level), coded with prior 1 and
with prior 2, and version 10 as its last encoder with the flow wrote it (modes predictive,
auto and flow; codec/data/README.md)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import idfcompress
from idfcompress.format import container
from idfcompress.predictive import prior, regions

DATA = Path(__file__).with_name("data")
FILES = sorted(DATA.glob("format[0-9]*/*.idf"))


def _version(path: Path) -> int:
    return int(path.parent.name.removeprefix("format"))


@pytest.mark.parametrize("version", [7, 8, 9, 10])
def test_the_recorded_files_are_there(version):
    kinds = {p.stem.rsplit("-", 1)[1] for p in FILES if _version(p) == version}
    assert {"predictive"} <= kinds and len([p for p in FILES if _version(p) == version]) >= 9
    if version in (7, 10):
        assert "flow" in kinds
    if version == 10:
        assert "auto" in kinds


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_old_files_decode_and_recode_as_the_current_version(path):
    data = path.read_bytes()
    assert struct.unpack_from("<H", data, 8)[0] == _version(path)
    pixels = idfcompress.decompress(data)  # checked against the file's pixel SHA-256
    again = idfcompress.compress(pixels)
    assert struct.unpack_from("<H", again, 8)[0] == container.FORMAT_VERSION
    assert np.array_equal(idfcompress.decompress(again), pixels)


def test_version_8_files_hold_learned_payloads_without_the_online_filter():
    coders = [idfcompress.info(p.read_bytes())["region_coders"] for p in FILES if _version(p) == 8]
    names = {name for counted in coders for name in counted}
    assert "learned prior 1" in names and not any("online" in n for n in names)
    assert regions.LEARNED == 3


def test_version_9_files_hold_both_priors_and_no_coarse_level():
    infos = [idfcompress.info(p.read_bytes()) for p in FILES if _version(p) == 9]
    names = {name for info in infos for name in info["region_coders"]}
    assert {"learned prior 1, online filter", "learned prior 2, online filter"} <= names
    assert not any(info["coarse_tiles"] for info in infos)
    assert prior.DEFAULT_PRIOR >= 2


def test_version_10_files_of_the_flow_mix_coders_and_name_their_models():
    infos = {p.stem: idfcompress.info(p.read_bytes()) for p in FILES if _version(p) == 10}
    flow = infos["astronaut-112x96-flow"]
    assert flow["region_tiles"] == 0 and flow["groups"][0]["flow_chunks"] == 7  # one tile
    assert flow["groups"][0]["model"] == "idf-rgb-c1"
    # the predictive mode named the flow model too, without flow chunks
    predictive = infos["astronaut-112x96-predictive"]
    assert predictive["groups"][0]["model"] == "idf-rgb-c1"
    assert predictive["groups"][0]["flow_chunks"] == 0 and predictive["coarse_tiles"] == 1
