"""Probe for issue 18: the learned prior's mean corrected by a filter learnt while coding.

``tile_ls.py`` found that a normalised LMS filter over the neighbours' errors, learnt value
by value in the coder's step order, takes 0.7-3.6 % off the hand-made coder, where a
least-squares predictor fitted per tile takes under 0.5 %. This probe asks what it brings
to the shipped coder: on sampled 256-px tiles of every validation folder it runs the
encoder's analysis with the shipped prior, then walks the values in coding order (step,
plane, row; bands side by side) and adds to each value's prior mean the filter's output
``w . u``, where ``u`` holds the residuals (16 coded - prior mean) at the six neighbours,
the neighbours minus the rounded prediction, and, after the first plane, the first and
previous planes' residuals at the pixel. The filter is updated after each value (NLMS,
rate ``mu``). Every variant then fits its per-context shifts as the encoder does, and the
estimated bits are compared. Nothing here is a network: the decoder could run it value by
value after the prior's batched network, so the network stays batched.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/lms_prior.py --tiles 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import DATA, folder_table, tiles  # noqa: E402

from idfcompress.compiled import jit  # noqa: E402
from idfcompress.entropy.tables import FIT_MIN_LOGSCALE, HALF_WIDTHS, LOGSCALE_COUNT  # noqa: E402
from idfcompress.predictive import coder, lattice, online, packing, prior  # noqa: E402

RATES = [0.0, 0.002, 0.005, 0.01]


@jit()
def corrected(order, n, values, coded, mean, nbr, mu, reach):
    """Every value's prior mean plus the NLMS filter's output, the filter learnt in
    coding ``order`` (cells ``plane (n + 1) + 1 + pixel``), one filter per plane."""
    planes = coded.shape[0]
    taps = 14
    weights = np.zeros((planes, taps))
    resid = np.zeros((planes, n + 1))
    out = mean.copy()
    u = np.zeros(taps)
    for t in range(order.size):
        p = order[t] // (n + 1)
        j = order[t] % (n + 1) - 1
        rp = values[p, j + 1] - coded[p, j]
        for k in range(6):
            u[k] = resid[p, nbr[j, k]]
            u[6 + k] = 16.0 * (values[p, nbr[j, k]] - rp) if nbr[j, k] else 0.0
        u[12] = resid[0, j + 1] if p else 0.0
        u[13] = resid[p - 1, j + 1] if p else 0.0
        c = 0.0
        norm = 256.0
        for k in range(taps):
            c += weights[p, k] * u[k]
            norm += u[k] * u[k]
        out[p, j] = min(max(mean[p, j] + int(np.round(c)), -reach), reach)
        r = 16.0 * coded[p, j] - mean[p, j]
        resid[p, j + 1] = r
        g = mu * (r - c) / norm
        for k in range(taps):
            weights[p, k] += g * u[k]
    return out


@jit()
def one_rate(order, n, values, coded, mean, nbr, rate, init):
    """The integer filter (``predictive.online``) at one rate from weights ``init``
    (planes, TAPS): every value's corrected mean and the final weights."""
    planes = coded.shape[0]
    weights = init.copy()
    resid = np.zeros((planes, n + 1), dtype=np.int64)
    out = mean.copy()
    u = np.zeros(online.TAPS, dtype=np.int64)
    for t in range(order.size):
        p, j, r = online.walk(order[t], n, values, coded, mean, resid, nbr, u)
        c = online.output(weights[p], u)
        out[p, j] = online.corrected(mean[p, j], c)
        online.update(weights[p], u, r - c, rate, online.power(u))
    return out, weights


def prepared(tile: np.ndarray, learned: prior.Prior) -> tuple[list, tuple]:
    """The tile packed as the coder packs it, its analysis with the prior, and the arrays
    the filter takes: values, pixels by cell, coded values, prior means and log-scales,
    coding order and neighbour cells."""
    tile = packing.pack([tile], packing.choose([tile]))[0]
    planes, _ = coder.analyse(tile, learned=learned)
    h, w = sorted(tile.shape[:2], reverse=True)
    n, c = h * w, tile.shape[2]
    values = np.zeros((c, n + 1), dtype=np.int64)
    values[:, 1:] = coder.coded_planes(tile)
    arrays = [np.stack([getattr(p, k) for p in planes]).astype(np.int64)
              for k in ("coded", "mean", "scale")]  # fmt: skip
    order, _ = lattice.steps(h, w, c)
    return planes, (n, values, *arrays, order, lattice.neighbours(h, w))


