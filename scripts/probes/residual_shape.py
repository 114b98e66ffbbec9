"""Probe for issue 18: is the logistic the right shape for what the coder codes?

Every value is coded with one grid logistic (mean and log-scale from the prior, the online
filter and the fitted shifts). If the residuals' shape differs (peakier, heavier tails), a
two-component mixture with the same mean, ``(1 - a) L(mu, c1 s) + a L(mu, c2 s)``, would
code them in fewer bits. On sampled 256-px tiles of every validation folder this probe
runs the encoder's analysis (prior, filter, shifts) and compares the float cost of the
values under the logistic with that under a grid of mixtures, one for all folders (what a
shipped family would be) and the best per folder (an upper bound).

``--means``: instead, a mixture of two means, the filter's and the prior's without it
(each with its own fitted shifts), ``(1 - a) L(mu_filter, s_f) + a L(mu_prior, s_p)``,
for fixed ``a`` and for ``a`` learnt while coding (per plane, in raster order, by the
gradient of the code length, as context-mixing coders do).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/residual_shape.py --tiles 24
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import DATA, tiles  # noqa: E402

from idfcompress.compiled import jit  # noqa: E402
from idfcompress.entropy.tables import LOGSCALE_MIN, LOGSCALE_STEP  # noqa: E402
from idfcompress.predictive import coder, packing, prior  # noqa: E402


def coded_values(tile: np.ndarray, learned: prior.Prior, filtered: bool = True):
    """The values as the encoder codes them: coded value, mean (levels) and scale (levels)
    per plane, with the online filter or without."""
    tile = packing.pack([tile], packing.choose([tile]))[0]
    planes, _ = coder.analyse(tile, learned=learned)
    if filtered:
        coder.correct_online(tile, planes)
    x, mu, s = [], [], []
    for p in planes:
        _, mean, scale, _ = prior.fit_shifts(p.coded, p.mean, p.scale, p.contexts)
        x.append(p.coded)
        mu.append(mean / 16.0)
        s.append(np.exp(LOGSCALE_MIN + LOGSCALE_STEP * scale))
    return x, mu, s


@jit()
def mixed_online(x, p1, p2, rate) -> float:
    """Bits of ``(1 - a) p1 + a p2`` with ``a`` learnt value by value (from 0.1, by the
    code length's gradient, kept in 0.01 .. 0.99)."""
    a, total = 0.1, 0.0
    for i in range(x.size):
        p = (1 - a) * p1[i] + a * p2[i]
        total -= np.log2(p)
        a = min(max(a + rate * (p2[i] - p1[i]) / p, 0.01), 0.99)
    return total


def means_main(args, learned) -> None:
    fixed = [0.05, 0.1, 0.2, 0.3]
    print(f"{'folder':<22}{'filter':>10}" + "".join(f"{'a ' + str(a):>9}" for a in fixed)
          + f"{'online':>9}")  # fmt: skip
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        total, parts = 0, np.zeros(len(fixed) + 2)
        for t in tiles(folder, args.tiles, seed=0):
            xf, mf, sf = coded_values(t, learned)
            _, mp, sp = coded_values(t, learned, filtered=False)
            for i in range(len(xf)):
                p1, p2 = logistic_p(xf[i], mf[i], sf[i]), logistic_p(xf[i], mp[i], sp[i])
                parts[0] -= np.log2(p1).sum()
                for k, a in enumerate(fixed):
                    parts[1 + k] -= np.log2((1 - a) * p1 + a * p2).sum()
                parts[-1] += mixed_online(xf[i], p1, p2, 0.002)
                total += xf[i].size
        rel = "".join(f"{100 * (b / parts[0] - 1):>+8.2f}%" for b in parts[1:])
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}{parts[0] / total:>10.4f}{rel}", flush=True)


def logistic_p(x, mu, s):
    def cdf(z):
        return 0.5 * (1 + np.tanh(z / 2))

    return np.maximum(cdf((x + 0.5 - mu) / s) - cdf((x - 0.5 - mu) / s), 1e-12)


def bits(x, mu, s, a, c1, c2) -> float:
    p = (1 - a) * logistic_p(x, mu, c1 * s) + a * logistic_p(x, mu, c2 * s)
    return float(-np.log2(np.maximum(p, 1e-12)).sum())


GRID = list(itertools.product([0.05, 0.1, 0.2, 0.3, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0],
                              [1.5, 2.0, 3.0, 4.0]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles per folder")
    parser.add_argument("--means", action="store_true", help="mix the filter's and prior's means")
    args = parser.parse_args()
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    if args.means:
        means_main(args, learned)
        return
    folders = sorted(p for p in DATA.glob("*/*") if p.is_dir())
    base, grid = {}, {}
    for folder in folders:
        parts = [coded_values(t, learned) for t in tiles(folder, args.tiles, seed=0)]
        x, mu, s = (np.concatenate([np.concatenate(a) for a in k])
                    for k in zip(*parts, strict=True))  # fmt: skip
        name = folder.parent.name + "/" + folder.name
        base[name] = bits(x, mu, s, 0.0, 1.0, 1.0) / x.size
        grid[name] = np.array([bits(x, mu, s, *g) / x.size for g in GRID])
        print(f"{name}: {x.size} values, logistic {base[name]:.4f} bits/value", flush=True)
    rel = np.array([grid[n] / base[n] - 1 for n in base])  # folders, grid
    shared = int(np.argmin(rel.mean(0)))
    print(f"\nshared mixture a, c1, c2 = {GRID[shared]}")
    print(f"{'folder':<22}{'logistic':>10}{'shared':>9}{'best':>9}  best a, c1, c2")
    for i, n in enumerate(base):
        b = int(np.argmin(rel[i]))
        print(f"{n:<22}{base[n]:>10.4f}{100 * rel[i, shared]:>+8.2f}%{100 * rel[i, b]:>+8.2f}%"
              f"  {GRID[b]}")  # fmt: skip


if __name__ == "__main__":
    main()
