"""Tests of the .idf container (idfcompress.container)."""

from __future__ import annotations

import hashlib
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idfcompress.errors import (
    CorruptFile,
    FormatError,
    NotAnIdfFile,
    TruncatedFile,
    UnsupportedVersion,
)
from idfcompress.format import container as C
from idfcompress.predictive import regions

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

LAYOUTS = {
    "L": [(1,)],
    "LA": [(1, 1)],
    "RGB": [(3,), (1, 1, 1)],
    "RGBA": [(3, 1), (1, 1, 1, 1)],
}


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def make_header(
    mode: str = "RGBA",
    layout: tuple[int, ...] = (3, 1),
    width: int = 40,
    height: int = 20,
    tile_size: int = 16,
    source_mode: str | None = None,
    metadata: dict[str, bytes] | None = None,
) -> C.Header:
    groups = []
    first = 0
    for i, ch in enumerate(layout):
        groups.append(C.PlaneGroup(ch, first, f"idf-{ch}ch.v{i}", sha(f"weights{i}")))
        first += ch
    return C.Header(
        width=width,
        height=height,
        mode=mode,
        source_mode=source_mode,
        tile_size=tile_size,
        pixel_sha256=sha("pixels"),
        groups=groups,
        metadata={} if metadata is None else metadata,
    )


def make_chunks(header: C.Header, levels: int = 2) -> list[C.Chunk]:
    """Coarsest level first for every tile, then finer levels; group 1 as raw tiles."""
    chunks = []
    for g in range(len(header.groups)):
        if g % 2 == 1:
            for t in range(header.tile_count):
                chunks.append(C.Chunk(g, 0, t, bytes([g, t]) * (t + 1)))
    for k in range(levels, 0, -1):
        for t in range(header.tile_count):
            for g in range(0, len(header.groups), 2):
                chunks.append(C.Chunk(g, k, t, bytes([k, t, g]) * (k + t)))
    return chunks


def small_file() -> bytes:
    header = make_header("LA", (1, 1), width=20, height=10, tile_size=8, metadata={"ICCP": b"x"})
    return C.write(header, make_chunks(header, levels=1))


def header_len(data: bytes) -> int:
    size = C.header_size_needed(data)
    assert size is not None
    return size


def fix_crc(buf: bytearray) -> bytearray:
    """Recompute the header CRC of a (deliberately broken) file, if its header fits."""
    size = C.header_size_needed(buf)
    if size is not None and size <= len(buf):
        struct.pack_into("<I", buf, size - 4, zlib.crc32(buf[: size - 4]))
    return buf


def read_raises(data: bytes | bytearray) -> FormatError:
    with pytest.raises(FormatError) as info:
        C.read(bytes(data))
    assert "\n" not in str(info.value)
    return info.value


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "mode,layout", [(m, layout) for m, layouts in LAYOUTS.items() for layout in layouts]
)
def test_round_trip_layouts(mode: str, layout: tuple[int, ...]) -> None:
    meta = {"ICCP": b"\x00icc" * 50, "EXIF": b"Exif\x00\x00MM", "XMP ": b"<x/>", "zzz9": b""}
    header = make_header(mode, layout, width=50, height=33, tile_size=16, metadata=meta)
    chunks = make_chunks(header, levels=3)
    data = C.write(header, chunks)

    h2, entries = C.read_header(data)
    assert h2 == header
    assert list(h2.metadata) == list(meta)
    h3, items = C.read(data)
    assert h3 == header
    assert len(items) == len(chunks)
    offset = header_len(data)
    for chunk, (entry, view) in zip(chunks, items, strict=True):
        assert (entry.group, entry.kind, entry.tile) == (chunk.group, chunk.kind, chunk.tile)
        assert entry.offset == offset and entry.length == len(chunk.payload)
        assert entry.crc32 == zlib.crc32(chunk.payload)
        assert bytes(view) == chunk.payload
        assert bytes(C.payload(data, entry)) == chunk.payload
        offset += entry.length
    assert offset == len(data)
    assert [e for e, _ in items] == entries


def test_round_trip_source_modes_and_inputs() -> None:
    for source, mode, layout in [("1", "L", (1,)), ("P", "RGB", (3,)), ("P", "RGBA", (3, 1))]:
        header = make_header(mode, layout, source_mode=source)
        data = C.write(header, make_chunks(header))
        for buf in (data, bytearray(data), memoryview(data)):
            assert C.read(buf)[0] == header


