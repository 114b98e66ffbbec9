"""The .idf container: a versioned header followed by a list of chunk payloads.

This module only serialises and checks structure (see ``docs/FORMAT.md``); it knows
nothing about models, tensors or pixel data beyond the header fields.  Payloads are
opaque bytes, each protected by a CRC-32; the header is protected by its own CRC-32.

Reading is hardened against arbitrary input: :func:`read`, :func:`read_header`,
:func:`header_size_needed` and :func:`payload` raise only
:class:`~idfcompress.errors.FormatError` subclasses for bad data, never allocate in
proportion to a claimed length before checking it against the bytes actually present,
and run in time linear in the input size.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import CorruptFile, NotAnIdfFile, TruncatedFile, UnsupportedVersion

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "MODES",
    "NO_MODEL",
    "NO_MODEL_SHA256",
    "pixel_digest",
    "SOURCE_MODES",
    "PlaneGroup",
    "ChunkEntry",
    "Header",
    "Chunk",
    "write",
    "read_header",
    "header_size_needed",
    "read",
    "payload",
]

MAGIC: bytes = b"\x89IDF\r\n\x1a\n"
FORMAT_VERSION = 11
#: Versions this reader decodes: 7 to 10 differ from 11 only in the region filters and chunk
#: kinds they hold (10 adds the coarse level, 11 the shifts by scale).
READABLE_VERSIONS: tuple[int, ...] = (7, 8, 9, 10, 11)

MODES: dict[str, int] = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
SOURCE_MODES: dict[str | None, int] = {None: 0, "1": 1, "P": 2}

#: Arithmetic ids known to format version 3 (2 = integer networks carried exactly in float32).
ARITHMETICS: dict[int, str] = {2: "exact-int24"}

#: The model the encoder names for every group: none (only flow chunks need one).
NO_MODEL, NO_MODEL_SHA256 = "none", bytes(32)

_MODE_BY_ID = {v: k for k, v in MODES.items()}


def pixel_digest(width: int, height: int, mode: str, pixels: Buffer) -> bytes:
    """The header's pixel SHA-256: over u32 width, u32 height, u8 pixel mode id, then the
    H*W*C pixels (row-major, channels interleaved)."""
    digest = hashlib.sha256(struct.pack("<IIB", width, height, MODES[mode]))
    digest.update(pixels)
    return digest.digest()


_SOURCE_BY_ID = {v: k for k, v in SOURCE_MODES.items()}
# Decoded pixel modes a source mode may be stored as.
_SOURCE_TARGETS: dict[str | None, tuple[str, ...]] = {
    None: ("L", "LA", "RGB", "RGBA"),
    "1": ("L",),
    "P": ("RGB", "RGBA"),
}
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_NAME = 64
_MAX_GROUPS = 4
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF

_FIXED = struct.Struct("<8sHHIIBBH32sB")  # offsets 0..56 inclusive: 57 bytes
_ENTRY = struct.Struct("<BBHIII")  # one chunk-table entry: 16 bytes
_U16S = struct.Struct("<H")
_U32S = struct.Struct("<I")
_GROUP_FIXED = 1 + 1 + 1 + 32 + 1  # channels, first channel, name length, sha, arithmetic
_META_ITEM = 4 + 4  # tag, length

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class PlaneGroup:
    """A set of consecutive channels coded together: ``channels`` (1 or 3) from
    ``first_channel`` in the interleaved pixel layout; the flow model of its flow chunks, by
    ASCII name (1..64 of ``[A-Za-z0-9._-]``; :data:`NO_MODEL`) and weights' SHA-256; and
    ``arithmetic``, how its networks computed (2 = exact-int24, the only id)."""

    channels: int
    first_channel: int
    model_name: str
    model_sha256: bytes
    arithmetic: int = 2


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk-table entry as read from a file.

    ``kind`` is 0 for a raw tile, 1..253 for flow stage k (1 = finest), 254 for a tile of
    the coarse level, 255 for a margin;
    ``offset`` is the position of the payload from the start of the file.
    """

    group: int
    kind: int
    tile: int
    length: int
    crc32: int
    offset: int


