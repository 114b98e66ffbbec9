"""Probe for issue 18: does adapting the prior online, while decoding, pay on top of the
per-context shifts the encoder fits and stores?

For sampled 256-px tiles of every validation folder this takes the shipped prior's logistic
of every value, moved by the fitted per-context shifts (what format 8 codes), and walks the
values in the decoder's step order. Each variant keeps running sums per online context,
updated after every step from the values already decoded (so a decoder could do the same),
and moves each value's mean by the running mean residual and its log-scale by the log of
the running ratio of observed to expected absolute residual. Sums are halved when a count
reaches ``--window``. It prints the estimated bits per subpixel (``prior.bits``) of format 8
and of each variant; floats here, since only the size matters for the decision.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/online_adaptation.py --tiles 20
"""

from __future__ import annotations

import argparse
import math

import numba
import numpy as np
from prior_ablation import DATA, tiles

from idfcompress.entropy.tables import FIT_MIN_LOGSCALE, LOGSCALE_COUNT, LOGSCALE_STEP
from idfcompress.predictive import coder, lattice, prior

CLIP = 16.0  # residuals (sixteenths) are clipped to a pixel in the running mean
_ABS_MEAN = 2 * math.log(2)  # E|x| of a logistic of scale 1


@numba.njit(cache=True)
def walk(coded, mean, scale, ctx, bounds, contexts, window, do_mean, do_scale, lo, hi, step, clip):
    """The means and log-scale indices after online correction, values in step order."""
    n = coded.size
    out_mean = mean.copy()
    out_scale = scale.copy()
    s_res = np.zeros(contexts)
    s_abs = np.zeros(contexts)
    s_exp = np.zeros(contexts)
    count = np.zeros(contexts)
    start = 0
    for k in range(bounds.size + 1):
        end = bounds[k] if k < bounds.size else n
        for v in range(start, end):
            c = ctx[v]
            if count[c] >= 4:
                if do_mean:
                    out_mean[v] = mean[v] + int(np.rint(s_res[c] / count[c]))
                if do_scale and s_exp[c] > 0 and s_abs[c] > 0:
                    dl = int(np.rint(np.log(s_abs[c] / s_exp[c]) / step))
                    out_scale[v] = min(max(scale[v] + dl, lo), hi)
        for v in range(start, end):
            c = ctx[v]
            r = 16.0 * coded[v] - out_mean[v]
            s_res[c] += min(max(16.0 * coded[v] - mean[v], -clip), clip)
            s_abs[c] += abs(r) / 16.0 + 0.25
            s_exp[c] += _ABS_MEAN * np.exp(-3.0 + out_scale[v] * step)
            count[c] += 1
            if count[c] >= window:
                s_res[c] /= 2
                s_abs[c] /= 2
                s_exp[c] /= 2
                count[c] /= 2
        start = end
    return out_mean, out_scale


def tile_bits(region: np.ndarray, net: prior.Prior, window: int) -> dict[str, float]:
    """Estimated bits of one tile under format 8 and the online variants."""
    planes, _ = coder.analyse(region, learned=net)
    h, w = sorted(region.shape[:2], reverse=True)  # coded transposed when wider than tall
    c = region.shape[2]
    fits = [prior.fit_shifts(p.coded, p.mean, p.scale, p.contexts) for p in planes]
    coded = np.concatenate([p.coded for p in planes])
    mean = np.concatenate([f[1] for f in fits])
    scale = np.concatenate([f[2] for f in fits])
    context = np.concatenate([i * coder.CONTEXTS + p.contexts for i, p in enumerate(planes)])
    order, bounds = lattice.steps(h, w, c)
    plane, cell = np.divmod(order, h * w + 1)
    at = plane * (h * w) + cell - 1
    coded, mean, scale, context, plane = coded[at], mean[at], scale[at], context[at], plane
    raw_mean = np.concatenate([p.mean for p in planes])[at]
    raw_scale = np.clip(
        np.concatenate([p.scale for p in planes])[at], FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1
    )
    out = {
        "format 8": prior.bits(coded, mean, scale),
        "no shifts": prior.bits(coded, raw_mean, raw_scale),
    }
    scale_bin = plane * LOGSCALE_COUNT + scale
    both = context * 10 + np.clip(scale // 16, 0, 9)
    variants = {
        "online only": (context, True, True),
        "mean/ctx": (context, True, False),
        "m+s/ctx": (context, True, True),
        "m+s/scale": (scale_bin, True, True),
        "m+s/ctx*scale": (both, True, True),
    }
    for name, (ctx, do_mean, do_scale) in variants.items():
        ids = np.unique(ctx, return_inverse=True)[1].astype(np.int64)
        base_mean, base_scale = (raw_mean, raw_scale) if name == "online only" else (mean, scale)
        m, g = walk(
            coded, base_mean, base_scale, ids, bounds.astype(np.int64), int(ids.max()) + 1, window,
            do_mean, do_scale, FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1, LOGSCALE_STEP, CLIP,
        )  # fmt: skip
        out[name] = prior.bits(coded, m, g)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=20, help="tiles per folder")
    parser.add_argument("--window", type=int, default=256, help="counts are halved here")
    args = parser.parse_args()
    net = prior.load_prior(prior.DEFAULT_PRIOR)
    header = None
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, args.tiles, seed=0)
        values = sum(t.size for t in sample)
        totals: dict[str, float] = {}
        for t in sample:
            for name, bits in tile_bits(t, net, args.window).items():
                totals[name] = totals.get(name, 0.0) + bits
        if header is None:
            header = list(totals)
            print(f"{'folder':<22}" + "".join(f"{n:>15}" for n in header))
        base = totals["format 8"]
        row = "".join(f"{v / values:>9.4f} {100 * (v / base - 1):+5.1f}" for v in totals.values())
        print(f"{folder.parent.name + '/' + folder.name:<22}{row}", flush=True)


if __name__ == "__main__":
    main()
