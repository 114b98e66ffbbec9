#!/usr/bin/env python
"""The progressive stages of a default file, and what its coarse-to-fine order costs.

    .venv/bin/python scripts/progressive_stages.py                      # astronaut
    .venv/bin/python scripts/progressive_stages.py ../shared/data/val/rgb/mcmaster/1.png

Compresses the photo with the default settings (the coarse level first, then the tiles),
decodes it with ``idfcompress.decode_progressive`` and prints, per stage, the bytes it
needs, their share of the file and its PSNR. Then the order's cost: the file against the
same tiles coded whole by the same coder, without a coarse level (what format 9 wrote),
both with their chunk-table entries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import idfcompress as ic  # noqa: E402
from idfcompress.format import container, layout  # noqa: E402
from idfcompress.imageio import read_image  # noqa: E402
from idfcompress.predictive.regions import RegionCoding  # noqa: E402

ENTRY_BYTES = 16  # one chunk-table entry


def load_photo(name: str) -> np.ndarray:
    from skimage import data

    if hasattr(data, name):
        return np.ascontiguousarray(getattr(data, name)())
    pixels = read_image(name).pixels
    return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def without_level(image: np.ndarray, data: bytes) -> int:
    """Bytes of the file with every region tile coded whole (no coarse level): the file
    less its coarse chunks and their entries, with each region tile recoded."""
    header, chunks = container.read(data)
    pixels = image if image.ndim == 3 else image[:, :, None]
    size = len(data)
    for entry, payload in chunks:
        if entry.kind == layout.COARSE_KIND:
            size -= len(payload) + ENTRY_BYTES
        elif entry.kind == layout.REGION_KIND:
            group = header.groups[entry.group]
            tile = layout.tiles_of(header.height, header.width, header.tile_size)[entry.tile]
            plane = pixels[:, :, group.first_channel : group.first_channel + group.channels]
            whole = RegionCoding([layout.tile_of(plane, tile)]).payload()
            size += len(whole) - len(payload)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default="astronaut",
                        help="skimage.data name or image path")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    image = load_photo(args.image)
    data = ic.compress(image)
    info = ic.info(data)
    stages = list(ic.decode_progressive(data))
    print(f"{args.image}: {image.shape[1]}x{image.shape[0]}, {len(data)} bytes, coarse level "
          f"every {info['coarse_stride']}th pixel in {info['coarse_tiles']} tile(s)")  # fmt: skip
    print("| stage | bytes needed | share of the file | PSNR |")
    print("|---:|---:|---:|---:|")
    rows = []
    for s in stages:
        quality = psnr(s.pixels, image)
        shown = "exact" if s.exact else f"{quality:.1f} dB"
        print(f"| {s.index} | {s.bytes_used} | {100 * s.fraction:.1f} % | {shown} |")
        rows.append({"stage": s.index, "bytes": s.bytes_used, "psnr": quality})
    whole = without_level(image, data)
    cost = len(data) / whole - 1
    print(f"order's cost: {len(data)} bytes against {whole} without the coarse level "
          f"({100 * cost:+.2f} %)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"stages": rows, "bytes": len(data), "whole": whole}))


if __name__ == "__main__":
    main()
