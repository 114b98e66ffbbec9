"""A fixed set of images whose .idf bytes must not change without a format change.

``python tests/codec/golden.py`` rewrites data/golden_bytes.json from the current encoder; do
that only together with a format change: a FORMAT_VERSION change, a new default prior (the
prior table is part of the format; test_same_bytes.py checks it), or a change docs/FORMAT.md
records in what the encoder writes (the flow encoder's retirement: groups name no model).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

GOLDEN = Path(__file__).with_name("data") / "golden_bytes.json"


def _smooth(seed: int, height: int, width: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / 9.0 + seed) * np.cos(y / 13.0 + 2 * seed)
    noise = rng.integers(-6, 7, size=(height, width, channels))
    planes = np.stack([base + 20 * c for c in range(channels)], axis=-1) + noise
    return np.clip(planes, 0, 255).astype(np.uint8)


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:196, 150:262])


def _with_metadata() -> Image.Image:
    image = Image.fromarray(_smooth(7, 24, 40, 3), "RGB")
    exif = Image.Exif()
    exif[0x010F] = "idfcompress test"
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif, icc_profile=b"not a real profile" * 4)
    buffer.seek(0)
    return Image.open(buffer)


def cases() -> Iterator[tuple[str, object, int]]:
    """(name, image, tile size) of every golden case."""
    rgb = _smooth(1, 270, 300, 3)
    yield "rgb-300x270", rgb, 256
    yield "rgb-300x270-t64", rgb, 64
    yield "gray-97x61-t64", _smooth(2, 61, 97, 1)[:, :, 0], 64
    rgba = np.concatenate([_smooth(3, 33, 40, 3), _smooth(4, 33, 40, 1)], axis=2)
    yield "rgba-40x33", rgba, 256
    la = np.concatenate([_smooth(5, 7, 19, 1), _smooth(6, 7, 19, 1)], axis=2)
    yield "la-19x7", la, 256
    yield "gray-1x1", np.full((1, 1), 77, np.uint8), 256
    yield "rgb-3x5", _smooth(8, 5, 3, 3), 256
    astronaut = _astronaut()
    yield "astronaut-112x96", astronaut, 256
    grey = (astronaut.astype(np.int64) @ np.array([299, 587, 114]) // 1000).astype(np.uint8)
    yield "astronaut-grey-112x96-t32", grey, 32
    noise = np.random.default_rng(9).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    yield "noise-64x48", noise, 256
    yield "flat-50x50", np.zeros((50, 50, 3), np.uint8), 256
    yield "levels-64x48", _smooth(10, 48, 64, 3) // 4 * 4, 256  # packed
    yield "metadata-40x24", _with_metadata(), 256


def encode(image: object, tile_size: int) -> bytes:
    """The .idf bytes of ``image`` (the public API)."""
    import idfcompress

    return idfcompress.compress(image, tile_size=tile_size)


def digests() -> dict[str, str]:
    """SHA-256 of every case's bytes, keyed by name."""
    return {
        name: hashlib.sha256(encode(image, tile_size)).hexdigest()
        for name, image, tile_size in cases()
    }


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(digests(), indent=1, sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {GOLDEN}\n")
