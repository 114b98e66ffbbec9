"""Probe: can the coarse level sort the values for the shifts? Format 11 fits each region's
shifts per bin of the prior's log-scale. The coarse level (every 8th pixel, known before a
tile) says where the image changes between the values already decoded and the ones below
and to the right: ``d``, the level's bilinear interpolation at the pixel minus the rounded
prediction. Estimated bits of sampled tiles of every folder (prior, online filter, shifts
fitted per bin) for: the 16 scale bins; 8 scale bins x ``|d| > 2 s`` (``s`` the prior's
scale); 8 x ``|d| > 4`` levels; 4 scale bins x 4 bins of ``|d| / s`` (1, 2, 4).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/coarse_partition.py --tiles 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filter_variants import interpolated  # noqa: E402
from prior_ablation import folder_table  # noqa: E402

from idfcompress.entropy.tables import LOGSCALE_MIN, LOGSCALE_STEP  # noqa: E402
from idfcompress.predictive import coder, kernel, packing, prior  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=24, help="sampled tiles per folder")
    args = parser.parse_args()
    learned = prior.load_prior(prior.DEFAULT_PRIOR)

    def tile_bits(tile):
        t = packing.pack([tile], packing.choose([tile]))[0]
        planes, _ = coder.analyse(t, learned=learned)
        coder.correct_online(t, planes)
        h, w = sorted(t.shape[:2], reverse=True)
        values = np.zeros((t.shape[2], h * w + 1), dtype=np.int64)
        values[:, 1:] = coder.coded_planes(t)
        interp = interpolated(values, h, w)
        out = np.zeros(4)
        for i, p in enumerate(planes):
            s = np.exp(LOGSCALE_MIN + LOGSCALE_STEP * p.scale.astype(np.float64))
            d = np.abs(interp[i, 1:] - (values[i, 1:] - p.coded))
            bins = kernel.scale_contexts(p.scale)
            parts = [bins, bins // 2 * 2 + (d > 2 * s), bins // 2 * 2 + (d > 4),
                     bins // 4 * 4 + np.digitize(d / s, [1, 2, 4])]  # fmt: skip
            out += [prior.fit_shifts(p.coded, p.mean, p.scale, c.astype(np.int64))[3]
                    for c in parts]  # fmt: skip
        return out

    folder_table(["scale", "s8x|d|>2s", "s8x|d|>4", "s4x4"], tile_bits, args.tiles)


if __name__ == "__main__":
    main()