def test_no_chunks_and_chunk_order_kept() -> None:
    header = make_header("L", (1,), width=8, height=8, tile_size=8)
    data = C.write(header, [])
    assert C.read(data) == (header, [])
    chunks = [
        C.Chunk(0, 1, 0, b"a"),
        C.Chunk(0, 3, 0, b"bb"),
        C.Chunk(0, 0, 0, b""),
        C.Chunk(0, 2, 0, b"c"),
    ]
    _, items = C.read(C.write(header, chunks))
    assert [(e.kind, bytes(v)) for e, v in items] == [(1, b"a"), (3, b"bb"), (0, b""), (2, b"c")]


def test_tile_grid() -> None:
    h = make_header(width=100, height=30, tile_size=64)
    assert h.tile_grid == (1, 2) and h.tile_count == 2
    h = make_header(width=128, height=129, tile_size=64)
    assert h.tile_grid == (3, 2) and h.tile_count == 6
    h = make_header(width=1, height=1, tile_size=8)
    assert h.tile_grid == (1, 1)


def test_fixed_layout_offsets() -> None:
    header = make_header("RGB", (3,), width=0x01020304, height=7, tile_size=0x0100)
    data = C.write(header, [])
    assert data[:8] == C.MAGIC == b"\x89IDF\r\n\x1a\n"
    assert data[8:10] == b"\x0b\x00" and data[10:12] == b"\x00\x00"
    assert data[12:16] == b"\x04\x03\x02\x01" and data[16:20] == b"\x07\x00\x00\x00"
    assert data[20] == 3 and data[21] == 0 and data[22:24] == b"\x00\x01"
    assert data[24:56] == header.pixel_sha256 and data[56] == 1
    name = header.groups[0].model_name.encode()
    assert data[57:60] == bytes([3, 0, len(name)]) and data[60 : 60 + len(name)] == name
    pos = 60 + len(name)
    assert data[pos : pos + 32] == header.groups[0].model_sha256 and data[pos + 32] == 2
    assert data[pos + 33 : pos + 35] == b"\x00\x00"  # no metadata
    assert data[pos + 35 : pos + 39] == b"\x00\x00\x00\x00"  # no chunks
    assert len(data) == pos + 43
    assert data[-4:] == struct.pack("<I", zlib.crc32(data[:-4]))


# --------------------------------------------------------------------------- truncation


def test_every_prefix() -> None:
    data = small_file()
    size = header_len(data)
    known = None
    for k in range(len(data)):
        prefix = data[:k]
        with pytest.raises(TruncatedFile):
            C.read(prefix)
        needed = C.header_size_needed(prefix)
        if needed is not None:
            assert needed == size
            known = needed
        else:
            assert known is None
        if k < size:
            with pytest.raises(TruncatedFile):
                C.read_header(prefix)
        else:
            assert C.read_header(prefix) == C.read_header(data)
    assert known == size
    with pytest.raises(TruncatedFile, match="empty"):
        C.read(b"")


def test_not_an_idf_file() -> None:
    for junk in (b"GIF89a", b"\x89PNG\r\n\x1a\n" + bytes(100), b"x", b"\x89IDX"):
        with pytest.raises(NotAnIdfFile, match="not an .idf file"):
            C.read(junk)
        with pytest.raises(NotAnIdfFile):
            C.read_header(junk)
        with pytest.raises(NotAnIdfFile):
            C.header_size_needed(junk)


def test_payload_random_access() -> None:
    data = small_file()
    _, entries = C.read_header(data)
    last = entries[-1]
    assert bytes(C.payload(data, last)) == data[last.offset :]
    with pytest.raises(TruncatedFile):
        C.payload(data[:-1], last)
    broken = bytearray(data)
    broken[last.offset] ^= 0xFF
    with pytest.raises(CorruptFile, match="checksum"):
        C.payload(bytes(broken), last)
    with pytest.raises(CorruptFile, match="checksum"):
        C.read(bytes(broken))


