"""Probe for issue 18: what do the band and tile edges cost the coder?

The coder codes each 256-px tile on its own, in bands of ``lattice.BAND`` rows coded side
by side, so a band's first rows have no decoded pixels above them and a tile's first column
none to the left. On sampled 256-px tiles of every validation folder (the encoder's
analysis: prior, filter, shifts) this probe splits each value's cost (float logistic bits)
by where it sits: a band's first row, its second row, a tile's first two columns, the
rest; and reports how much smaller the file would be if those values cost what the rest do.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/boundary_cost.py --tiles 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import DATA, tiles  # noqa: E402
from residual_shape import coded_values, logistic_p  # noqa: E402

from idfcompress.predictive import lattice, prior  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=24, help="tiles per folder")
    args = parser.parse_args()
    learned = prior.load_prior(prior.DEFAULT_PRIOR)
    names = ["band row 0", "band row 1", "columns 0-1", "rest"]
    print(f"{'folder':<22}" + "".join(f"{n:>12}" for n in names) + "  share  if as the rest")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sums, counts = np.zeros(4), np.zeros(4)
        for t in tiles(folder, args.tiles, seed=0):
            if t.shape[:2] != (256, 256):
                continue
            x, mu, s = coded_values(t, learned)
            row, col = np.mgrid[0:256, 0:256]
            where = np.full((256, 256), 3)
            where[col < 2] = 2
            where[row % lattice.BAND == 1] = 1
            where[row % lattice.BAND == 0] = 0
            for i in range(len(x)):
                b = -np.log2(logistic_p(x[i], mu[i], s[i]))
                sums += np.bincount(where.ravel(), b, 4)
                counts += np.bincount(where.ravel(), minlength=4)
        mean = sums / counts
        saved = ((mean[:3] - mean[3]) * counts[:3]).sum() / sums.sum()
        share = counts[:3].sum() / counts.sum()
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}" + "".join(f"{m:>12.3f}" for m in mean)
              + f"  {100 * share:.1f}%  -{100 * saved:.2f}%", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
