"""Probe: which partition should the per-context shifts use? Until format 10 a value's
context (16 per plane) binned its neighbours' prediction errors, and the shifts moved the
prior's logistics per bin, fitted per region. The network already predicts a scale per
value; binning by that scale (which the decoder knows too) partitions the values where the
prior is mis-calibrated on this image better. Estimated bits (the shift search's cost) of
sampled tiles of every folder, after the prior and the online filter, for: the hand-made
contexts; 16 bins of the network's log-scale index (``--edges``: first edge / bin width);
8 scale bins x whether the prior moves the mean by more than a level; and the better of
the contexts and the first bins per plane (one bit each).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/scale_contexts.py --tiles 40
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import folder_table  # noqa: E402

from idfcompress.predictive import coder, packing, prior  # noqa: E402


def partitions(p, edges: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each value's bin (0 .. 15) under each candidate partition."""
    scale = p.scale.astype(np.int64)
    bins = [np.clip((scale - low) // width, 0, 15) for low, width in edges]
    moved = (np.abs(p.mean.astype(np.int64)) > 16).astype(np.int64)
    return [p.contexts, *bins, np.clip((scale - 20) // 10, 0, 7) * 2 + moved]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=40, help="sampled tiles per folder")
    parser.add_argument("--edges", default="20/5,28/4,24/8", help="first edge/width, ...")
    args = parser.parse_args()
    edges = [tuple(int(v) for v in e.split("/")) for e in args.edges.split(",")]
    learned = prior.load_prior(prior.DEFAULT_PRIOR)

    def tile_bits(tile):
        tile = packing.pack([tile], packing.choose([tile]))[0]
        planes, _ = coder.analyse(tile, learned=learned)
        coder.correct_online(tile, planes)
        out = np.zeros(len(edges) + 3)
        for p in planes:
            bits = [prior.fit_shifts(p.coded, p.mean, p.scale, c)[3] for c in partitions(p, edges)]
            out[:-1] += bits
            out[-1] += min(bits[0], bits[1]) + 1
        return out

    names = ["contexts", *(f"{a}/{w}" for a, w in edges), "8x2", "choice"]
    folder_table(names, tile_bits, args.tiles)


if __name__ == "__main__":
    main()
