"""Probe: per-value cost of the compiled prior (features + network) against numpy's.

Runs the encoder's analysis of one region, then times ``prior.features`` + ``Prior.params``
(numpy, BLAS) against ``kernel.logistics`` (numba) on the same values, and checks they agree.
Usage: .venv/bin/python scripts/probes/kernel_speed.py IMAGE
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PIL import Image

from idfcompress.predictive import coder, prior


def main() -> None:
    region = np.asarray(Image.open(sys.argv[1]).convert("RGB"))[:256, :256]
    planes, _ = coder.analyse(region, with_features=True)
    net = prior.load_prior(prior.DEFAULT_PRIOR)
    feats = np.concatenate([p.features for p in planes])
    t = time.perf_counter()
    mean, scale = net.logistic(feats)
    numpy_s = time.perf_counter() - t
    print(f"numpy network only: {numpy_s / feats.shape[0] * 1e9:.0f} ns/value")
    for _ in range(2):
        t = time.perf_counter()
        planes, _ = coder.analyse(region, learned=net)
        kernel_s = time.perf_counter() - t
    t = time.perf_counter()
    coder.analyse(region)
    kernel_s -= time.perf_counter() - t
    m = np.concatenate([p.mean for p in planes])
    s = np.concatenate([p.scale for p in planes])
    print(f"kernel features + network: {kernel_s / m.size * 1e9:.0f} ns/value")
    print("agree:", np.array_equal(m, mean), np.array_equal(s, scale))


if __name__ == "__main__":
    main()