def warm_start_bits(tile: np.ndarray, learned: prior.Prior) -> list[float]:
    """Per plane the fewest bits of: no filter, the filter from zero weights, the filter
    from the weights a first pass ended with (kept to 2^-8, 2 bytes each, counted), at
    rates 2^-8 and 2^-9; summed over the planes, for each of the three choices allowed."""
    planes, (n, values, coded, mean, _, order, nbr) = prepared(tile, learned)
    c = coded.shape[0]

    def plane_bits(m):
        return np.array([prior.fit_shifts(p.coded, m[i], p.scale, p.contexts)[3]
                         for i, p in enumerate(planes)])  # fmt: skip

    zero = np.zeros((c, online.TAPS), dtype=np.int64)
    off = plane_bits(mean)
    cold, final = one_rate(order, n, values, coded, mean, nbr, 8, zero)
    cold_bits = plane_bits(cold)
    start = (final + 128) // 256 * 256
    warm8 = plane_bits(one_rate(order, n, values, coded, mean, nbr, 8, start)[0]) + 16 * 14
    warm9 = plane_bits(one_rate(order, n, values, coded, mean, nbr, 9, start)[0]) + 16 * 14
    return [
        float(off.sum()),
        float(np.minimum(off, cold_bits).sum()),
        float(np.minimum.reduce([off, cold_bits, warm8]).sum()),
        float(np.minimum.reduce([off, cold_bits, warm8, warm9]).sum()),
    ]


def tile_bits(tile: np.ndarray, learned: prior.Prior, rates=RATES) -> list[float]:
    """The tile's estimated stream bits: float filter at each of ``RATES``, then the
    integer filter (``predictive.online``) with each plane's rate picked as the encoder
    would (its side cost, a byte per plane, counted)."""
    planes, (n, values, coded, mean, scale, order, nbr) = prepared(tile, learned)
    c = coded.shape[0]
    out = []
    for mu in rates:
        m = corrected(order, n, values, coded, mean, nbr, mu, 16 * 255) if mu else mean
        out.append(sum(
            prior.fit_shifts(p.coded, m[i], p.scale, p.contexts)[3] for i, p in enumerate(planes)
        ))  # fmt: skip
    costs, starts, sizes = prior.bin_costs()
    cand, cost = online.means(order, n, values, coded, mean, scale, nbr, costs, starts, sizes,
                              HALF_WIDTHS, FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1)  # fmt: skip
    pick = cost.argmin(1)
    out.append(8 * c + sum(
        prior.fit_shifts(p.coded, cand[pick[i], i], p.scale, p.contexts)[3]
        for i, p in enumerate(planes)
    ))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles per folder")
    parser.add_argument("--quick", action="store_true", help="the integer filter only")
    parser.add_argument("--warm", action="store_true", help="warm starts from a first pass")
    args = parser.parse_args()
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    if args.warm:
        names = ["off", "cold", "+warm 8", "+warm 9"]
        folder_table(names, lambda t: warm_start_bits(t, learned), args.tiles)
        return
    rates = [0.0] if args.quick else RATES
    names = [f"mu {mu:g}" for mu in rates] + ["best", "integer"]
    print(f"{'folder':<22}" + "".join(f"{v:>10}" for v in names) + "   (bits/subpixel)")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, args.tiles, seed=0)
        values = sum(t.size for t in sample)
        per_tile = np.array([tile_bits(t, learned, rates) for t in sample])
        best = (per_tile[:, : len(rates)].min(1) + 2).sum() / values
        sizes = list(per_tile[:, : len(rates)].sum(0) / values)
        sizes += [best, per_tile[:, -1].sum() / values]
        rel = "  ".join(f"{100 * (s / sizes[0] - 1):+.2f}%" for s in sizes[1:])
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}" + "".join(f"{s:>10.4f}" for s in sizes) + "   " + rel, flush=True)


if __name__ == "__main__":
    main()
