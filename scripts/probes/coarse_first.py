"""Probe for issue 18: what does a coarse level first cost the default coder?

Progressive display by default needs every file to start with a picture of the whole image.
The cheapest such start: every F-th pixel of every F-th row (a 1/F^2 subsample), coded
first as an image of its own with the default region coder; the tiles then code every
other value as today, the subsample's values known to the decoder (taken, not decoded).
The order's cost is then the subsample's own bytes minus what its values cost in the tiles
(each value's float logistic bits, after prior, filter and shifts).

On up to ``--images`` images per validation folder (seeded), each cut to at most 1024 px
a side on the 256-px tile grid, this probe reports the subsample's share of the file, that
cost, and the PSNR of the subsample upsampled (nearest and bilinear) as the first preview.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/coarse_first.py --images 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import DATA, SUFFIXES  # noqa: E402
from residual_shape import coded_values, logistic_p  # noqa: E402

from idfcompress.codec.progressive import upsample  # noqa: E402
from idfcompress.predictive import prior, regions  # noqa: E402


def image_of(path: Path, side: int) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.mode in ("L", "I;16", "I", "1", "LA")
        pixels = np.asarray(image.convert("L" if grey else "RGB"))
    pixels = pixels if pixels.ndim == 3 else pixels[:, :, None]
    h, w = (min(side, n) for n in pixels.shape[:2])
    return np.ascontiguousarray(pixels[:h, :w])


def tile_costs(image: np.ndarray, learned: prior.Prior) -> np.ndarray:
    """Every value's estimated bits in the default coder, (H, W, C), tile by tile."""
    h, w, c = image.shape
    out = np.zeros((h, w, c))
    for y in range(0, h, 256):
        for x in range(0, w, 256):
            tile = image[y : y + 256, x : x + 256]
            if min(tile.shape[:2]) < 8:
                continue
            xs, mu, s = coded_values(tile, learned)
            th, tw = tile.shape[:2]
            for i in range(len(xs)):
                bits = -np.log2(logistic_p(xs[i], mu[i], s[i]))
                # the coder codes wide regions transposed; coded_planes gives the order
                plane = bits.reshape((th, tw) if th >= tw else (tw, th))
                out[y : y + th, x : x + tw, i] = plane if th >= tw else plane.T
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def upsampled(coarse: np.ndarray, f: int, shape) -> tuple[np.ndarray, np.ndarray]:
    """Nearest and bilinear (the decoder's first stage) upsamplings of the subsample."""
    h, w = shape[:2]
    nearest = np.repeat(np.repeat(coarse, f, 0), f, 1)[:h, :w]
    bilinear = np.zeros(shape, dtype=np.uint8)
    upsample(coarse, f, bilinear)
    return nearest, bilinear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images per folder")
    parser.add_argument("--factors", default="4,8", help="subsampling factors F")
    args = parser.parse_args()
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    factors = [int(f) for f in args.factors.split(",")]
    print(f"{'folder':<22}{'bits/sub':>9}" + "".join(
        f"{'F=' + str(f) + ' share':>12}{'cost':>8}{'PSNR n/b':>13}" for f in factors))  # fmt: skip
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
        rng = np.random.default_rng(0)
        paths = [paths[i] for i in sorted(rng.choice(len(paths), min(args.images, len(paths)),
                                                     replace=False))]  # fmt: skip
        total, values = 0.0, 0
        coarse_bits = np.zeros(len(factors))
        known_bits = np.zeros(len(factors))
        quality = np.zeros((len(factors), 2))
        for path in paths:
            image = image_of(path, 1024)
            costs = tile_costs(image, learned)
            total += costs.sum()
            values += image.size
            for k, f in enumerate(factors):
                coarse = np.ascontiguousarray(image[::f, ::f])
                coarse_bits[k] += 8 * len(regions.encode_regions([coarse]))
                known_bits[k] += costs[::f, ::f].sum()
                near, bilinear = upsampled(coarse, f, image.shape)
                quality[k] += psnr(image, near), psnr(image, bilinear)
        quality /= len(paths)
        name = folder.parent.name + "/" + folder.name
        row = f"{name:<22}{total / values:>9.4f}"
        for k in range(len(factors)):
            share = coarse_bits[k] / (total - known_bits[k] + coarse_bits[k])
            cost = (coarse_bits[k] - known_bits[k]) / total
            row += f"{100 * share:>11.1f}%{100 * cost:>+7.2f}%"
            row += f"{quality[k, 0]:>7.1f}/{quality[k, 1]:.1f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
