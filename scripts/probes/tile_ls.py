"""Probe for issue 18: does a linear predictor fitted per tile plane add to the blend?

The predictive coder blends eight fixed predictors by their recent errors. Coders that beat
JPEG XL fit linear predictors to the image (least squares over a causal window). This
probe codes sampled 256-px tiles of every validation folder with a simplified copy of the
hand-made coder (raster order, replicated borders, the same blend, gains, contexts and one
fitted logistic per plane and context; estimated bits) and compares, at the same side cost
accounting:

- ``blend8``: the eight predictors;
- ``+ls6`` / ``+ls12``: a ninth predictor, the least-squares fit over 6 / 12 causal
  neighbours of the tile plane (coefficients in 1/64, 2 bytes each, counted);
- ``+irls12``: the same, refitted three times with weights 1 / (|error| + 8): closer to the
  fewest absolute errors, which is what the coder pays for;
- ``ls12 only``: the fitted predictor alone, no blend;
- ``nlmsR``: the blend corrected by a normalised LMS filter of rate R learnt while coding,
  in raster order, or (``nlmsRs``) in the coder's step order, bands side by side.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/tile_ls.py --tiles 24 \
        --variants blend8,+ls6,+ls12,+irls12,"ls12 only"
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/tile_ls.py --tiles 6 \
        --variants blend8,nlms0.005,nlms0.005s,nlms0.01s,nlms0.002s
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import DATA, tiles  # noqa: E402

from idfcompress.compiled import jit  # noqa: E402
from idfcompress.entropy.tables import fit_logistic  # noqa: E402
from idfcompress.predictive import coder, search  # noqa: E402

# (dy, dx) of the causal neighbours: the coder's six first, then six more it could reach
OFFSETS = np.array(
    [(0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0),
     (-2, 1), (-1, -2), (-2, -1), (-2, 2), (0, -3), (-2, -2)],
    dtype=np.int64,
)  # fmt: skip
COEF_ONE = 64


@jit()
def _near(plane, offsets):
    """(K, H, W) neighbour values; one outside the tile is W, else N, else 0."""
    h, w = plane.shape
    k = offsets.shape[0]
    out = np.zeros((k, h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            fallback = plane[y, x - 1] if x > 0 else (plane[y - 1, x] if y > 0 else 0)
            for j in range(k):
                yy = y + offsets[j, 0]
                xx = x + offsets[j, 1]
                inside = yy >= 0 and 0 <= xx < w
                out[j, y, x] = plane[yy, xx] if inside else fallback
    return out


@jit()
def _blend(target16, preds, ring):
    """Blend (sixteenths) of predictors (P, H, W) weighted by their neighbours' errors."""
    p, h, w = preds.shape
    err = np.zeros((p, h, w), dtype=np.int64)
    out = np.zeros((h, w), dtype=np.int64)
    weights = ring
    for y in range(h):
        for x in range(w):
            num = 0
            den = 0
            for q in range(p):
                tot = 0
                for dy, dx, f in ((0, -1, 2), (-1, 0, 2), (-1, -1, 2), (-1, 1, 2), (0, -2, 1),
                                  (-2, 0, 1)):  # fmt: skip
                    yy, xx = y + dy, x + dx
                    if 0 <= yy and 0 <= xx < w:
                        tot += f * err[q, yy, xx]
                wt = weights[min(tot, weights.size - 1)]
                num += wt * preds[q, y, x]
                den += wt
            out[y, x] = (2 * num + den) // (2 * den)
            for q in range(p):
                err[q, y, x] = abs(target16[y, x] - preds[q, y, x])
    return out


