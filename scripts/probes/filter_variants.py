"""Probe for issue 18: what more could the online filter take off the shipped coder?

The built filter (``predictive.online``, format 9) corrects each value's prior mean by an
NLMS filter over 14 inputs: the prior's residuals at six neighbours (W, N, NW, NE, WW, NN),
the neighbours minus the rounded prediction and the earlier planes' residuals at the pixel.
This probe runs float copies of it, and variants, on sampled 256-px tiles of every
validation folder, in the coder's step order, then fits the per-context shifts as the
encoder does and compares estimated bits (each plane picks the filter or none, as the
encoder does):

- ``base``: the built filter (rate 2^-8), in float;
- ``ext``: six more neighbours (NWW, NNW, NNE, NNWW, NNEE, WWW; all decoded before the
  value in step order), their residuals and values minus the rounded prediction: 26 inputs;
- ``cascade``: ``base``, then a second NLMS filter over the first one's errors at the six
  neighbours and its output, learning what the first leaves;
- ``two-rate``: filters at rates 2^-6 and 2^-10 side by side, their outputs mixed by a
  third NLMS filter of two inputs (weights starting at one half each);
- ``ext+two``: both of the above;
- ``coarse``: the coarse level of format 10 as one more input: 16 x (the level's bilinear
  interpolation at the pixel - the rounded prediction), the level being every 8th pixel of
  every 8th row, known before the tile (the values at the level's pixels still counted).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/filter_variants.py --tiles 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lms_prior import prepared  # noqa: E402
from prior_ablation import folder_table  # noqa: E402

from idfcompress.compiled import jit  # noqa: E402
from idfcompress.predictive import lattice, prior  # noqa: E402

VARIANTS = {  # name: (extended neighbours, cascade, two rates, coarse level)
    "base": (False, False, False, False),
    "ext": (True, False, False, False),
    "cascade": (False, True, False, False),
    "two-rate": (False, False, True, False),
    "ext+two": (True, False, True, False),
    "coarse": (False, False, False, True),
}


def interpolated(values: np.ndarray, h: int, w: int, f: int = 8) -> np.ndarray:
    """Per plane (cells as ``values``), the bilinear interpolation of the values at rows and
    columns that are multiples of ``f``."""
    out = np.zeros(values.shape, dtype=np.float64)
    y, x = np.arange(h) / f, np.arange(w) / f
    y0 = np.minimum(np.floor(y).astype(int), (h - 1) // f)
    x0 = np.minimum(np.floor(x).astype(int), (w - 1) // f)
    y1, x1 = np.minimum(y0 + 1, (h - 1) // f), np.minimum(x0 + 1, (w - 1) // f)
    fy, fx = np.clip(y - y0, 0, 1)[:, None], np.clip(x - x0, 0, 1)[None, :]
    for p in range(values.shape[0]):
        level = values[p, 1:].reshape(h, w)[::f, ::f].astype(np.float64)
        top = level[y0][:, x0] * (1 - fx) + level[y0][:, x1] * fx
        bottom = level[y1][:, x0] * (1 - fx) + level[y1][:, x1] * fx
        out[p, 1:] = (top * (1 - fy) + bottom * fy).ravel()
    return out


def far_neighbours(h: int, w: int) -> np.ndarray:
    """(h w, 6) cells of NWW, NNW, NNE, NNWW, NNEE and WWW within the pixel's band, 0 where
    there is none (as ``lattice.neighbours`` indexes cells)."""
    row, x = (a.ravel() for a in np.mgrid[0:h, 0:w])
    at = 1 + row * w + x
    y = row % lattice.BAND
    offsets = [(-1, -2), (-2, -1), (-2, 1), (-2, -2), (-2, 2), (0, -3)]
    cols = []
    for dy, dx in offsets:
        ok = (y + dy >= 0) & (x + dx >= 0) & (x + dx < w)
        cols.append(np.where(ok, at + dy * w + dx, 0))
    return np.stack(cols, axis=1)


@jit()
def nlms(weights, u, taps, error, mu):
    norm = 256.0
    for k in range(taps):
        norm += u[k] * u[k]
    g = mu * error / norm
    for k in range(taps):
        weights[k] += g * u[k]


@jit()
def dot(weights, u, taps):
    acc = 0.0
    for k in range(taps):
        acc += weights[k] * u[k]
    return acc


@jit()
def gather(u, values, coded, resid, nbr, p, j):
    """The built filter's 14 inputs of value ``j`` of plane ``p`` into ``u``; returns its
    rounded prediction."""
    rp = values[p, j + 1] - coded[p, j]
    for k in range(6):
        c = nbr[j, k]
        u[k] = resid[p, c]
        u[6 + k] = 16.0 * (values[p, c] - rp) if c else 0.0
    u[12] = resid[0, j + 1] if p else 0.0
    u[13] = resid[p - 1, j + 1] if p else 0.0
    return rp


@jit()
def corrected(order, n, values, coded, mean, nbr, far, interp, ext, cascade, two, coarse):
    """Every value's prior mean plus the variant's correction, learnt in coding ``order``."""
    planes = coded.shape[0]
    taps = 26 if ext else (15 if coarse else 14)
    w_a = np.zeros((planes, taps))
    w_b = np.zeros((planes, taps))
    w_mix = np.full((planes, 2), 0.5)
    w_c = np.zeros((planes, 7))
    resid = np.zeros((planes, n + 1))
    left = np.zeros((planes, n + 1))  # the first stage's errors, for the cascade
    out = mean.copy()
    u = np.zeros(taps)
    v = np.zeros(7)
    m2 = np.zeros(2)
    for t in range(order.size):
        p = order[t] // (n + 1)
        j = order[t] % (n + 1) - 1
        rp = gather(u, values, coded, resid, nbr, p, j)
        if ext:
            for k in range(6):
                c = far[j, k]
                u[14 + k] = resid[p, c]
                u[20 + k] = 16.0 * (values[p, c] - rp) if c else 0.0
        if coarse:
            u[14] = 16.0 * (interp[p, j + 1] - rp)
        r = 16.0 * coded[p, j] - mean[p, j]
        if two:
            a = dot(w_a[p], u, taps)
            b = dot(w_b[p], u, taps)
            m2[0] = a
            m2[1] = b
            corr = w_mix[p, 0] * a + w_mix[p, 1] * b
            nlms(w_a[p], u, taps, r - a, 1 / 64)
            nlms(w_b[p], u, taps, r - b, 1 / 1024)
            nlms(w_mix[p], m2, 2, r - corr, 1 / 256)
        else:
            corr = dot(w_a[p], u, taps)
            nlms(w_a[p], u, taps, r - corr, 1 / 256)
        if cascade:
            for k in range(6):
                v[k] = left[p, nbr[j, k]]
            v[6] = corr
            c2 = dot(w_c[p], v, 7)
            left[p, j + 1] = r - corr
            nlms(w_c[p], v, 7, r - corr - c2, 1 / 256)
            corr += c2
        out[p, j] = min(max(mean[p, j] + int(np.round(corr)), -4080), 4080)
        resid[p, j + 1] = r
    return out


def tile_bits(tile: np.ndarray, learned: prior.Prior) -> list[float]:
    """The tile's estimated bits without the filter, then with each variant (each plane
    takes the variant or none, and a byte for the choice)."""
    planes, (n, values, coded, mean, _, order, nbr) = prepared(tile, learned)
    h, w = sorted(tile.shape[:2], reverse=True)
    far = far_neighbours(h, w)
    interp = interpolated(values, h, w)

    def plane_bits(m):
        return np.array([prior.fit_shifts(p.coded, m[i], p.scale, p.contexts)[3]
                         for i, p in enumerate(planes)])  # fmt: skip

    off = plane_bits(mean)
    out = [float(off.sum())]
    for flags in VARIANTS.values():
        bits = plane_bits(corrected(order, n, values, coded, mean, nbr, far, interp, *flags))
        out.append(float(np.minimum(off, bits).sum()) + 8 * len(planes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles per folder")
    parser.add_argument("--only", help="comma-separated variants (besides base)")
    args = parser.parse_args()
    if args.only:
        keep = {"base", *args.only.split(",")}
        for name in list(VARIANTS):
            if name not in keep:
                del VARIANTS[name]
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    names = ["off", *VARIANTS]
    folder_table(names, lambda t: tile_bits(t, learned), args.tiles, base=1, note="; vs base")


if __name__ == "__main__":
    main()
