"""Probe for issue 18: adapt more of the prior to the image than two shifts per context?

Format 8 stores, per region, plane and context, a mean and a log-scale shift. This probe
lets the encoder refit the prior's whole output layer (32 x 2 weights and 2 biases) per
tile plane on that plane's own values, quantises it as the shipped layer is quantised,
fits the per-context shifts on top, and charges 16 bits per stored parameter. It prints the
estimated bits per subpixel (``prior.bits``) of format 8 and of the refit head, over
sampled 256-px tiles of every validation folder.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/tile_head.py --tiles 8
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from prior_ablation import DATA, tiles

from idfcompress.entropy.tables import FIT_MIN_LOGSCALE, LOGSCALE_COUNT, LOGSCALE_MIN, LOGSCALE_STEP
from idfcompress.predictive import coder, prior

HEAD_BITS = 16 * (prior.HIDDEN * 2 + 2)  # what storing one refit output layer costs


def hidden(net: prior.Prior, feats: np.ndarray) -> np.ndarray:
    """The integer activations that feed the output layer (``Prior.params`` up to there)."""
    h = feats
    for i in range(2):
        h = np.floor((h @ net.weights[i] + net.biases[i]) * 2.0 ** -net.shifts[i] + 0.5)
        h = np.clip(h, 0, prior.ACTIVATION_MAX)
    return h


def logistic(h: np.ndarray, w: np.ndarray, b: np.ndarray, shift: int, fraction: np.ndarray):
    """Integer mean (relative to the rounded prediction) and log-scale index of a head."""
    out = np.floor((h @ w + b) * 2.0**-shift + 0.5)
    mean = np.clip(out[:, 0], -prior.MEAN_REACH, prior.MEAN_REACH).astype(np.int64)
    return mean + fraction.astype(np.int64), out[:, 1].astype(np.int64) + prior.LOGSCALE_CENTRE


def refit(net: prior.Prior, h: np.ndarray, fraction: np.ndarray, coded: np.ndarray):
    """The output layer refit on these values (float, from the shipped one), quantised."""
    unit = 2.0 ** -net.shifts[2]
    w = torch.tensor(net.weights[2] * unit, requires_grad=True)
    b = torch.tensor(net.biases[2] * unit, requires_grad=True)
    ht, ft, xt = (torch.from_numpy(a.astype(np.float64)) for a in (h, fraction, coded))
    opt = torch.optim.Adam([w, b], lr=0.05 * float(np.abs(net.weights[2]).max() * unit))
    for _ in range(150):
        out = ht @ w + b
        mean = (ft + out[:, 0]) / 16.0
        g = torch.clamp(out[:, 1] + prior.LOGSCALE_CENTRE, FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1)
        inv = torch.exp(-(LOGSCALE_MIN + g * LOGSCALE_STEP))
        p = torch.sigmoid((xt + 0.5 - mean) * inv) - torch.sigmoid((xt - 0.5 - mean) * inv)
        loss = -torch.log2(torch.clamp(p, min=2.0**-24)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    wq = np.clip(np.rint(w.detach().numpy() / unit), -prior.WEIGHT_LIMIT, prior.WEIGHT_LIMIT)
    return wq, np.rint(b.detach().numpy() / unit)


def plane_bits(coded, mean, scale, contexts) -> float:
    return prior.fit_shifts(coded, mean, np.clip(scale, 0, LOGSCALE_COUNT - 1), contexts)[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=8, help="tiles per folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = prior.load_prior(prior.DEFAULT_PRIOR)
    print(f"{'folder':<22}{'format 8':>10}{'refit head':>12}  change")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, args.tiles, seed=0)
        values = sum(t.size for t in sample)
        base = head = 0.0
        for tile in sample:
            planes, _ = coder.analyse(tile, with_features=True, learned=net)
            for p in planes:
                assert p.features is not None and p.mean is not None and p.scale is not None
                base += plane_bits(p.coded, p.mean, p.scale, p.contexts)
                h = hidden(net, p.features)
                fraction = p.features[:, 18]
                w, b = refit(net, h, fraction, p.coded)
                mean, scale = logistic(h, w, b, net.shifts[2], fraction)
                head += min(plane_bits(p.coded, mean, scale, p.contexts) + HEAD_BITS,
                            plane_bits(p.coded, p.mean, p.scale, p.contexts) + 1)  # fmt: skip
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}{base / values:>10.4f}{head / values:>12.4f}  "
              f"{100 * (head / base - 1):+.2f} %", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
