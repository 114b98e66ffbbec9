"""Probe: what the default tile size costs. Tiles are coded independently (threads, memory
bounded by the tile), so each tile's edges lack context, its online filter starts from
zero and its context tables are paid again; larger tiles pay that less often.

On up to ``--images`` images per validation folder (seeded), each cut to at most ``--side``
px a side, this probe compresses whole files (the public API) at each ``--sizes`` tile size
and prints bits per subpixel per folder and each size relative to the first.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/tile_size.py --images 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coarse_first import image_of  # noqa: E402
from prior_ablation import DATA, SUFFIXES  # noqa: E402

import idfcompress  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="images per folder")
    parser.add_argument("--side", type=int, default=1024, help="crop to at most this side")
    parser.add_argument("--sizes", default="256,512", help="tile sizes, the first the base")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'folder':<22}" + "".join(f"{f'T={s}':>10}" for s in sizes) + "   (bits/subpixel)")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
        rng = np.random.default_rng(args.seed)
        chosen = rng.choice(len(paths), min(args.images, len(paths)), replace=False)
        totals, subpixels, seconds = np.zeros(len(sizes)), 0, np.zeros(len(sizes))
        for i in sorted(chosen):
            image = image_of(paths[i], args.side)
            image = image[:, :, 0] if image.shape[2] == 1 else image
            subpixels += image.size
            for k, size in enumerate(sizes):
                start = time.perf_counter()
                totals[k] += 8 * len(idfcompress.compress(image, tile_size=size))
                seconds[k] += time.perf_counter() - start
        bpsp = totals / subpixels
        rel = "  ".join(f"{100 * (b / bpsp[0] - 1):+.2f}%" for b in bpsp[1:])
        speed = " ".join(f"{subpixels / max(s, 1e-9) / 1e6:.2f}" for s in seconds)
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}" + "".join(f"{b:>10.4f}" for b in bpsp) + f"   {rel}"
              f"   (encode Msubpixel/s {speed})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
