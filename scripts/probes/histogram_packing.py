"""Probe for issue 18: code each channel's used values as dense indices (histogram packing).

Some photographs use only part of the 0..255 range of a channel: scans through a gamma
table, images stretched from fewer levels. Mapping the values a channel uses to 0..k-1
(per image, per channel, the table stored as a 256-bit set) makes the residuals of such
images smaller and leaves images that use every value unchanged. Prints the predictive
coder's payload bits per subpixel of sampled 256-px tiles with the learned prior, on every
validation folder: plain, packed per image (the set's 32 bytes per channel not charged),
and packed per tile where the tile has gaps or where packing is estimated to pay (charged
32 bytes per packed channel).

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


def gaps(pixels: np.ndarray) -> np.ndarray:
    """Which channels leave values unused between their lowest and highest."""
    spans = pixels.max(axis=(0, 1)).astype(int) - pixels.min(axis=(0, 1)) + 1
    used = [np.unique(pixels[..., c]).size for c in range(pixels.shape[2])]
    return np.array(used) < spans


def worth_packing(pixels: np.ndarray) -> np.ndarray:
    """Which channels packing would shrink by more than their set's 256 bits, estimated
    from the mean absolute step to the left and upper neighbours before and after."""
    where = gaps(pixels)
    pack = packed(pixels)
    for c in np.flatnonzero(where):
        steps = [
            sum(float(np.abs(np.diff(a[..., c].astype(int), axis=k)).mean()) for k in (0, 1))
            for a in (pixels, pack)
        ]
        saving = pixels[..., c].size * np.log2((steps[0] + 1) / (steps[1] + 1))
        where[c] = saving > 256
    return where


def tile_packed_size(pixels: np.ndarray, net: object, choose: bool = False) -> int:
    """Bytes of a tile packed on its own where it has gaps (``choose``: where
    :func:`worth_packing`), with 32 bytes per packed channel for its set of used values."""
    where = worth_packing(pixels) if choose else gaps(pixels)
    if not where.any():
        return payload_size(pixels, net)
    pack = pixels.copy()
    pack[..., where] = packed(pixels[..., where])
    return payload_size(pack, net) + 32 * int(where.sum())


def payload_size(pixels: np.ndarray, net: object) -> int:
    """Bytes of the predictive payload of one tile."""
    return len(coder.plan([np.ascontiguousarray(pixels)], net).payload())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=40, help="tiles per folder")
    args = parser.parse_args()
    net = prior.load_prior(prior.DEFAULT_PRIOR)
    head = f"{'folder':<22}{'plain':>9}{'image':>9}{'tile':>9}"
    print(head + "  tile change   chosen change  image change  images packed")
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
        tile_bytes = sum(tile_packed_size(tiles[i][0], net) for i in pick)
        row = f"{8 * plain / values:>9.4f}{8 * pack_bytes / values:>9.4f}"
        row += f"{8 * tile_bytes / values:>9.4f} {100 * (tile_bytes / plain - 1):+6.2f} %"
        chosen = sum(tile_packed_size(tiles[i][0], net, choose=True) for i in pick)
        row += f"{8 * chosen / values:>9.4f} {100 * (chosen / plain - 1):+6.2f} %"
        name = folder.parent.name + "/" + folder.name
        gain = 100 * (pack_bytes / plain - 1)
        print(f"{name:<22}{row}  {gain:+.2f} %  {sparse}/{images}", flush=True)


if __name__ == "__main__":
    main()
