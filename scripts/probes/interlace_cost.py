"""Probe for issue 18: what does a coarse-to-fine (interlaced) order cost a predictive coder?

Progressive display by default needs every file to start with a coarse image. This codes
sampled 256-px tiles of every validation folder with one simple model in two orders and
prints the estimated bits per subpixel of both:

- ``raster``: every pixel predicted by the median edge detector (LOCO-I's MED) from W, N
  and NW, its residual coded with a discretized logistic fitted per context (16 bins of
  the local gradient ``|W - NW| + |N - NW| + |N - NE|``);
- ``interlaced``: the even rows' even pixels first (recursively, down to 16 px coded in
  raster order), then per level the pixels between two coarse ones in a row (predicted by
  their mean, context ``|W - E|``), between two in a column (``|N - S|``), and last the
  centres, whose four neighbours are all known (the mean of the pair that differs less,
  context its difference); every class fits its own logistics per context.

The same kind of model in both orders, so the ratio is the cost of the order for it (a
4-tap cubic between the coarse pixels instead of their mean did worse on four folders);
colour is coded as G, R - G, B - G. Bits are ``fit_logistic``'s estimates plus 2 bytes a
context.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/interlace_cost.py --tiles 20
"""

from __future__ import annotations

import argparse

import numpy as np
from prior_ablation import DATA, tiles

from idfcompress.entropy.tables import fit_logistic

BINS = 16
HEAD_BITS = 16  # a fitted logistic per context


def coded_bits(residual: np.ndarray, activity: np.ndarray) -> float:
    """Bits of integer residuals under a logistic fitted per activity bin."""
    bins = np.minimum(np.floor(np.log2(activity.ravel() + 1) * 2), BINS - 1).astype(np.int64)
    total = 0.0
    r = residual.ravel()
    for b in np.unique(bins):
        total += float(fit_logistic(r[bins == b][None])[2][0]) + HEAD_BITS
    return total


def raster(p: np.ndarray) -> float:
    """Bits of a plane coded in raster order with MED."""
    q = np.pad(p, ((1, 0), (1, 1)), mode="edge").astype(np.int64)
    w, n, nw, ne = q[1:, :-2], q[:-1, 1:-1], q[:-1, :-2], q[:-1, 2:]
    lo, hi = np.minimum(w, n), np.maximum(w, n)
    med = np.where(nw >= hi, lo, np.where(nw <= lo, hi, w + n - nw))
    activity = np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne)
    return coded_bits(p - med, activity)


def interlaced(p: np.ndarray) -> float:
    """Bits of a plane coded coarse to fine."""
    if min(p.shape) <= 16:
        return raster(p)
    coarse = p[::2, ::2]
    bits = interlaced(coarse)
    q = p.astype(np.int64)

    def after(first: np.ndarray, following: np.ndarray, axis: int) -> np.ndarray:
        """``following`` extended to ``first``'s shape by ``first``'s last slice (no
        neighbour beyond the edge: the one before stands in)."""
        missing = first.shape[axis] - following.shape[axis]
        if missing <= 0:
            return following
        edge = np.take(first, [-1] * missing, axis=axis)
        return np.concatenate([following, edge], axis=axis)

    # between two coarse pixels in a row (even rows, odd columns)
    target = q[0::2, 1::2]
    left = q[0::2, 0::2][:, : target.shape[1]]
    right = after(left, q[0::2, 2::2][:, : target.shape[1]], 1)
    bits += coded_bits(target - (left + right) // 2, np.abs(left - right))
    # between two coarse pixels in a column (odd rows, even columns)
    target = q[1::2, 0::2]
    top = q[0::2, 0::2][: target.shape[0]]
    bottom = after(top, q[2::2, 0::2][: target.shape[0]], 0)
    bits += coded_bits(target - (top + bottom) // 2, np.abs(top - bottom))
    # centres: all four neighbours known (or their opposite, at the edges)
    target = q[1::2, 1::2]
    rows, cols = target.shape
    n = q[0::2, 1::2][:rows, :cols]
    s_ = after(n, q[2::2, 1::2][:rows, :cols], 0)
    west = q[1::2, 0::2][:rows, :cols]
    east = after(west, q[1::2, 2::2][:rows, :cols], 1)
    vertical = np.abs(n - s_) <= np.abs(west - east)
    pred = np.where(vertical, (n + s_) // 2, (west + east) // 2)
    activity = np.minimum(np.abs(n - s_), np.abs(west - east))
    bits += coded_bits(target - pred, activity)
    return bits


def planes(tile: np.ndarray) -> list[np.ndarray]:
    t = tile.astype(np.int64)
    if t.shape[2] == 1:
        return [t[:, :, 0]]
    g = t[:, :, 1]
    return [g, t[:, :, 0] - g, t[:, :, 2] - g]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=20, help="tiles per folder")
    args = parser.parse_args()
    print(f"{'folder':<22}{'raster':>9}{'interlaced':>12}  cost")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = [t for t in tiles(folder, args.tiles, seed=0) if min(t.shape[:2]) >= 32]
        values = sum(t.size for t in sample)
        r = sum(raster(p) for t in sample for p in planes(t))
        i = sum(interlaced(p) for t in sample for p in planes(t))
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}{r / values:>9.4f}{i / values:>12.4f}  {100 * (i / r - 1):+.1f} %")


if __name__ == "__main__":
    main()
