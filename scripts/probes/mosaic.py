"""A 12 MP colour photo for speed measurements: 4000x3000 px tiled from the BSDS500-val
photos (the validation data holds no colour photo that large).

    .venv/bin/python scripts/probes/mosaic.py bench-out/mosaic-12mp.png
    /usr/bin/time -v .venv/bin/idfc compress bench-out/mosaic-12mp.png -o bench-out/mosaic-12mp.idf
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DATA = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "val" / "rgb" / "bsds500-val"
)


def main() -> None:
    out = np.zeros((3000, 4000, 3), np.uint8)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(DATA.glob("*.png"))]
    landscape = [p for p in photos if p.shape[0] < p.shape[1]]  # rows of one height
    y = x = 0
    row_height = 0
    for photo in itertools.cycle(landscape):  # a few photos come twice
        h, w = min(photo.shape[0], 3000 - y), min(photo.shape[1], 4000 - x)
        out[y : y + h, x : x + w] = photo[:h, :w]
        row_height = max(row_height, h)
        x += w
        if x >= 4000:
            x, y, row_height = 0, y + row_height, 0
            if y >= 3000:
                break
    Image.fromarray(out).save(sys.argv[1])


if __name__ == "__main__":
    main()