@dataclass
class Header:
    """Everything the header says about the image, apart from the chunk table.

    ``mode`` is the mode of the decoded pixels ("L", "LA", "RGB", "RGBA");
    ``source_mode`` is None, "1" (bilevel, decoded as L) or "P" (palette, decoded as
    RGB or RGBA); ``pixel_sha256`` is the SHA-256 of the decoded H*W*C uint8 pixels;
    ``metadata`` maps 4-character tags ("ICCP", "EXIF", or any other, kept opaque) to
    their bytes, in file order.
    """

    width: int
    height: int
    mode: str
    source_mode: str | None
    tile_size: int
    pixel_sha256: bytes
    groups: list[PlaneGroup]
    metadata: dict[str, bytes]

    @property
    def tile_grid(self) -> tuple[int, int]:
        """``(tiles_y, tiles_x)``: the number of tile rows and tile columns."""
        t = self.tile_size
        return (-(-self.height // t), -(-self.width // t))

    @property
    def tile_count(self) -> int:
        """The number of tiles, ``tiles_y * tiles_x``; tiles are indexed row-major."""
        ty, tx = self.tile_grid
        return ty * tx


@dataclass(frozen=True)
class Chunk:
    """A chunk to write: its plane group, kind (0 = raw tile, k >= 1 = flow level k),
    tile index and payload bytes."""

    group: int
    kind: int
    tile: int
    payload: bytes


# --------------------------------------------------------------------------- helpers

_Fail = Callable[[str], Exception]


def _corrupt(msg: str) -> Exception:
    return CorruptFile(f"corrupt .idf file: {msg}")


def _invalid(msg: str) -> Exception:
    return ValueError(f"cannot write .idf file: {msg}")


def _as_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _check_name(name: object, fail: _Fail) -> None:
    if not isinstance(name, str):
        raise fail("model name must be a string")
    raw = name.encode("ascii", "replace")
    if not 1 <= len(raw) <= _MAX_NAME:
        raise fail(f"model name must be 1..{_MAX_NAME} characters long, not {len(raw)}")
    if not _NAME_CHARS.issuperset(raw):
        raise fail(f"model name {name!r} has characters outside [A-Za-z0-9._-]")


def _check_tag(tag: object, fail: _Fail) -> None:
    if not isinstance(tag, str) or len(tag) != 4 or not all(" " <= c <= "~" for c in tag):
        raise fail(f"metadata tag {tag!r} is not 4 printable ASCII characters")


def _check_header(h: Header, fail: _Fail) -> None:
    """Cross-field checks shared by the reader (CorruptFile) and writer (ValueError)."""
    for field, value in (("width", h.width), ("height", h.height)):
        if not isinstance(value, int) or not 1 <= value <= _U32:
            raise fail(f"{field} must be in 1..{_U32}, not {value!r}")
    if h.mode not in MODES:
        raise fail(f"unknown pixel mode {h.mode!r}")
    if h.source_mode not in SOURCE_MODES:
        raise fail(f"unknown source mode {h.source_mode!r}")
    if h.mode not in _SOURCE_TARGETS[h.source_mode]:
        raise fail(f"source mode {h.source_mode!r} cannot be decoded as {h.mode}")
    t = h.tile_size
    if not isinstance(t, int) or not 8 <= t <= _U16 or t % 8:
        raise fail(f"tile size must be a multiple of 8 in 8..{_U16 - 7}, not {t!r}")
    if not isinstance(h.pixel_sha256, bytes) or len(h.pixel_sha256) != 32:
        raise fail("pixel SHA-256 must be 32 bytes")
    _check_groups(h, fail)
    _check_metadata(h.metadata, fail)


def _check_groups(h: Header, fail: _Fail) -> None:
    """The plane groups cover the mode's channels in order, each with a valid model id."""
    if not 1 <= len(h.groups) <= _MAX_GROUPS:
        raise fail(f"plane-group count must be 1..{_MAX_GROUPS}, not {len(h.groups)}")
    n_channels = len(h.mode)
    next_channel = 0
    for i, g in enumerate(h.groups):
        if g.channels not in (1, 3):
            raise fail(f"plane group {i} has {g.channels!r} channels (must be 1 or 3)")
        if g.first_channel != next_channel or next_channel + g.channels > n_channels:
            raise fail(
                f"plane group {i} covers channels {g.first_channel!r}.."
                f"{g.first_channel + g.channels - 1!r}, which does not continue the "
                f"layout of mode {h.mode} (next channel {next_channel})"
            )
        next_channel += g.channels
        _check_name(g.model_name, fail)
        if not isinstance(g.model_sha256, bytes) or len(g.model_sha256) != 32:
            raise fail(f"plane group {i}: model SHA-256 must be 32 bytes")
        if g.arithmetic not in ARITHMETICS:
            raise fail(f"plane group {i}: unknown arithmetic id {g.arithmetic!r}")
    if next_channel != n_channels:
        raise fail(f"plane groups cover {next_channel} channels but mode {h.mode} has {n_channels}")


def _check_metadata(metadata: dict[str, bytes], fail: _Fail) -> None:
    if len(metadata) > _U16:
        raise fail(f"too many metadata items ({len(metadata)} > {_U16})")
    for tag, value in metadata.items():
        _check_tag(tag, fail)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise fail(f"metadata item {tag!r} is not bytes")
        if len(value) > _U32:
            raise fail(f"metadata item {tag!r} is longer than {_U32} bytes")


def _check_chunks(h: Header, chunks: Sequence[tuple[int, int, int]], fail: _Fail) -> None:
    """Check (group, kind, tile) triples against the header; all distinct."""
    n_groups = len(h.groups)
    n_tiles = h.tile_count
    seen: set[tuple[int, int, int]] = set()
    for i, (group, kind, tile) in enumerate(chunks):
        if not isinstance(group, int) or not 0 <= group < n_groups:
            raise fail(f"chunk {i} refers to plane group {group!r} of {n_groups}")
        if not isinstance(kind, int) or not 0 <= kind <= 0xFF:
            raise fail(f"chunk {i} has kind {kind!r} (must be 0..255)")
        if not isinstance(tile, int) or not 0 <= tile < n_tiles or tile > _U32:
            raise fail(f"chunk {i} refers to tile {tile!r} of {n_tiles}")
        key = (group, kind, tile)
        if key in seen:
            raise fail(f"chunk {i} repeats group {group}, tile {tile}, kind {kind}")
        seen.add(key)


# --------------------------------------------------------------------------- writing


def write(header: Header, chunks: Sequence[Chunk]) -> bytes:
    """Serialise ``header`` and ``chunks`` (in the given order) into a complete .idf file.

    Raises ValueError if the header or a chunk is invalid (the same rules a reader
    enforces), so that every file written can be read back.
    """
    _check_header(header, _invalid)
    _check_chunks(header, [(c.group, c.kind, c.tile) for c in chunks], _invalid)
    if len(chunks) > _U32:
        raise _invalid(f"too many chunks ({len(chunks)} > {_U32})")

    out = bytearray(
        _FIXED.pack(
            MAGIC,
            FORMAT_VERSION,
            0,
            header.width,
            header.height,
            MODES[header.mode],
            SOURCE_MODES[header.source_mode],
            header.tile_size,
            header.pixel_sha256,
            len(header.groups),
        )
    )
    for g in header.groups:
        name = g.model_name.encode("ascii")
        out += bytes((g.channels, g.first_channel, len(name)))
        out += name
        out += g.model_sha256
        out.append(g.arithmetic)
    out += _U16S.pack(len(header.metadata))
    for tag, value in header.metadata.items():
        out += tag.encode("ascii")
        out += _U32S.pack(len(value))
        out += value
    out += _U32S.pack(len(chunks))
    payloads = []
    for i, c in enumerate(chunks):
        if not isinstance(c.payload, bytes | bytearray | memoryview):
            raise _invalid(f"chunk {i} payload is not bytes")
        data = _as_view(c.payload)
        if len(data) > _U32:
            raise _invalid(f"chunk {i} payload is longer than {_U32} bytes")
        out += _ENTRY.pack(c.group, c.kind, 0, c.tile, len(data), zlib.crc32(data))
        payloads.append(data)
    out += _U32S.pack(zlib.crc32(out))
    return b"".join([out, *payloads])


# --------------------------------------------------------------------------- reading


class _NeedMore(Exception):
    """Internal: the prefix ends before the header field being read."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


def _check_magic_and_version(view: memoryview) -> None:
    """Magic first, then version; raises _NeedMore if the prefix is too short."""
    head = bytes(view[:8])
    if not MAGIC.startswith(head):
        raise NotAnIdfFile("not an .idf file")
    if len(head) < 8:
        raise _NeedMore(8)
    if len(view) < 10:
        raise _NeedMore(10)
    (version,) = _U16S.unpack_from(view, 8)
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise UnsupportedVersion(
            f"this .idf file uses format version {version}; "
            f"this reader supports versions {readable}"
        )


def _walk(view: memoryview) -> tuple[int, int, int]:
    """Find where the header's variable parts are, reading only length fields.

    Returns ``(meta_pos, table_pos, header_size)``: the offsets of the metadata count,
    of the chunk count, and the total header size (up to and including the header
    CRC).  Raises _NeedMore with the size needed so far if ``view`` is too short.  Only
    the magic and version are validated here; everything else waits for the CRC.
    """
    _check_magic_and_version(view)
    n = len(view)
    pos = _FIXED.size
    if n < pos:
        raise _NeedMore(pos)
    n_groups = view[pos - 1]
    for _ in range(n_groups):  # at most 255 iterations
        if n < pos + 3:
            raise _NeedMore(pos + 3)
        pos += _GROUP_FIXED + view[pos + 2]
    meta_pos = pos
    if n < pos + 2:
        raise _NeedMore(pos + 2)
    (n_meta,) = _U16S.unpack_from(view, pos)
    pos += 2
    for _ in range(n_meta):  # each iteration consumes >= 8 bytes that must exist
        if n < pos + _META_ITEM:
            raise _NeedMore(pos + _META_ITEM)
        (length,) = _U32S.unpack_from(view, pos + 4)
        pos += _META_ITEM + length
    table_pos = pos
    if n < pos + 4:
        raise _NeedMore(pos + 4)
    (n_chunks,) = _U32S.unpack_from(view, pos)
    return meta_pos, table_pos, pos + 4 + n_chunks * _ENTRY.size + 4


def header_size_needed(prefix: Buffer) -> int | None:
    """Return the total header size (bytes up to and including the header CRC).

    For streaming readers: given the first bytes of a file, return how many bytes the
    header occupies, or None if ``prefix`` is too short to tell yet (read more and call
    again).  Raises NotAnIdfFile / UnsupportedVersion as soon as the magic or version
    is wrong; does not validate anything else (call :func:`read_header` once that many
    bytes are available).
    """
    try:
        return _walk(_as_view(prefix))[2]
    except _NeedMore:
        return None


def _parse_header(view: memoryview) -> tuple[Header, list[ChunkEntry], int]:
    """Parse and fully check the header; returns it, the chunk table and its size."""
    try:
        meta_pos, table_pos, size = _walk(view)
    except _NeedMore as e:
        if len(view) == 0:
            raise TruncatedFile("truncated .idf file: the file is empty") from None
        raise TruncatedFile(
            f"truncated .idf file: the header needs at least {e.needed} bytes, "
            f"only {len(view)} present"
        ) from None
    if len(view) < size:
        raise TruncatedFile(
            f"truncated .idf file: the header needs {size} bytes, only {len(view)} present"
        )
    (stored_crc,) = _U32S.unpack_from(view, size - 4)
    if zlib.crc32(view[: size - 4]) != stored_crc:
        raise CorruptFile("corrupt .idf file: header checksum mismatch")

    # From here on, every byte read lies inside the (CRC-checked) header.
    _, _, flags, width, height, mode_id, source_id, tile_size, pixel_sha, n_groups = (
        _FIXED.unpack_from(view, 0)
    )
    if flags != 0:
        raise _corrupt(f"unknown header flags 0x{flags:04x}")
    if mode_id not in _MODE_BY_ID:
        raise _corrupt(f"unknown pixel mode id {mode_id}")
    if source_id not in _SOURCE_BY_ID:
        raise _corrupt(f"unknown source mode id {source_id}")

    groups = []
    pos = _FIXED.size
    for _ in range(n_groups):
        channels, first, name_len = view[pos], view[pos + 1], view[pos + 2]
        name_raw = bytes(view[pos + 3 : pos + 3 + name_len])
        pos += 3 + name_len
        if not 1 <= name_len <= _MAX_NAME or not _NAME_CHARS.issuperset(name_raw):
            raise _corrupt(f"invalid model name {name_raw!r}")
        model_sha = bytes(view[pos : pos + 32])
        arithmetic = view[pos + 32]
        pos += 33
        groups.append(PlaneGroup(channels, first, name_raw.decode("ascii"), model_sha, arithmetic))

    metadata: dict[str, bytes] = {}
    (n_meta,) = _U16S.unpack_from(view, pos)
    pos += 2
    for _ in range(n_meta):
        tag_raw = bytes(view[pos : pos + 4])
        (length,) = _U32S.unpack_from(view, pos + 4)
        pos += 8
        if not all(0x20 <= b <= 0x7E for b in tag_raw):
            raise _corrupt(f"metadata tag {tag_raw!r} is not printable ASCII")
        tag = tag_raw.decode("ascii")
        if tag in metadata:
            raise _corrupt(f"metadata tag {tag!r} appears twice")
        metadata[tag] = bytes(view[pos : pos + length])
        pos += length

    header = Header(
        width=width,
        height=height,
        mode=_MODE_BY_ID[mode_id],
        source_mode=_SOURCE_BY_ID[source_id],
        tile_size=tile_size,
        pixel_sha256=bytes(pixel_sha),
        groups=groups,
        metadata=metadata,
    )
    _check_header(header, _corrupt)

    (n_chunks,) = _U32S.unpack_from(view, pos)
    pos += 4
    entries = []
    offset = size
    for i in range(n_chunks):
        group, kind, reserved, tile, length, crc = _ENTRY.unpack_from(view, pos)
        pos += _ENTRY.size
        if reserved != 0:
            raise _corrupt(f"chunk {i} has nonzero reserved field")
        entries.append(ChunkEntry(group, kind, tile, length, crc, offset))
        offset += length
    _check_chunks(header, [(e.group, e.kind, e.tile) for e in entries], _corrupt)
    return header, entries, size


def read_header(data: Buffer) -> tuple[Header, list[ChunkEntry]]:
    """Parse and check the header and chunk table (header CRC included).

    ``data`` may be just a prefix of the file as long as it holds the whole header
    (see :func:`header_size_needed`); payloads are neither needed nor checked.
    Raises NotAnIdfFile, UnsupportedVersion, TruncatedFile (header incomplete) or
    CorruptFile.
    """
    header, entries, _ = _parse_header(_as_view(data))
    return header, entries


def _check_payload(view: memoryview, entry: ChunkEntry, index: int | None) -> memoryview:
    end = entry.offset + entry.length
    if len(view) < end:
        raise TruncatedFile(
            f"truncated .idf file: chunk data ends at byte {end}, file has {len(view)} bytes"
        )
    chunk = view[entry.offset : end]
    if zlib.crc32(chunk) != entry.crc32:
        which = f"chunk {index} " if index is not None else "chunk "
        raise CorruptFile(
            f"corrupt .idf file: {which}(group {entry.group}, tile {entry.tile}, "
            f"kind {entry.kind}) checksum mismatch"
        )
    return chunk


def read(data: Buffer) -> tuple[Header, list[tuple[ChunkEntry, memoryview]]]:
    """Parse a complete .idf file: the header and every payload, each CRC-checked.

    The returned memoryviews are slices of ``data`` (no copy).  Raises TruncatedFile if
    the data ends early and CorruptFile on a checksum mismatch, any structural error or
    bytes after the last payload.
    """
    view = _as_view(data)
    header, entries, size = _parse_header(view)
    end = file_size(entries, size)
    if len(view) < end:
        raise TruncatedFile(f"truncated .idf file: expected {end} bytes, only {len(view)} present")
    check_no_trailing(len(view), end)
    return header, [(e, _check_payload(view, e, i)) for i, e in enumerate(entries)]


def file_size(entries: Sequence[ChunkEntry], header_size: int) -> int:
    """The size of the file a header of ``header_size`` bytes with chunk table ``entries``
    describes: where its last payload ends."""
    return max([header_size] + [e.offset + e.length for e in entries])


def check_no_trailing(received: int, size: int) -> None:
    """``CorruptFile`` if ``received`` bytes go on past a file of ``size`` bytes."""
    if received > size:
        raise CorruptFile(
            f"corrupt .idf file: {received - size} unexpected bytes after the last chunk"
        )


def payload(data: Buffer, entry: ChunkEntry) -> memoryview:
    """Return one chunk's payload (a slice of ``data``), CRC-checked, for random access.

    ``data`` is the file (or a prefix of it reaching past the payload); ``entry`` comes
    from :func:`read_header`.  Raises TruncatedFile or CorruptFile.
    """
    return _check_payload(_as_view(data), entry, None)
