"""Probe: the encoder's shift search on a sample of each context's values. The search is
about a fifth of the encoder's time (1 MP, one thread); comparing the costs of every k-th
value of a large context (the total still counted on all) costs it k times less. What
does that cost in bytes? Real payloads of sampled tiles of every validation folder, per
``--samples`` k, and the encoder's time.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/shift_sample.py --tiles 24
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prior_ablation import folder_table  # noqa: E402

from idfcompress.predictive import prior, regions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=24, help="sampled tiles per folder")
    parser.add_argument("--samples", default="1,2,4,8", help="k values, the first the base")
    args = parser.parse_args()
    samples = [int(k) for k in args.samples.split(",")]
    seconds = dict.fromkeys(samples, 0.0)

    def tile_bits(tile):
        out = []
        for k in samples:
            prior.SHIFT_SAMPLE = k
            start = time.perf_counter()
            out.append(8 * len(regions.encode_regions([tile])))
            seconds[k] += time.perf_counter() - start
        return out

    folder_table([f"k={k}" for k in samples], tile_bits, args.tiles)
    print("encode seconds: " + ", ".join(f"k={k} {s:.1f}" for k, s in seconds.items()))


if __name__ == "__main__":
    main()
