"""Probe: should the online filter learn less from values the prior calls uncertain?

The filter (``predictive.online``) moves every weight by a normalised LMS step on each
value's residual, however noisy the prior says the value is; on a noisy value the step is
mostly noise. Float copies of the filter on sampled 256-px tiles of every folder, then the
shifts by scale fitted as format 11's encoder does (estimated bits, each plane taking the
filter or none):

- ``base``: the built filter (rate 2^-8);
- ``clip 2s`` / ``clip 4s``: the residual the filter learns from clipped to 2 or 4 times the
  prior's scale;
- ``weight``: the step times ``s0 / (s0 + s)``, ``s`` the prior's scale and ``s0`` 8 levels
  (twice the rate, so that a value of scale ``s0`` learns as before).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/filter_scale.py --tiles 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filter_variants import dot, gather, nlms  # noqa: E402
from lms_prior import prepared  # noqa: E402
from prior_ablation import folder_table  # noqa: E402

from idfcompress.compiled import jit  # noqa: E402
from idfcompress.entropy.tables import LOGSCALE_MIN, LOGSCALE_STEP  # noqa: E402
from idfcompress.predictive import kernel, prior  # noqa: E402

VARIANTS = {"base": (0.0, 0), "clip 2s": (2.0, 0), "clip 4s": (4.0, 0), "weight": (0.0, 1)}


@jit()
def corrected(order, n, values, coded, mean, scale16, nbr, clip, weight):
    """Every value's prior mean plus the filter's correction, learnt in coding ``order``;
    ``scale16``: each value's prior scale in sixteenths."""
    planes = coded.shape[0]
    w = np.zeros((planes, 14))
    resid = np.zeros((planes, n + 1))
    out = mean.copy()
    u = np.zeros(14)
    for t in range(order.size):
        p = order[t] // (n + 1)
        j = order[t] % (n + 1) - 1
        gather(u, values, coded, resid, nbr, p, j)
        r = 16.0 * coded[p, j] - mean[p, j]
        corr = dot(w[p], u, 14)
        e = r - corr
        mu = 1 / 256
        if clip > 0:
            bound = clip * scale16[p, j]
            e = min(max(e, -bound), bound)
        if weight:
            mu = 2 / 256 * 128.0 / (128.0 + scale16[p, j])
        nlms(w[p], u, 14, e, mu)
        out[p, j] = min(max(mean[p, j] + int(np.round(corr)), -4080), 4080)
        resid[p, j + 1] = r
    return out


def tile_bits(tile: np.ndarray, learned: prior.Prior) -> list[float]:
    planes, (n, values, coded, mean, scale, order, nbr) = prepared(tile, learned)
    scale16 = 16.0 * np.exp(LOGSCALE_MIN + LOGSCALE_STEP * scale.astype(np.float64))

    def plane_bits(m):
        return np.array([prior.fit_shifts(p.coded, m[i], p.scale, kernel.scale_contexts(p.scale))[3]
                         for i, p in enumerate(planes)])  # fmt: skip

    off = plane_bits(mean)
    out = [float(off.sum())]
    for clip, weight in VARIANTS.values():
        bits = plane_bits(corrected(order, n, values, coded, mean, scale16, nbr, clip, weight))
        out.append(float(np.minimum(off, bits).sum()) + 8 * len(planes))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles per folder")
    args = parser.parse_args()
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    names = ["off", *VARIANTS]
    folder_table(names, lambda t: tile_bits(t, learned), args.tiles, base=1, note="; vs base")


if __name__ == "__main__":
    main()