def test_trailing_bytes() -> None:
    data = small_file()
    for extra in (b"\x00", b"garbage" * 10):
        with pytest.raises(CorruptFile, match="after the last chunk"):
            C.read(data + extra)
        assert C.read_header(data + extra) == C.read_header(data)


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4, 5, 6, 12, 0xFFFF])
def test_wrong_version(version: int) -> None:
    data = bytearray(small_file())
    struct.pack_into("<H", data, 8, version)  # header CRC now wrong too: version wins
    for fn in (C.read, C.read_header, C.header_size_needed):
        with pytest.raises(UnsupportedVersion) as info:
            fn(bytes(data))
        assert str(version) in str(info.value) and str(C.FORMAT_VERSION) in str(info.value)
    with pytest.raises(UnsupportedVersion):
        C.read(bytes(data[:10]))


# --------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_magic(tail: bytes) -> None:
    for data in (
        C.MAGIC + tail,
        C.MAGIC + b"\x01\x00" + tail,
        C.MAGIC + b"\x01\x00\x00\x00" + tail,
    ):
        read_raises(data)
        try:
            C.read_header(data)
        except FormatError:
            pass
        try:
            C.header_size_needed(data)
        except FormatError:
            pass


@FUZZ
@given(st.data())
def test_bit_flips_anywhere(draw: st.DataObject) -> None:
    data = bytearray(small_file())
    bit = draw.draw(st.integers(0, len(data) * 8 - 1))
    data[bit // 8] ^= 1 << (bit % 8)
    read_raises(data)  # CRC-32 detects every single-bit error


@FUZZ
@given(st.data())
def test_byte_damage_with_repaired_crc(draw: st.DataObject) -> None:
    """Damage header bytes and recompute the header CRC: the semantic checks must cope."""
    data = bytearray(small_file())
    size = header_len(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        pos = draw.draw(st.integers(10, size - 5))
        data[pos] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.sampled_from([None, len(data) - 1, size, size // 2]))
    fix_crc(data)
    if cut is not None:
        del data[cut:]
    for fn in (C.read, C.read_header, C.header_size_needed):
        try:
            fn(bytes(data))
        except FormatError as e:
            assert "\n" not in str(e)


@FUZZ
@given(st.binary(min_size=1, max_size=40), st.integers(0, 200), st.data())
def test_splice_random_bytes(junk: bytes, where: int, draw: st.DataObject) -> None:
    data = bytearray(small_file())
    where = min(where, len(data))
    mode = draw.draw(st.sampled_from(["insert", "overwrite", "cut"]))
    if mode == "insert":
        data[where:where] = junk
    elif mode == "overwrite":
        data[where : where + len(junk)] = junk
    else:
        del data[where : where + len(junk)]
    if bytes(data) != small_file():
        read_raises(data)


# --------------------------------------------------------------------------- huge claims


def _assert_small(data: bytes, exc: type[FormatError]) -> None:
    tracemalloc.start()
    try:
        for fn in (C.read, C.read_header):
            with pytest.raises(exc):
                fn(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_huge_chunk_count() -> None:
    data = bytearray(C.write(make_header("L", (1,)), []))
    size = header_len(data)
    struct.pack_into("<I", data, size - 8, 0xFFFFFFFF)
    data += bytes(100)
    _assert_small(bytes(data), TruncatedFile)
    assert C.header_size_needed(bytes(data)) == size + 16 * 0xFFFFFFFF


def test_huge_metadata_claims() -> None:
    header = make_header("L", (1,), metadata={"EXIF": b"abc"})
    data = bytearray(C.write(header, []))
    pos = data.index(b"EXIF")
    struct.pack_into("<I", data, pos + 4, 0xFFFFFFFF)  # item length
    _assert_small(bytes(data), TruncatedFile)
    struct.pack_into("<I", data, pos + 4, 3)
    struct.pack_into("<H", data, pos - 2, 0xFFFF)  # item count
    _assert_small(bytes(data), TruncatedFile)


def test_huge_payload_length() -> None:
    header = make_header("L", (1,), width=8, height=8, tile_size=8)
    data = bytearray(C.write(header, [C.Chunk(0, 1, 0, b"abc")]))
    size = header_len(data)
    struct.pack_into("<I", data, size - 4 - 8, 0xFFFFFFFF)  # the entry's length field
    fix_crc(data)
    with pytest.raises(TruncatedFile):
        C.read(bytes(data))
    _, entries = C.read_header(bytes(data))
    with pytest.raises(TruncatedFile):
        C.payload(bytes(data), entries[0])


# --------------------------------------------------------------------------- structure


def _broken(mutate) -> bytearray:
    header = make_header("RGBA", (3, 1), width=20, height=10, tile_size=8)
    chunks = [C.Chunk(0, 2, 1, b"x"), C.Chunk(1, 0, 2, b"yy"), C.Chunk(0, 1, 1, b"z")]
    data = bytearray(C.write(header, chunks))
    mutate(data)
    return fix_crc(data)


def _group_pos(data: bytearray, index: int) -> int:
    pos = 57
    for _ in range(index):
        pos += 36 + data[pos + 2]
    return pos


def _entry_pos(data: bytearray, index: int) -> int:
    size = header_len(data)
    n = struct.unpack_from("<I", data, size - 8 - 16 * 3)[0]
    assert n == 3
    return size - 4 - 16 * (3 - index)


def _set(pos_fn, value: int, fmt: str = "<B"):
    def mutate(data: bytearray) -> None:
        struct.pack_into(fmt, data, pos_fn(data), value)

    return mutate


CORRUPTIONS = {
    "flags": _set(lambda d: 10, 1, "<H"),
    "width0": _set(lambda d: 12, 0, "<I"),
    "height0": _set(lambda d: 16, 0, "<I"),
    "mode0": _set(lambda d: 20, 0),
    "mode5": _set(lambda d: 20, 5),
    "source3": _set(lambda d: 21, 3),
    "source1_rgba": _set(lambda d: 21, 1),
    "tile0": _set(lambda d: 22, 0, "<H"),
    "tile12": _set(lambda d: 22, 12, "<H"),
    "channels2": _set(lambda d: _group_pos(d, 0), 2),
    "overlap": _set(lambda d: _group_pos(d, 1) + 1, 2),
    "gap": _set(lambda d: _group_pos(d, 1) + 1, 4),
    "second_first0": _set(lambda d: _group_pos(d, 1) + 1, 0),
    "first1": _set(lambda d: _group_pos(d, 0) + 1, 1),
    "too_many_channels": _set(lambda d: _group_pos(d, 1), 3),
    "name_char": _set(lambda d: _group_pos(d, 0) + 3, ord("/")),
    "name_nonascii": _set(lambda d: _group_pos(d, 0) + 3, 0xE9),
    "arith0": _set(lambda d: _group_pos(d, 1) - 1, 0),
    "arith1": _set(lambda d: _group_pos(d, 1) - 1, 1),
    "arith3": _set(lambda d: _group_pos(d, 1) - 1, 3),
    "chunk_group": _set(lambda d: _entry_pos(d, 0), 2),
    "chunk_tile": _set(lambda d: _entry_pos(d, 0) + 4, 6, "<I"),
    "chunk_reserved": _set(lambda d: _entry_pos(d, 1) + 2, 1, "<H"),
    "chunk_duplicate": _set(lambda d: _entry_pos(d, 2) + 1, 2),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_structural_errors(name: str) -> None:
    data = _broken(CORRUPTIONS[name])
    with pytest.raises(CorruptFile) as info:
        C.read_header(bytes(data))
    assert "\n" not in str(info.value)
    assert "checksum" not in str(info.value)
    read_raises(data)


def test_group_count_out_of_range() -> None:
    data = bytearray(C.write(make_header("L", (1,)), []))
    group = bytes(data[57 : _group_pos(data, 1)])
    none = bytearray(data)
    none[56] = 0
    del none[57 : 57 + len(group)]
    five = bytearray(data)
    five[56] = 5
    five[57:57] = group * 4
    for bad in (none, five):
        with pytest.raises(CorruptFile, match="plane-group count"):
            C.read(bytes(fix_crc(bad)))


def test_name_length_zero_and_too_long() -> None:
    for n in (0, 65):
        header = make_header("L", (1,), metadata={})
        data = bytearray(C.write(header, []))
        old = data[59]
        name = b"a" * n
        data[59 : 60 + old] = bytes([n]) + name
        fix_crc(data)
        with pytest.raises(CorruptFile, match="model name"):
            C.read(bytes(data))


def test_metadata_tag_errors() -> None:
    header = make_header("L", (1,), metadata={"ICCP": b"1", "EXIF": b"2"})
    data = bytearray(C.write(header, []))
    dup = bytearray(data)
    pos = dup.index(b"EXIF")
    dup[pos : pos + 4] = b"ICCP"
    with pytest.raises(CorruptFile, match="twice"):
        C.read(bytes(fix_crc(dup)))
    bad = bytearray(data)
    bad[pos] = 0xFF
    with pytest.raises(CorruptFile, match="tag"):
        C.read(bytes(fix_crc(bad)))


def test_header_crc_mismatch() -> None:
    data = bytearray(small_file())
    data[30] ^= 1  # inside the pixel SHA-256: only the CRC can notice
    with pytest.raises(CorruptFile, match="header checksum"):
        C.read_header(bytes(data))


# --------------------------------------------------------------------------- writer


def _replace(header: C.Header, **kw) -> C.Header:
    fields = dict(header.__dict__)
    fields.update(kw)
    return C.Header(**fields)


@pytest.mark.parametrize(
    "change",
    [
        {"width": 0},
        {"height": 2**32},
        {"mode": "CMYK"},
        {"source_mode": "P"},  # "P" decodes to RGB/RGBA only; header is LA
        {"source_mode": "I"},
        {"tile_size": 4},
        {"tile_size": 20},
        {"tile_size": 65536},
        {"pixel_sha256": b"short"},
        {"groups": []},
        {"groups": [C.PlaneGroup(1, 0, "m", bytes(32))]},
        {"groups": [C.PlaneGroup(1, 0, "m", bytes(32))] * 2},
        {"groups": [C.PlaneGroup(1, 0, "m", bytes(32)), C.PlaneGroup(1, 1, "bad name", bytes(32))]},
        {"groups": [C.PlaneGroup(1, 0, "m" * 65, bytes(32)), C.PlaneGroup(1, 1, "m", bytes(32))]},
        {"groups": [C.PlaneGroup(1, 0, "m", bytes(31)), C.PlaneGroup(1, 1, "m", bytes(32))]},
        {"groups": [C.PlaneGroup(1, 0, "m", bytes(32), 7), C.PlaneGroup(1, 1, "m", bytes(32))]},
        {"metadata": {"ICC": b""}},
        {"metadata": {"ICC\u00e9": b""}},
    ],
)
def test_writer_rejects_invalid_headers(change: dict) -> None:
    header = _replace(make_header("LA", (1, 1)), **change)
    with pytest.raises(ValueError):
        C.write(header, [])


def test_writer_rejects_invalid_chunks() -> None:
    header = make_header("LA", (1, 1), width=16, height=8, tile_size=8)  # 2 tiles
    for chunks in (
        [C.Chunk(2, 1, 0, b"")],
        [C.Chunk(0, 1, 2, b"")],
        [C.Chunk(0, 256, 0, b"")],
        [C.Chunk(0, -1, 0, b"")],
        [C.Chunk(0, 1, 0, b"a"), C.Chunk(0, 1, 0, b"b")],
    ):
        with pytest.raises(ValueError):
            C.write(header, chunks)
    ok = [C.Chunk(0, 1, 0, b"a"), C.Chunk(0, 0, 0, b"b"), C.Chunk(1, 1, 0, b"c")]
    assert len(C.read(C.write(header, ok))[1]) == 3


# --------------------------------------------------------------------------- docs


def test_format_md_worked_example_is_current() -> None:
    """The hex dump in docs/FORMAT.md must be what write() produces."""
    import pathlib
    import re

    doc = (pathlib.Path(__file__).parents[2] / "docs" / "FORMAT.md").read_text()
    dump = re.search(r"```\n(0000 .*?)```", doc, re.S)
    assert dump is not None
    documented = bytes.fromhex("".join(line[6:55] for line in dump.group(1).splitlines()))
    pixels = bytes([0x00, 0x40, 0x80, 0xFF])
    header = C.Header(
        width=2,
        height=2,
        mode="L",
        source_mode=None,
        tile_size=64,
        pixel_sha256=C.pixel_digest(2, 2, "L", pixels),
        groups=[C.PlaneGroup(1, 0, "idf-L", hashlib.sha256(b"example weights").digest())],
        metadata={"EXIF": b"Exif"},
    )
    payload = documented[136:]  # filter 1 + the LZMA2 stream of the residuals
    assert payload[0] == 1
    assert regions.decompress(payload[1:], 4) == bytes([0x00, 0x40, 0x80, 0xBF])
    assert C.write(header, [C.Chunk(0, 255, 0, payload)]) == documented
    assert C.header_size_needed(documented[:116]) == 136