@jit()
def _contexts(near, errs, earlier, thresholds):
    k, h, w = near.shape
    out = np.zeros((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            e = np.zeros(6, dtype=np.int64)
            for j, (dy, dx) in enumerate(((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0))):
                yy, xx = y + dy, x + dx
                if 0 <= yy and 0 <= xx < w:
                    e[j] = errs[yy, xx]
            g = abs(near[0, y, x] - near[2, y, x]) + abs(near[1, y, x] - near[2, y, x])
            g += abs(near[1, y, x] - near[3, y, x])
            tot = e[0] + e[1] + e[2] + e[3] + (e[4] + e[5]) // 2 + 8 * g + (3 * earlier[y, x]) // 2
            c = 0
            while c < thresholds.size and thresholds[c] <= tot:
                c += 1
            out[y, x] = c
    return out


@jit()
def _nlms(target16, blend, near, mu, order):
    """The blend corrected by a normalised LMS filter, learnt while coding (raster order),
    over the blend's signed errors at six neighbours and 12 neighbours minus the blend."""
    k, h, w = near.shape
    taps = 6 + k
    weights = np.zeros(taps)
    err = np.zeros((h, w))
    u = np.zeros(taps)
    out = np.zeros((h, w), dtype=np.int64)
    for t in range(order.shape[0]):
        y, x = order[t, 0], order[t, 1]
        if True:
            for j, (dy, dx) in enumerate(((0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0))):
                yy, xx = y + dy, x + dx
                u[j] = err[yy, xx] if 0 <= yy and 0 <= xx < w else 0.0
            for j in range(k):
                u[6 + j] = 16.0 * near[j, y, x] - blend[y, x]
            c = 0.0
            norm = 16.0 * 16.0
            for j in range(taps):
                c += weights[j] * u[j]
                norm += u[j] * u[j]
            out[y, x] = blend[y, x] + int(np.round(c))
            e = target16[y, x] - blend[y, x]
            err[y, x] = e
            g = mu * (e - c) / norm
            for j in range(taps):
                weights[j] += g * u[j]
    return out


def coding_order(h: int, w: int, steporder: bool) -> np.ndarray:
    """(y, x) in raster order, or in the coder's step order (bands of 64 rows side by side,
    pixel (y, x) in step x + 2 (y mod 64))."""
    ys, xs = np.mgrid[:h, :w]
    ys, xs = ys.ravel(), xs.ravel()
    if not steporder:
        return np.stack([ys, xs], 1)
    key = (xs + 2 * (ys % 64)) * (h + 1) + ys
    pick = np.argsort(key, kind="stable")
    return np.stack([ys[pick], xs[pick]], 1)


def fit(near: np.ndarray, target: np.ndarray, rounds: int) -> np.ndarray:
    """Integer coefficients (1/64) of the (weighted) least-squares fit of target."""
    a = near.reshape(near.shape[0], -1).T.astype(np.float64)
    b = target.ravel().astype(np.float64)
    wts = np.ones_like(b)
    coef = np.zeros(a.shape[1])
    for _ in range(rounds + 1):
        aw = a * wts[:, None]
        coef = np.linalg.lstsq(aw.T @ a + 1e-3 * np.eye(a.shape[1]), aw.T @ b, rcond=None)[0]
        wts = 1.0 / (np.abs(b - a @ coef) + 8.0)
    return np.clip(np.round(coef * COEF_ONE), -32768, 32767).astype(np.int64)


def tile_bits(tile: np.ndarray, variant: str) -> float:
    if tile.shape[1] > tile.shape[0]:  # coded transposed, as the coder does
        tile = tile.transpose(1, 0, 2)
    planes = coder.coded_planes(tile)
    h, w = tile.shape[:2]
    c = tile.shape[2]
    ranges = coder.plane_ranges(c)
    earlier = np.zeros((h, w), dtype=np.int64)
    signed: list[np.ndarray] = []
    bits = 0.0
    for i in range(c):
        plane = planes[i].reshape(h, w)
        near = _near(plane, OFFSETS)
        fixed = np.einsum("pk,khw->phw", coder.PREDICTOR_MATRIX, near[:6])
        preds = [fixed]
        if variant.startswith("+"):
            k = 6 if variant == "+ls6" else 12
            coef = fit(near[:k], plane, 3 if variant == "+irls12" else 0)
            ls = (np.einsum("k,khw->hw", coef, near[:k]) * 16 + COEF_ONE // 2) // COEF_ONE
            preds.append(ls[None])
            bits += 16 * k
        allp = np.concatenate(preds)
        if variant == "ls12 only":
            pred = allp[-1]
        else:
            pred = _blend(16 * plane, allp, coder.BLEND_WEIGHTS)
        if variant.startswith("nlms"):
            mu = float(variant[4:].rstrip("s"))
            order = coding_order(h, w, variant.endswith("s"))
            pred = _nlms(16 * plane, pred.reshape(h, w), near, mu, order).ravel()
        pred = pred.ravel()
        if i:
            first, prev = signed[0], signed[i - 1]
            a = int(search.best_gain(16 * plane.ravel(), pred, first, *ranges[i], 8))
            pred = pred + ((a * first) >> 3)
            if i > 1:
                b = int(search.best_gain(16 * plane.ravel(), pred, prev, *ranges[i], 8))
                pred = pred + ((b * prev) >> 3)
            bits += 16
        pred = np.clip(pred, *ranges[i])
        signed.append(16 * plane.ravel() - pred)
        errs = np.abs(signed[-1]).reshape(h, w)
        ctx = _contexts(near, errs, earlier, coder.THRESHOLDS)
        coded = plane.ravel() - ((pred + 8) >> 4)
        for k in np.unique(ctx):
            bits += float(fit_logistic(coded[ctx.ravel() == k][None])[2][0]) + 16
        earlier = earlier + errs
    return bits


VARIANTS = ["blend8", "+ls6", "+ls12", "+irls12", "ls12 only", "nlms0.005", "nlms0.005s",
            "nlms0.01s", "nlms0.002s"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles per folder")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, the first the base"
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    print(f"{'folder':<22}" + "".join(f"{v:>11}" for v in variants) + "   (bits/subpixel)")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, args.tiles, seed=0)
        values = sum(t.size for t in sample)
        sizes = [sum(tile_bits(t, v) for t in sample) / values for v in variants]
        rel = "  ".join(f"{100 * (s / sizes[0] - 1):+.2f}%" for s in sizes[1:])
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}" + "".join(f"{s:>11.4f}" for s in sizes) + "   " + rel, flush=True)


if __name__ == "__main__":
    main()
