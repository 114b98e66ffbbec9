"""Probe for issue 18: does the prior gain from its neighbours' signed residuals?

prior-1 sees the neighbours' absolute prediction errors, never their signs, so it cannot
follow a local bias (a residual that repeats from W or N). This trains the float network
twice at equal CPU time, on the same sampled values of ../shared/data/train: with the 25
features of ``prior.features``, and with those plus the signed square roots of the six
neighbours' coded residuals (16 x (value - rounded prediction) at W, N, NW, NE, WW, NN),
31 inputs. It prints the validation bits per value of both (values sampled from every
folder of ../shared/data/val).

    .venv/bin/python scripts/probes/signed_context.py --prepare        # samples, once
    OMP_NUM_THREADS=1 .venv/bin/python scripts/probes/signed_context.py --features 25 --minutes 15 &
    OMP_NUM_THREADS=1 .venv/bin/python scripts/probes/signed_context.py --features 31 --minutes 15
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_prior import DATA, ROOT, Net, bits, image_files, samples  # noqa: E402

from idfcompress.predictive import coder, lattice, prior  # noqa: E402

RUN = ROOT / "runs" / "signed-context"


def tile_features(tile: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per plane: the 31 features of every value and its coded residual."""
    planes, _ = coder.analyse(tile, with_features=True)
    h, w = sorted(tile.shape[:2], reverse=True)  # coded transposed when wider than tall
    nbr = lattice.neighbours(h, w)
    out = []
    for p in planes:
        assert p.features is not None
        cells = np.concatenate([[0], 16 * p.coded])
        extra = prior.signed_root(cells[nbr]).astype(np.float64)
        out.append((np.concatenate([p.features, extra], axis=1), p.coded))
    return out


def train(data: dict, inputs: int, minutes: float, lr: float = 2e-3) -> list:
    torch.manual_seed(0)
    tf, tc = torch.from_numpy(data["tf"][:, :inputs]), torch.from_numpy(data["tc"])
    vf, vc = torch.from_numpy(data["vf"][:, :inputs]), torch.from_numpy(data["vc"])
    net = Net(prior.HIDDEN, inputs)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    begin = time.monotonic()
    curve, steps = [], 0
    while (elapsed := time.monotonic() - begin) < 60 * minutes:
        for group in opt.param_groups:  # cosine decay over the run's clock
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * elapsed / (60 * minutes)))
        pick = torch.randint(0, tc.numel(), (8192,), generator=gen)
        loss = bits(net, tf[pick], tc[pick]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if steps % 500 == 0:
            with torch.no_grad():
                val = float(bits(net, vf, vc).mean())
            curve.append([steps, round(elapsed / 3600, 4), round(val, 5)])
            print(f"{inputs} features: step {steps} val {val:.4f}", flush=True)
    with torch.no_grad():
        curve.append([steps, round((time.monotonic() - begin) / 3600, 4),
                      round(float(bits(net, vf, vc).mean()), 5)])  # fmt: skip
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="sample the values, then stop")
    parser.add_argument("--features", type=int, choices=[prior.FEATURES, prior.FEATURES + 6])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--per-plane", type=int, default=600)
    args = parser.parse_args()
    RUN.mkdir(parents=True, exist_ok=True)
    cache = RUN / "samples.npz"
    if args.prepare:
        started = time.monotonic()
        train_set = samples(image_files(DATA / "train"), args.per_plane, 0.3, 1, tile_features)
        val_set = samples(image_files(DATA / "val"), 200, 0.0, 2, tile_features)
        np.savez(cache, tf=train_set["features"], tc=train_set["coded"],
                 vf=val_set["features"], vc=val_set["coded"])  # fmt: skip
        print(f"{train_set['coded'].size} training, {val_set['coded'].size} validation values "
              f"in {time.monotonic() - started:.0f} s")  # fmt: skip
        return
    curve = train(dict(np.load(cache)), args.features, args.minutes)
    (RUN / f"curve-{args.features}.json").write_text(json.dumps(curve) + "\n")
    print(f"{args.features} features: {curve[-1][0]} steps, validation {curve[-1][2]:.4f} bits")


if __name__ == "__main__":
    main()
