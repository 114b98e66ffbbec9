"""Probe for issue 18: code each channel's used values as dense indices (histogram packing).

Some photographs use only part of the 0..255 range of a channel: scans through a gamma
table, images stretched from fewer levels. Mapping the values a channel uses to 0..k-1
(per image, per channel, the table stored as a 256-bit set) makes the residuals of such
images smaller and leaves images that use every value unchanged. Prints the predictive
coder's payload bits per subpixel of sampled 256-px tiles with and without packing, with
the learned prior, on every validation folder (the set's cost: 32 bytes per channel).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/histogram_packing.py --tiles 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from idfcompress.predictive import coder, prior

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "val"
SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm"}


def packed(pixels: np.ndarray) -> np.ndarray:
    """Each channel's values replaced by their rank among the values the channel uses."""
    out = np.empty_like(pixels)
    for c in range(pixels.shape[2]):
        used = np.zeros(256, bool)
        used[pixels[..., c]] = True
        out[..., c] = (np.cumsum(used) - 1)[pixels[..., c]]
    return out


def payload_size(pixels: np.ndarray, net: object) -> int:
    """Bytes of the predictive payload of one tile."""
    return len(coder.plan([np.ascontiguousarray(pixels)], net).payload())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=40, help="tiles per folder")
    args = parser.parse_args()
    net = prior.load_prior(prior.DEFAULT_PRIOR)
    print(f"{'folder':<22}{'plain':>9}{'packed':>9}  change   images packed")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        tiles, sparse, images = [], 0, 0
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
            with Image.open(path) as image:
                grey = image.mode in ("L", "I;16", "I", "1", "LA")
                pixels = np.asarray(image.convert("L" if grey else "RGB"))
            pixels = pixels if pixels.ndim == 3 else pixels[:, :, None]
            pack = packed(pixels)
            images += 1
            sparse += int(not np.array_equal(pack, pixels - pixels.min(axis=(0, 1))))
            for y in range(0, pixels.shape[0], 256):
                for x in range(0, pixels.shape[1], 256):
                    cut = (slice(y, y + 256), slice(x, x + 256))
                    tiles.append((pixels[cut], pack[cut], 32 * pixels.shape[2]))
        rng = np.random.default_rng(0)
        pick = rng.choice(len(tiles), min(args.tiles, len(tiles)), replace=False)
        values = sum(tiles[i][0].size for i in pick)
        plain = sum(payload_size(tiles[i][0], net) for i in pick)
        pack_bytes = sum(payload_size(tiles[i][1], net) for i in pick)
        row = f"{8 * plain / values:>9.4f}{8 * pack_bytes / values:>9.4f}"
        name = folder.parent.name + "/" + folder.name
        gain = 100 * (pack_bytes / plain - 1)
        print(f"{name:<22}{row}  {gain:+.2f} %  {sparse}/{images}", flush=True)


if __name__ == "__main__":
    main()
