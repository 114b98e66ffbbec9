#!/usr/bin/env python3
"""Speed of exact integer arithmetic against float32 networks with the same weights.

Encodes and decodes each image with a shipped (exact) model, then again with its networks
switched to plain float32 (the same weights, no clamping or rounding), for each thread count,
and prints a markdown table of megapixels per second. The float files are only timed: they
would not decode on another machine (docs/FORMAT.md, arithmetic 2).

  OMP_WAIT_POLICY=PASSIVE python scripts/arithmetic_bench.py ../shared/data/val/rgb/mcmaster \\
      --limit 6 --threads 1 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from idfcompress.codec import decoder, encoder
from idfcompress.flow.loading import load_model
from idfcompress.flow.store import default_model_name
from idfcompress.imageio import read_image
from idfcompress.training import image_files


def _time(images, model: str, repeats: int) -> tuple[float, float, int]:
    """(encode s, decode s, bytes) summed over the images, best of ``repeats``."""
    enc = dec = 0.0
    size = 0
    for image in images:
        best_e = best_d = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            data, _ = encoder.encode(image, model=model)
            best_e = min(best_e, time.perf_counter() - start)
            start = time.perf_counter()
            out = decoder.decode(data)
            best_d = min(best_d, time.perf_counter() - start)
            assert np.array_equal(out.pixels, image.pixels)
        enc += best_e
        dec += best_d
        size += len(data)
    return enc, dec, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--model", default=None, help="model name (default: the RGB default)")
    parser.add_argument("--limit", type=int, default=None, help="first N images")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    files = image_files(args.paths)[: args.limit]
    images = [read_image(Path(f)) for f in files]
    model = args.model or default_model_name(3)
    nets = load_model(model).flow.conv_nets()
    megapixels = sum(i.width * i.height for i in images) / 1e6
    print(f"{len(images)} images, {megapixels:.2f} MP, model {model}, "
          f"best of {args.repeats}\n")  # fmt: skip
    print("| arithmetic | threads | encode MP/s | decode MP/s | bytes |")
    print("|---|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for arithmetic, exact in (("exact-int24", True), ("float32", False)):
            for net in nets:
                net.quantized.fill_(exact)
            try:
                enc, dec, size = _time(images, model, args.repeats)
            finally:
                for net in nets:
                    net.quantized.fill_(True)
            print(f"| {arithmetic} | {threads} | {megapixels / enc:.3f} | "
                  f"{megapixels / dec:.3f} | {size} |")  # fmt: skip


if __name__ == "__main__":
    main()
