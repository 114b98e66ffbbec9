#!/usr/bin/env python
"""Fuzz campaign over the .idf decoder and container parser.

    python scripts/fuzz.py --cases 20000 --seed 1              # the default corpus
    python scripts/fuzz.py --cases 2000 --seed 7 --no-flow     # only the files made now
    python scripts/fuzz.py --seed 1 --case 1234 -v             # replay one case

Every case feeds bytes to ``idfcompress.decoder.decode`` (which parses the container first) and
must end in one of two ways:

* the exact image of the file it was derived from (damage the format ignores, or a chunk
  order the format allows), or
* an ``IdfError`` (the one-line errors the CLI prints).

Anything else is a failure, printed with the command that replays it: another exception
(``CRASH``), a different image (``WRONG``), a case slower than ``--slow`` seconds (``SLOW``;
a case still running after ``--hard-timeout`` seconds is interrupted: ``TIMEOUT``), or the
process's peak RSS rising more than ``--max-rss-growth`` MiB above its level after the warm-up
(``MEMORY``). The process's address space is also capped (``--address-space``), so a huge
allocation shows up as a ``MemoryError`` crash instead of swapping the machine to death.

Mutation kinds (one per random case, chosen by weight):

``random``    random bytes, bare or after a real file's first bytes (magic, header prefix)
``bitflip``   1..8 flipped bits in a real file
``byte``      1..4 bytes of a real file set to random or boundary values
``insert``    1..32 random bytes inserted into a real file
``delete``    1..32 bytes deleted from a real file
``truncate``  a real file cut at a random offset (plus a sweep of every offset, below)
``append``    bytes appended to a real file
``header``    one header field (any of them, including every chunk-table field) set to an
              extreme value, header CRC recomputed (and chunk CRCs too, half the time) so the
              lie gets past the checksums
``dims``      huge or odd width/height/tile size with valid CRCs, decoded with the default
              pixel limit or with none
``payload``   one payload damaged (bit flips, bytes, cut, extension, emptied, replaced) and
              the file rebuilt with correct CRCs, so only the decoder's own checks can catch it
``swap``      two chunks' payloads, tiles or kinds exchanged, CRCs correct (between coarse-level
              and tile chunks too, and between flow stages in the flow-coded files)
``reorder``   chunks shuffled, CRCs correct: a valid file, which must decode exactly

Before the random cases, every prefix of every corpus file of at most ``--sweep-bytes`` bytes
is decoded (``truncate-all``), and each must be an ``IdfError``.

The corpus (:func:`build_corpus`) holds two sorts of files:

* small files encoded now (``encoder.encode``, the predictive coder, coarse level first):
  RGB in one or several tiles, tiles cut by the image's edges, a tile of noise (LZMA2 beside
  predictive tiles), grey with 8-px tiles and a coarse level of several tiles, packed levels,
  LA noise, RGBA with an ICC profile, a palette image and a 1-bit image;
* flow-coded files, whose encoder is retired: the recorded ``tests/codec/data/flow/*.idf``
  (tiny random models in ``tests/codec/data/flow/models``, ``--model-dir``; all but
  ``rgb-16x16-other.idf``, which names a model that is not there), one of them with a tile
  turned into a region payload (a flow file mixing both codings, which the retired ``auto``
  mode wrote), and a few ``tests/codec/data/format10/*-flow.idf`` (the shipped models in
  ``models/``). They need torch; without it (or with ``--no-flow``) they are left out.

The model folder goes first in ``$IDFC_MODELS`` (``store.MODELS_ENV``), for this process.
Each file's expected image is what it decodes to before any damage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import resource
import signal
import struct
import sys
import time
import tracemalloc
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from idfcompress.codec import decoder, encoder  # noqa: E402
from idfcompress.entropy import ans, rans, tables  # noqa: E402
from idfcompress.errors import IdfError  # noqa: E402
from idfcompress.flow import runtime, store  # noqa: E402
from idfcompress.format import container, layout  # noqa: E402
from idfcompress.imageio import PixelImage, from_array, from_pil  # noqa: E402
from idfcompress.predictive import coder as coder_module  # noqa: E402
from idfcompress.predictive import lattice, regions  # noqa: E402

MIB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "codec" / "data"
FLOW_FILES = RECORDED / "flow"
FLOW_MODELS = FLOW_FILES / "models"  # the tiny random models of the recorded flow files
MISSING_MODEL = {"rgb-16x16-other.idf"}  # names a model that is not there, on purpose
# Recorded with the shipped models (models/): flow cores and margins, RGB, grey, RGBA with
# both models, metadata.
FORMAT10_FLOW = [
    "flat-50x50-flow.idf",
    "gray-97x61-t64-flow.idf",
    "la-19x7-flow.idf",
    "metadata-40x24-flow.idf",
    "rgba-40x33-flow.idf",
]
MIXED_SOURCE, MIXED_TILE = "rgb-40x24-t16.idf", 1  # a flow file, one tile made a region

KINDS: dict[str, float] = {
    "random": 1.0,
    "bitflip": 2.0,
    "byte": 2.0,
    "insert": 1.0,
    "delete": 1.0,
    "truncate": 1.0,
    "append": 0.3,
    "header": 3.0,
    "dims": 1.0,
    "payload": 2.0,
    "swap": 1.0,
    "reorder": 0.5,
}
# Kinds whose output has correct checksums: a success may differ from the source image in
# what the header says (shape, metadata) but never in its pixel bytes, which the SHA-256 covers.
FORGED = {"header", "dims", "payload", "swap", "reorder"}


# --------------------------------------------------------------------------- corpus


@dataclass
class Sample:
    name: str
    data: bytes
    image: PixelImage


def use_models(folder: Path) -> None:
    """Put ``folder`` first in the model search path of this process (``$IDFC_MODELS``;
    the shipped models in ``models/`` are searched after it anyway)."""
    dirs = [p for p in os.environ.get(store.MODELS_ENV, "").split(os.pathsep) if p]
    if not dirs or Path(dirs[0]).resolve() != folder.resolve():
        os.environ[store.MODELS_ENV] = os.pathsep.join([str(folder), *dirs])


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def smooth(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / 9.0 + rng.uniform(0, 6)) * np.cos(y / 13.0 + rng.uniform(0, 6))
    planes = [base + rng.normal(0, 4, base.shape) + 20 * c for c in range(channels)]
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)


def encoded_samples(seed: int = 0) -> list[Sample]:
    """Small files of today's encoder: every plane layout, one or many tiles, edge tiles,
    LZMA2 beside predictive tiles, a coarse level of several tiles, packed levels,
    metadata, palette and 1-bit sources."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    samples = []

    def add(name: str, image: PixelImage, tile: int) -> None:
        data, _ = encoder.encode(image, tile_size=tile)
        samples.append(Sample(name, data, decoder.decode(data)))

    add("rgb", from_array(smooth(rng, 24, 40, 3)), 16)
    noisy = smooth(rng, 32, 32, 3)
    noisy[:16, 16:] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    add("rgb-noise-tile", from_array(noisy), 16)
    add("gray", from_array(smooth(rng, 20, 20, 1)[:, :, 0]), 16)
    add("rgb-one-tile", from_array(smooth(rng, 16, 24, 3)), 32)
    add("rgb-margins", from_array(smooth(rng, 21, 27, 3)), 16)
    add("rgb-3x5", from_array(smooth(rng, 5, 3, 3)), 8)
    add("gray-coarse-tiles", from_array(smooth(rng, 66, 72, 1)[:, :, 0]), 8)  # 4 coarse tiles
    add("rgb-levels", from_array(smooth(rng, 24, 32, 3) // 4 * 4), 16)  # packed channels
    add("la-noise", from_array(rng.integers(0, 256, (12, 12, 2), dtype=np.uint8)), 8)
    rgba = from_array(np.concatenate([smooth(rng, 16, 24, 3), smooth(rng, 16, 24, 1)], axis=2))
    rgba.metadata["ICCP"] = bytes(rng.integers(0, 256, 40, dtype=np.uint8))
    add("rgba-icc", rgba, 16)
    palette = Image.fromarray(smooth(rng, 10, 14, 3)).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=8
    )
    add("palette", from_pil(palette), 64)
    bilevel = Image.fromarray(smooth(rng, 13, 22, 1)[:, :, 0]).convert("1")
    add("bilevel", from_pil(bilevel), 8)
    return samples


def mixed_file(data: bytes, image: PixelImage, tile_index: int) -> bytes:
    """The flow-coded file ``data`` (of ``image``) with one tile's flow stages and margin
    replaced by a region payload of the whole tile: what the retired encoder's ``auto``
    mode wrote for a tile the predictive coder did better."""
    header, entries = container.read(data)
    tile = layout.tiles_of(header.height, header.width, header.tile_size)[tile_index]
    chunks = [
        container.Chunk(e.group, e.kind, e.tile, bytes(p))
        for e, p in entries
        if e.tile != tile_index
    ]
    for g, group in enumerate(header.groups):
        plane = image.pixels[:, :, group.first_channel : group.first_channel + group.channels]
        payload = regions.RegionCoding([layout.tile_of(plane, tile)]).payload()
        chunks.append(container.Chunk(g, layout.REGION_KIND, tile_index, payload))
    return container.write(header, chunks)


def flow_samples(model_dir: Path = FLOW_MODELS) -> list[Sample]:
    """The recorded flow-coded files (their encoder is retired) and one of them mixed with
    a region tile; ``model_dir`` holds the tiny models of ``tests/codec/data/flow``."""
    use_models(model_dir)
    samples = []
    paths = [p for p in sorted(FLOW_FILES.glob("*.idf")) if p.name not in MISSING_MODEL]
    paths += [RECORDED / "format10" / name for name in FORMAT10_FLOW]
    for path in paths:
        data = path.read_bytes()
        name = ("flow-" if path.parent == FLOW_FILES else "format10-") + path.stem
        samples.append(Sample(name, data, decoder.decode(data)))
        if path.name == MIXED_SOURCE:
            mixed = mixed_file(data, samples[-1].image, MIXED_TILE)
            samples.append(Sample(f"{name}-mixed", mixed, decoder.decode(mixed)))
    return samples


def build_corpus(
    seed: int = 0, *, model_dir: Path = FLOW_MODELS, flow: bool | None = None
) -> list[Sample]:
    """The files encoded now (:func:`encoded_samples`), then the recorded flow-coded ones
    (:func:`flow_samples`; ``flow`` None: when torch is installed). Sets the model search
    path (:func:`use_models`), so it needs no setting up."""
    samples = encoded_samples(seed)
    if flow is None:
        flow = has_torch()
        if not flow:
            print("corpus: torch is not installed, so no flow-coded files")
    if flow:
        samples += flow_samples(model_dir)
    return samples


# --------------------------------------------------------------------------- mutations

U8 = [0, 1, 2, 3, 4, 5, 7, 8, 127, 128, 254, 255]
U16 = [0, 1, 7, 8, 9, 16, 24, 255, 256, 4096, 16000, 32768, 65528, 65535]
U32 = [0, 1, 2, 7, 8, 9, 255, 256, 4096, 16000, 60000, 65535, 65536, 65537]
U32 += [1 << 24, (1 << 28) + 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 2, (1 << 32) - 1]
FORMATS = {"B": U8, "<H": U16, "<I": U32}


def _extreme(rng: np.random.Generator, fmt: str, original: int) -> int:
    """A value other than ``original``: random, near it, a multiple of it or a boundary."""
    while (value := _candidate(rng, fmt, original)) == original:
        pass
    return value


def _candidate(rng: np.random.Generator, fmt: str, original: int) -> int:
    top = (1 << (8 * struct.calcsize(fmt))) - 1
    pick = rng.integers(5)
    if pick == 0:
        return int(rng.integers(0, top + 1))
    if pick == 1:
        return int(np.clip(original + rng.choice([-2, -1, 1, 2]), 0, top))
    if pick == 2:
        return int(min(top, original * int(rng.choice([2, 8, 256]))))
    return int(rng.choice(FORMATS[fmt]))


def _fields(data: bytes) -> list[tuple[str, int, str]]:
    """(name, offset, struct format) of every integer header field of a valid file."""
    out = [
        ("version", 8, "<H"),
        ("flags", 10, "<H"),
        ("width", 12, "<I"),
        ("height", 16, "<I"),
        ("mode", 20, "B"),
        ("source mode", 21, "B"),
        ("tile size", 22, "<H"),
        ("group count", 56, "B"),
    ]
    header, entries = container.read_header(data)
    pos = 57
    for i, g in enumerate(header.groups):
        out += [(f"group {i} channels", pos, "B"), (f"group {i} first", pos + 1, "B")]
        out += [(f"group {i} name length", pos + 2, "B")]
        pos += 3 + len(g.model_name)
        out += [(f"group {i} name byte", pos - 1, "B"), (f"group {i} sha byte", pos, "B")]
        out += [(f"group {i} arithmetic", pos + 32, "B")]
        pos += 33
    out.append(("metadata count", pos, "<H"))
    pos += 2
    for tag, value in header.metadata.items():
        out += [(f"metadata {tag} tag byte", pos, "B"), (f"metadata {tag} length", pos + 4, "<I")]
        pos += 8 + len(value)
    out.append(("chunk count", pos, "<I"))
    pos += 4
    for j in range(len(entries)):
        base = pos + 16 * j
        out += [
            (f"chunk {j} group", base, "B"),
            (f"chunk {j} kind", base + 1, "B"),
            (f"chunk {j} reserved", base + 2, "<H"),
            (f"chunk {j} tile", base + 4, "<I"),
            (f"chunk {j} length", base + 8, "<I"),
            (f"chunk {j} crc", base + 12, "<I"),
        ]
    out.append(("header crc", pos + 16 * len(entries), "<I"))
    return out


def _dims(rng: np.random.Generator, header: container.Header) -> tuple[int, int, int]:
    """Width, height and tile size for the ``dims`` kind."""
    how = rng.random()
    if how < 0.4:  # many tiles: too many pixels, or too few chunks for the tiles
        width = int(rng.choice([header.width, 60000, 16000, 65528, 1 << 16, (1 << 32) - 1]))
        height = int(rng.choice([header.height, 60000, 16000, 2000, 1 << 31, 1]))
        tile = int(rng.choice([header.tile_size, 8, 16000, 65528, 2048]))
    elif how < 0.8:  # one huge tile (the chunks of tile 0 cover it)
        tile = int(rng.choice([1024, 1448, 2048, 4096, 16000, 65528]))
        width = int(rng.choice([tile, tile // 2, header.width, 1]))
        height = int(rng.choice([tile, tile // 2, header.height, 1]))
    else:  # the same pixels in another shape
        width, height, tile = header.height, header.width, header.tile_size
    return width, height, tile


def fix_header_crc(data: bytearray) -> None:
    """Recompute the header CRC where the (possibly changed) header says it is."""
    with contextlib.suppress(Exception):
        size = container.header_size_needed(bytes(data))
        if size is not None and 4 <= size <= len(data):
            struct.pack_into("<I", data, size - 4, zlib.crc32(data[: size - 4]))


def fix_chunk_crcs(data: bytearray) -> None:
    """Make every chunk CRC match the bytes its (possibly changed) entry points at."""
    try:
        size = container.header_size_needed(bytes(data))
        _, entries = container.read_header(bytes(data))
    except (IdfError, struct.error):
        return
    assert size is not None
    table = size - 4 - 16 * len(entries)
    for j, entry in enumerate(entries):
        end = entry.offset + entry.length
        if end <= len(data):
            crc = zlib.crc32(data[entry.offset : end])
            struct.pack_into("<I", data, table + 16 * j + 12, crc)
    fix_header_crc(data)


def _damage(rng: np.random.Generator, data: bytes, kind: str) -> tuple[bytes, str]:
    b = bytearray(data)
    n = len(b)
    if kind == "bitflip":
        count = int(rng.integers(1, 9))
        flips = sorted({(int(rng.integers(n)), int(rng.integers(8))) for _ in range(count)})
        for pos, bit in flips:
            b[pos] ^= 1 << bit
        return bytes(b), f"flip {flips}"
    if kind == "byte":
        changes = []
        for pos in sorted(rng.choice(n, min(n, int(rng.integers(1, 5))), replace=False).tolist()):
            value = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(256))]))
            b[pos] = value if value != b[pos] else value ^ 0xFF
            changes.append((pos, b[pos]))
        return bytes(b), f"set {changes}"
    if kind == "insert":
        pos, count = int(rng.integers(n + 1)), int(rng.integers(1, 33))
        b[pos:pos] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
        return bytes(b), f"insert {count} at {pos}"
    if kind == "delete":
        pos, count = int(rng.integers(n)), int(rng.integers(1, 33))
        del b[pos : pos + count]
        return bytes(b), f"delete {count} at {pos}"
    if kind == "truncate":
        cut = int(rng.integers(n))
        return bytes(b[:cut]), f"cut at {cut}"
    if kind == "append":
        extra = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        if rng.random() < 0.3:
            extra = data[: len(extra)]
        return bytes(b) + extra, f"append {len(extra)}"
    raise ValueError(kind)


def _rebuild(header: container.Header, chunks: list[container.Chunk]) -> bytes:
    return container.write(header, chunks)


def _chunks_of(data: bytes) -> tuple[container.Header, list[container.Chunk]]:
    header, pairs = container.read(data)
    return header, [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in pairs]


def _bad_payload(rng: np.random.Generator, payload: bytes) -> tuple[bytes, str]:
    p = bytearray(payload)
    how = int(rng.integers(7))
    if how == 0 and p:
        bits = rng.choice(8 * len(p), min(8 * len(p), int(rng.integers(1, 4))), replace=False)
        for bit in bits.tolist():
            p[bit // 8] ^= 1 << (bit % 8)
        return bytes(p), "bit flips"
    if how == 1 and p:
        p[int(rng.integers(len(p)))] ^= int(rng.integers(1, 256))
        return bytes(p), "byte"
    if how == 2 and p:
        return bytes(p[: int(rng.integers(len(p)))]), "cut"
    if how == 3:
        step = 4 * int(rng.integers(1, 4)) if rng.random() < 0.7 else int(rng.integers(1, 8))
        return bytes(p) + rng.integers(0, 256, step, dtype=np.uint8).tobytes(), "extended"
    if how == 4:
        return b"", "emptied"
    if how == 5:
        size = 4 * int(rng.integers(0, 64))
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes(), "replaced"
    data = rng.integers(0, 4, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
    return bytes([int(rng.integers(0, 2))]) + regions.compress(data), "filter + lzma"


@dataclass
class Case:
    kind: str
    data: bytes
    detail: str
    sample: Sample | None
    max_pixels: int | None = decoder.MAX_PIXELS
    must_be_exact: bool = False


def _header_case(rng: np.random.Generator, sample: Sample) -> Case:
    """A header field set to an extreme value; the CRCs fixed or not."""
    kind, data = "header", sample.data
    fields = _fields(data)
    name, offset, fmt = fields[int(rng.integers(len(fields)))]
    (old,) = struct.unpack_from(fmt, data, offset)
    new = _extreme(rng, fmt, old)
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, new)
    fix = rng.random() if name != "header crc" else 1.0
    if fix < 0.45:
        fix_chunk_crcs(b)
    elif fix < 0.9:
        fix_header_crc(b)
    detail = f"{name} {old} -> {new}" + (" (crcs fixed)" if fix < 0.9 else "")
    max_pixels = None if rng.random() < 0.2 else decoder.MAX_PIXELS
    return Case(kind, bytes(b), detail, sample, max_pixels)


def _dims_case(rng: np.random.Generator, sample: Sample) -> Case:
    """Other image or tile dimensions with the header CRC fixed."""
    kind, data = "dims", sample.data
    b = bytearray(data)
    header, _ = container.read_header(data)
    width, height, tile = header.width, header.height, header.tile_size
    while (width, height, tile) == (header.width, header.height, header.tile_size):
        width, height, tile = _dims(rng, header)
    struct.pack_into("<IIBBH", b, 12, width, height, b[20], b[21], tile)
    fix_header_crc(b)
    max_pixels = None if rng.random() < 0.4 else decoder.MAX_PIXELS
    detail = f"{width}x{height}, tile {tile}, max_pixels {max_pixels}"
    return Case(kind, bytes(b), detail, sample, max_pixels)


def make_case(seed: int, index: int, corpus: list[Sample]) -> Case:
    """Case ``index`` of the campaign with this seed (the same bytes on every run)."""
    rng = np.random.default_rng([seed, index])
    names = list(KINDS)
    weights = np.array([KINDS[k] for k in names])
    kind = str(rng.choice(names, p=weights / weights.sum()))
    sample = corpus[int(rng.integers(len(corpus)))]
    data = sample.data

    if kind == "random":
        size = int(rng.integers(0, 600))
        body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        prefix = [
            b"",
            container.MAGIC,
            container.MAGIC + b"\x01\x00",
            data[: int(rng.integers(120))],
        ]
        lead = prefix[int(rng.integers(len(prefix)))]
        return Case(kind, lead + body, f"{len(lead)}-byte prefix + {size} random bytes", None)
    if kind in ("bitflip", "byte", "insert", "delete", "truncate", "append"):
        damaged, detail = _damage(rng, data, kind)
        return Case(kind, damaged, detail, sample)
    if kind == "header":
        return _header_case(rng, sample)
    if kind == "dims":
        return _dims_case(rng, sample)

    header, chunks = _chunks_of(data)
    if kind == "swap" and len(chunks) < 2:  # a one-tile flow file has one chunk
        sample = next(s for s in corpus if len(container.read_header(s.data)[1]) >= 2)
        header, chunks = _chunks_of(sample.data)
    if kind == "payload":
        j = int(rng.integers(len(chunks)))
        c = chunks[j]
        payload, how = _bad_payload(rng, c.payload)
        chunks[j] = container.Chunk(c.group, c.kind, c.tile, payload)
        detail = f"chunk {j} (group {c.group}, tile {c.tile}, kind {c.kind}) {how}"
        return Case(kind, _rebuild(header, chunks), detail, sample)
    if kind == "swap":
        for _ in range(50):  # two chunks that differ in what is exchanged
            i, j = (int(v) for v in rng.choice(len(chunks), 2, replace=False))
            a, c = chunks[i], chunks[j]
            what = int(rng.integers(3))
            if what == 0 and a.payload != c.payload:
                swapped = [
                    (a.group, a.kind, a.tile, c.payload),
                    (c.group, c.kind, c.tile, a.payload),
                ]
            elif what == 1 and a.tile != c.tile:
                swapped = [
                    (a.group, a.kind, c.tile, a.payload),
                    (c.group, c.kind, a.tile, c.payload),
                ]
            elif what == 2 and a.kind != c.kind:
                swapped = [
                    (a.group, c.kind, a.tile, a.payload),
                    (c.group, a.kind, c.tile, c.payload),
                ]
            else:
                continue
            chunks[i], chunks[j] = (container.Chunk(*swapped[0]), container.Chunk(*swapped[1]))
            detail = f"chunks {i} and {j}: {['payloads', 'tiles', 'kinds'][what]} exchanged"
            try:
                return Case(kind, _rebuild(header, chunks), detail, sample)
            except ValueError:  # a repeated (group, kind, tile): the writer refuses it
                chunks[i], chunks[j] = a, c
        return Case(kind, sample.data, "no swap possible", sample, must_be_exact=True)
    if kind == "reorder":
        order = rng.permutation(len(chunks))
        return Case(
            kind,
            _rebuild(header, [chunks[k] for k in order]),
            "chunks shuffled",
            sample,
            must_be_exact=True,
        )
    raise AssertionError(kind)


def truncation_sweep(corpus: list[Sample], max_bytes: int) -> Iterator[Case]:
    for sample in corpus:
        if len(sample.data) <= max_bytes:
            for cut in range(len(sample.data)):
                yield Case("truncate-all", sample.data[:cut], f"{sample.name} cut at {cut}", sample)


# --------------------------------------------------------------------------- expensive files

_GRID: list = []  # the logistic grid's TableSet, made on first use


def _grid() -> ans.TableSet:
    if not _GRID:
        _GRID.append(ans.TableSet(tables.logistic_tables()))
    return _GRID[0]


def zeros_stream(count: int, log_scale: int) -> bytes:
    """The ANS stream of ``count`` zeros, each coded with the grid logistic of mean 0 and
    log-scale index ``log_scale``: what every step of a predictive region of zeros pops
    (one table and no escapes, so the steps' segments simply follow each other)."""
    ids, offsets = tables.grid_ids(np.zeros(1, np.int64), np.array([log_scale]))
    coder = rans.Encoder()
    cdf, starts, _ = _grid().cumulative()
    at = int(starts[ids[0]]) - int(offsets[0])  # the bin of value 0
    size = min(count, 1 << 20)
    cum, prob = np.full(size, cdf[at]), np.full(size, cdf[at + 1] - cdf[at])
    left = count
    while left:  # pushed a piece at a time, so that a bomb is made in little memory
        k = min(left, size)
        coder.push(cum[:k], prob[:k])
        left -= k
    return coder.words().astype("<u4").tobytes()


def zeros_payload(shapes: list[tuple[int, int, int]], how: str) -> bytes:
    """A region payload of regions of zeros: ``"g0"`` / ``"g28"`` predictive, every
    context's logistic at log-scale index 0 (the narrowest: a few bytes for any count) or
    28 (the narrowest the encoder writes); ``"raw"`` / ``"delta"`` LZMA2."""
    if how in ("raw", "delta"):
        size = sum(h * w * c for h, w, c in shapes)
        return bytes([regions.NO_FILTER if how == "raw" else regions.DELTA_FILTER]) + (
            regions.compress(bytes(size))
        )
    g = {"g0": 0, "g28": tables.FIT_MIN_LOGSCALE}[how]
    head = b"".join(
        bytes(2 * max(c - 1, 0)) + bytes([0, g]) * (coder_module.CONTEXTS * c) for _, _, c in shapes
    )
    count = sum(h * w * c for h, w, c in shapes)
    return bytes([regions.PREDICTIVE]) + head + (zeros_stream(count, g) if count else b"")


def zeros_file(width: int, height: int, mode: str, tile: int, how: str) -> bytes:
    """A valid .idf file (checksums right) of a zero image whose every tile is one region
    payload of zeros (:func:`zeros_payload`); the groups name no model, as the encoder's."""
    groups, chunks = [], []
    for g, (channels, first) in enumerate(layout.plane_groups(mode)):
        groups.append(
            container.PlaneGroup(
                channels,
                first,
                container.NO_MODEL,
                container.NO_MODEL_SHA256,
                layout.ARITHMETIC_EXACT,
            )
        )
        payloads: dict[tuple[int, int], bytes] = {}  # by tile shape: most tiles share one
        for t in layout.tiles_of(height, width, tile):
            key = (t.height, t.width)
            if key not in payloads:
                payloads[key] = zeros_payload([(t.height, t.width, channels)], how)
            chunks.append(container.Chunk(g, layout.REGION_KIND, t.index, payloads[key]))
    channels = sum(c for c, _ in layout.plane_groups(mode))
    digest = container.pixel_digest(width, height, mode, bytes(width * height * channels))
    header = container.Header(
        width=width,
        height=height,
        mode=mode,
        source_mode=None,
        tile_size=tile,
        pixel_sha256=digest,
        groups=groups,
        metadata={},
    )
    return container.write(header, chunks)


@dataclass
class Expensive:
    """A valid file made to cost the decoder the most per byte, and what it must give."""

    name: str
    data: bytes
    expect: str  # "exact" (a zero image) or the name of the IdfError it must raise
    max_pixels: int | None = decoder.MAX_PIXELS


def expensive_corpus(scale: int = 1) -> list[Expensive]:
    """The "valid but expensive" files: the largest tile the limits allow (1448 px square,
    2^21 pixels), as the zero-cost bomb (refused by the budget, or decoded without limits),
    at the encoder's cheapest rate and as LZMA2; the tallest tile (65528 x 32); many tiny
    tiles; thin tiles whose steps outnumber their values. ``scale`` > 1 divides the sides
    (quicker files of the same kinds, for tests)."""
    big = 1448 // scale
    tall = 65528 // scale
    return [
        Expensive("bomb-1448", zeros_file(big, big, "RGB", 1448, "g0"), "ImageTooLarge"),
        Expensive("bomb-1448-no-limit", zeros_file(big, big, "RGB", 1448, "g0"), "exact", None),
        Expensive("cheapest-1448", zeros_file(big, big, "RGB", 1448, "g28"), "exact"),
        Expensive("lzma-1448", zeros_file(big, big, "RGB", 1448, "raw"), "exact"),
        Expensive("delta-1448", zeros_file(big, big, "RGB", 1448, "delta"), "exact"),
        Expensive("bomb-tall", zeros_file(32, tall, "RGB", 65528, "g0"), "ImageTooLarge"),
        Expensive("cheapest-tall", zeros_file(32, tall, "RGB", 65528, "g28"), "exact"),
        Expensive("tiny-tiles", zeros_file(256 // scale, 256 // scale, "L", 8, "g0"), "exact"),
        Expensive(
            "tiny-tiles-rgb", zeros_file(128 // scale, 128 // scale, "RGB", 8, "g0"), "exact"
        ),
        Expensive("thin-tiles", zeros_file(1, 64 * 512 // scale, "L", 64, "g0"), "exact"),
        Expensive("thin-tiles-la", zeros_file(1, 64 * 256 // scale, "LA", 64, "g0"), "exact"),
        Expensive(
            "tiny-tiles-lzma", zeros_file(256 // scale, 256 // scale, "L", 8, "raw"), "exact"
        ),
    ]


STEPS_PER_BYTE = 3
"""Steps a file may make the predictive decoder walk per byte (under a pixel limit): a
region of c planes and w <= h columns takes w + 2 min(h, 64) + c - 3 steps and its chunk at
least 16 + 1 + 34 c - 2 + 4 bytes, so a thin region walks at most 2.5 steps per byte and a
margin's two at most 3; a wide region has to pay for its values (VALUES_PER_BYTE)."""


def memory_bound(header: container.Header) -> int:
    """The most the decoder may allocate (traced) for a valid file with this header, as
    docs/RELIABILITY.md states it: the image, 16 bytes per value of one tile, 1 KiB per
    plane and row of a tile's longer side, the index-table cache and 16 MiB."""
    th, tw = min(header.tile_size, header.height), min(header.tile_size, header.width)
    planes = max(g.channels for g in header.groups)
    image = header.width * header.height * sum(g.channels for g in header.groups)
    per_tile = 16 * th * tw * planes + 1024 * max(th, tw) * planes
    return image + per_tile + lattice.CACHE_BYTES + (16 << 20)


def work_bound(header: container.Header, size: int, max_pixels: int | None) -> tuple[int, int]:
    """The most predictive values and steps a valid file of ``size`` bytes may cost: the
    budget per byte under a pixel limit, else what its pixels and tiles allow."""
    th, tw = min(header.tile_size, header.height), min(header.tile_size, header.width)
    subpixels = header.width * header.height * sum(g.channels for g in header.groups)
    regions = 2 * header.tile_count * len(header.groups)  # a margin chunk has two
    steps = regions * (max(th, tw) + 2 * coder_module.BAND + 4)
    if max_pixels is None:
        return subpixels, steps
    scale = max(1.0, max_pixels / decoder.MAX_PIXELS)
    values = int(coder_module.VALUES_PER_BYTE * scale * size)
    return min(subpixels, values), min(steps, int(STEPS_PER_BYTE * scale * size))


@dataclass
class Cost:
    """What decoding one expensive file took, and whether it stayed within the bounds."""

    outcome: str
    seconds: float
    traced: int
    memory_bound: int
    work: coder_module.Work
    work_bound: tuple[int, int]
    failure: str | None = None


def _decode_zeros(item: Expensive, work: coder_module.Work, hard_timeout: float) -> str:
    """Decode ``item``: "exact", the IdfError's name or a failure tag."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, hard_timeout)
    try:
        image = decoder.decode(item.data, max_pixels=item.max_pixels, work=work)
        return "exact" if not image.pixels.any() else "WRONG"
    except IdfError as exc:
        return type(exc).__name__
    except _Timeout:
        return "TIMEOUT"
    except Exception as exc:  # noqa: BLE001 - that is what a fuzzer looks for
        return f"CRASH {type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_expensive(item: Expensive, hard_timeout: float) -> Cost:
    """Decode ``item`` twice, timed, then with its allocations traced (tracemalloc slows
    small numpy calls several times over); a failure unless both end as expected, within
    the memory bound and the work bound."""
    header, _ = container.read_header(item.data)
    work = coder_module.Work()
    start = time.perf_counter()
    outcome = _decode_zeros(item, work, hard_timeout)
    seconds = time.perf_counter() - start
    tracemalloc.start(1)
    try:
        traced_outcome = _decode_zeros(item, coder_module.Work(), hard_timeout)
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    bound = work_bound(header, len(item.data), item.max_pixels)
    cost = Cost(outcome, seconds, traced, memory_bound(header), work, bound)
    if outcome != item.expect or traced_outcome != outcome:
        bad = outcome if outcome != item.expect else traced_outcome
        cost.failure = "WRONG" if bad in ("exact", "WRONG") else bad.split()[0]
    elif traced > cost.memory_bound:
        cost.failure = "MEMORY"
    elif work.values > bound[0] or work.steps > bound[1]:
        cost.failure = "WORK"
    return cost


def expensive_table(rows: list[tuple[Expensive, Cost]]) -> str:
    """The expensive files' costs as a Markdown table."""
    lines = [
        "| file | bytes | max pixels | outcome | values | steps | work bound (values, steps) "
        "| traced MiB | bound MiB | seconds | us/byte |",
        "|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for item, cost in rows:
        limit = "none" if item.max_pixels is None else "default"
        lines.append(
            f"| {item.name} | {len(item.data)} | {limit} | {cost.outcome} | {cost.work.values} "
            f"| {cost.work.steps} | {cost.work_bound[0]}, {cost.work_bound[1]} "
            f"| {cost.traced / MIB:.1f} | {cost.memory_bound / MIB:.0f} | {cost.seconds:.2f} "
            f"| {1e6 * cost.seconds / len(item.data):.1f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- running


class _Timeout(BaseException):
    """Raised by the alarm when a case runs past the hard timeout."""


def _alarm(_signum, _frame):
    raise _Timeout()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def same_image(a: PixelImage, b: PixelImage) -> bool:
    return (
        a.pixels.shape == b.pixels.shape
        and np.array_equal(a.pixels, b.pixels)
        and a.mode == b.mode
        and a.source_mode == b.source_mode
        and a.metadata == b.metadata
    )


@dataclass
class Result:
    outcome: str  # "exact", "rewrite", an IdfError class name, or a failure tag in capitals
    message: str
    seconds: float
    failure: str | None = None


def run_case(case: Case, slow: float, hard_timeout: float) -> Result:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, hard_timeout)
    start = time.perf_counter()
    image = None
    try:
        image = decoder.decode(case.data, max_pixels=case.max_pixels)
        outcome, message = "decoded", ""
    except IdfError as exc:
        outcome, message = type(exc).__name__, str(exc)
    except _Timeout:
        outcome, message = "TIMEOUT", f"still running after {hard_timeout} s"
    except Exception as exc:  # noqa: BLE001 - that is what a fuzzer looks for
        outcome, message = "CRASH", f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - start
    result = Result(outcome, message, seconds)
    if image is not None:
        if case.sample is not None and same_image(image, case.sample.image):
            result.outcome = "exact"
        elif (
            case.sample is not None
            and case.kind in FORGED
            and image.pixels.tobytes() == case.sample.image.pixels.tobytes()
        ):
            # The checksums were recomputed: the header may legitimately say something else
            # (metadata, or the same bytes as another shape); the pixel bytes may not differ.
            result.outcome = "rewrite"
        else:
            result.outcome = "WRONG"
            result.message = f"decoded a {image.width}x{image.height} {image.mode} image"
    if result.outcome in ("TIMEOUT", "CRASH", "WRONG"):
        result.failure = result.outcome
    elif case.must_be_exact and result.outcome != "exact":
        result.failure = "NOT-EXACT"
    elif result.outcome == "rewrite" and case.kind not in FORGED:
        result.failure = "WRONG"
    elif seconds > slow:
        result.failure = "SLOW"
    return result


@dataclass
class Tally:
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    max_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    failures: list[str] = field(default_factory=list)
    failed_by_kind: Counter = field(default_factory=Counter)
    cases: int = 0
    seconds: float = 0.0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    expensive: list[tuple[Expensive, Cost]] = field(default_factory=list)

    def add(self, case: Case, result: Result) -> None:
        self.cases += 1
        self.counts[case.kind][result.outcome] += 1
        self.max_seconds[case.kind] = max(self.max_seconds[case.kind], result.seconds)

    def table(self) -> str:
        columns = ["exact", "rewrite", "CorruptFile", "TruncatedFile", "NotAnIdfFile"]
        columns += ["UnsupportedVersion", "ImageTooLarge", "ModelError"]
        seen = {o for c in self.counts.values() for o in c}
        columns = [c for c in columns if c in seen] + sorted(seen - set(columns))
        head = ["kind", "cases", *columns, "failures", "max s"]
        rows = []
        kinds = sorted(self.counts, key=lambda k: (k != "truncate-all", k))
        for kind in [*kinds, "total"]:
            if kind == "total":
                c = sum(self.counts.values(), Counter())
                worst = max(self.max_seconds.values(), default=0.0)
            else:
                c, worst = self.counts[kind], self.max_seconds[kind]
            bad = self.failed if kind == "total" else self.failed_by_kind[kind]
            rows.append(
                [kind, sum(c.values()), *(c.get(o, 0) for o in columns), bad, f"{worst:.3f}"]
            )
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        lines = [
            "| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
        ]
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            lines.append(
                "| " + " | ".join(str(v).rjust(w) for v, w in zip(r, widths, strict=True)) + " |"
            )
        return "\n".join(lines)

    @property
    def failed(self) -> int:
        return len(self.failures)


def limit_address_space(gib: float) -> None:
    if gib <= 0:
        return
    limit = int(gib * (1 << 30))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def campaign(
    corpus: list[Sample],
    cases: int,
    seed: int,
    *,
    start: int = 0,
    sweep_bytes: int = 0,
    slow: float = 5.0,
    hard_timeout: float = 60.0,
    max_rss_growth: float = 1024.0,
    log: Callable[[str], None] = print,
    replay: str = "",
    save: Path | None = None,
    show: frozenset[str] = frozenset(),
    expensive: list[Expensive] | None = None,
) -> Tally:
    """Run the truncation sweep, the ``expensive`` files (:func:`run_expensive`), then
    random cases ``start .. start + cases - 1``."""
    for sample in corpus:  # warm-up: models, tables, torch kernels
        decoder.decode(sample.data)
    tally = Tally(rss_start=peak_rss_mib())
    threshold = tally.rss_start + max_rss_growth
    began = time.perf_counter()
    last_report = began

    def record(case: Case, result: Result, reproduce: str) -> None:
        nonlocal last_report, threshold
        tally.add(case, result)
        failure = result.failure
        peak = peak_rss_mib()
        if failure is None and peak > threshold:
            failure = "MEMORY"
            result.message += f" peak RSS {peak:.0f} MiB (after warm-up {tally.rss_start:.0f})"
            threshold = peak + max_rss_growth  # report each jump once
        if result.outcome in show:
            log(f"  {case.kind} {result.outcome}: {case.detail} -- {reproduce}")
        if failure:
            tally.failed_by_kind[case.kind] += 1
            line = (
                f"{case.kind} {failure}: {case.detail}: {result.outcome} {result.message} "
                f"({result.seconds:.2f} s) -- reproduce: {reproduce}"
            )
            tally.failures.append(line)
            log("FAIL " + line)
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                name = reproduce.split("--case ")[-1] if "--case" in reproduce else case.detail
                safe = "".join(ch if ch.isalnum() else "_" for ch in name)
                (save / f"{case.kind}-{safe}.idf").write_bytes(case.data)
        now = time.perf_counter()
        if now - last_report > 30:
            last_report = now
            log(f"  ... {tally.cases} cases, {tally.failed} failures, {now - began:.0f} s")

    if sweep_bytes:
        for case in truncation_sweep(corpus, sweep_bytes):
            result = run_case(case, slow, hard_timeout)
            if result.outcome not in ("TruncatedFile", "NotAnIdfFile") and not result.failure:
                result.failure = "NOT-TRUNCATED" if result.outcome != "exact" else "WRONG"
            record(case, result, f"{replay} --sweep-only ({case.detail})")
    for item in expensive or []:
        cost = run_expensive(item, hard_timeout)
        tally.expensive.append((item, cost))
        message = (
            f"traced {cost.traced / MIB:.1f} MiB (bound {cost.memory_bound / MIB:.0f}), "
            f"values {cost.work.values}, steps {cost.work.steps} (bound {cost.work_bound})"
        )
        result = Result(cost.outcome, message, cost.seconds, cost.failure)
        case = Case("expensive", item.data, item.name, None, item.max_pixels)
        record(case, result, f"{replay} --expensive-only (file {item.name})")
    for index in range(start, start + cases):
        case = make_case(seed, index, corpus)
        record(case, run_case(case, slow, hard_timeout), f"{replay} --seed {seed} --case {index}")
    tally.seconds = time.perf_counter() - began
    tally.rss_peak = peak_rss_mib()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="random cases to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="index of the first random case")
    parser.add_argument("--case", type=int, help="replay this one case and show it")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=FLOW_MODELS,
        help="the tiny models of the recorded flow files (default: %(default)s); "
        "searched before the shipped ones",
    )
    parser.add_argument(
        "--no-flow", action="store_true", help="leave the recorded flow-coded files out"
    )
    parser.add_argument(
        "--sweep-bytes",
        type=int,
        default=1500,
        help="truncate every offset of corpus files up to this size (0: no sweep)",
    )
    parser.add_argument("--sweep-only", action="store_true", help="run only the sweep")
    parser.add_argument(
        "--expensive-scale",
        type=int,
        default=1,
        help="decode the valid but expensive files with their sides divided by this "
        "(1: full size; 0: not at all)",
    )
    parser.add_argument(
        "--expensive-only", action="store_true", help="run only the expensive files"
    )
    parser.add_argument("--slow", type=float, default=5.0, help="seconds that make a case SLOW")
    parser.add_argument("--hard-timeout", type=float, default=60.0)
    parser.add_argument("--max-rss-growth", type=float, default=1024.0, help="MiB")
    parser.add_argument(
        "--address-space",
        type=float,
        default=12.0,
        help="cap the process's address space at this many GiB (0: no cap)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (for the flow-coded files)"
    )
    parser.add_argument("--save-failures", type=Path, help="write failing inputs here")
    parser.add_argument("--show", default="", help="comma-separated outcomes to print per case")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    flow = not args.no_flow and has_torch()
    if flow:
        runtime("decoding the flow-coded files", args.threads)
    limit_address_space(args.address_space)
    corpus = build_corpus(model_dir=args.model_dir, flow=None if flow else False)
    models = ", ".join(
        sorted({g.model_name for s in corpus for g in container.read_header(s.data)[0].groups})
    )
    files = ", ".join(f"{s.name} {len(s.data)} B" for s in corpus)
    print(f"corpus: {len(corpus)} files ({files}); models: {models}")
    replay = "python scripts/fuzz.py"
    if args.no_flow:
        replay += " --no-flow"
    if args.model_dir != FLOW_MODELS:
        replay += f" --model-dir {args.model_dir}"
    if args.case is not None:
        case = make_case(args.seed, args.case, corpus)
        result = run_case(case, args.slow, args.hard_timeout)
        print(
            f"case {args.case}: {case.kind} on {case.sample.name if case.sample else '-'}: "
            f"{case.detail}"
        )
        print(
            f"  -> {result.outcome} {result.message} ({result.seconds:.3f} s)"
            + (f"  FAILURE {result.failure}" if result.failure else "")
        )
        if args.verbose:
            print(case.data.hex())
        return 1 if result.failure else 0
    only = args.sweep_only or args.expensive_only
    started = time.perf_counter()
    expensive = expensive_corpus(args.expensive_scale) if args.expensive_scale else []
    if expensive:
        print(f"expensive files: {len(expensive)}, made in {time.perf_counter() - started:.1f} s")
    tally = campaign(
        corpus,
        0 if only else args.cases,
        args.seed,
        start=args.start,
        sweep_bytes=0 if args.expensive_only else args.sweep_bytes,
        expensive=[] if args.sweep_only else expensive,
        slow=args.slow,
        hard_timeout=args.hard_timeout,
        max_rss_growth=args.max_rss_growth,
        replay=replay,
        save=args.save_failures,
        show=frozenset(filter(None, args.show.split(","))),
    )
    print()
    print(tally.table())
    if tally.expensive:
        print()
        print(expensive_table(tally.expensive))
    print()
    print(
        f"{tally.cases} cases in {tally.seconds:.0f} s, {tally.failed} failures; "
        f"peak RSS {tally.rss_peak:.0f} MiB (after warm-up {tally.rss_start:.0f} MiB)"
    )
    for line in tally.failures:
        print("FAIL " + line)
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
