#!/usr/bin/env python3
"""Train the predictive coder's learned prior (idfcompress.predictive.prior) on the CPU.

Samples values of 256-px tiles of the training photos (30 % of them as luma) with the real
coder's features (``coder.analyse``) and the online filter's correction of each value's
mean as the encoder makes it with the starting prior (``--init-from``, else the default
prior), trains the float network on their code length under the discretized logistic of
its mean plus that correction, and writes the integer prior and its model card:

  OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/train_prior.py --minutes 40 \\
      --out models/prior-1 [--init-from models/prior-1.safetensors | runs/prior/checkpoint.pt]

The run keeps runs/prior/checkpoint.pt (float weights, optimiser, curve) every few minutes
and resumes from it with --resume. The validation curve is the mean bits per value of
values sampled from every folder of ../shared/data/val, in float and at the end in the
integer prior.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from idfcompress.entropy.tables import FIT_MIN_LOGSCALE, LOGSCALE_COUNT, LOGSCALE_MIN, LOGSCALE_STEP
from idfcompress.predictive import coder, prior

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".jpg"}
INPUT_SCALE = 16.0


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)


def load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        mode = "L" if image.mode in ("L", "I;16", "I", "1", "LA") else "RGB"
        pixels = np.asarray(image.convert(mode))
    return np.ascontiguousarray(pixels if pixels.ndim == 3 else pixels[:, :, None])


def filtered_view(tile: np.ndarray, start: prior.Prior) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per plane of a tile: the prior's features of every value, then one more column, the
    online filter's correction of its mean (sixteenths) as the encoder makes it with the
    prior ``start``; and its coded residual."""
    planes, _ = coder.analyse(tile, with_features=True, learned=start)
    before = [p.mean for p in planes]
    coder.correct_online(tile, planes)
    out = []
    for p, mean in zip(planes, before, strict=True):
        assert p.features is not None and p.mean is not None and mean is not None
        out.append((np.concatenate([p.features, (p.mean - mean)[:, None]], axis=1), p.coded))
    return out


def samples(
    paths: list[Path], per_plane: int, grey_share: float, seed: int,
    view: Callable[[np.ndarray], list[tuple[np.ndarray, np.ndarray]]],
) -> dict:  # fmt: skip
    """Features, coded values of sampled values of every 256-px tile of the images (``view``
    gives a tile's features and coded values per plane)."""
    rng = np.random.default_rng(seed)
    feats, coded = [], []
    for path in paths:
        pixels = load(path)
        if pixels.shape[2] == 3 and rng.random() < grey_share:
            luma = pixels.astype(np.int64) @ np.array([299, 587, 114]) // 1000
            pixels = luma.astype(np.uint8)[:, :, None]
        for y in range(0, pixels.shape[0], 256):
            for x in range(0, pixels.shape[1], 256):
                for f, c in view(pixels[y : y + 256, x : x + 256]):
                    pick = rng.choice(c.size, min(per_plane, c.size), replace=False)
                    feats.append(f[pick].astype(np.float32))
                    coded.append(c[pick].astype(np.float32))
    return {"features": np.concatenate(feats), "coded": np.concatenate(coded)}


class Net(nn.Module):
    def __init__(self, hidden: int = prior.HIDDEN, inputs: int = prior.FEATURES) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(inputs, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2)]
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h = f[:, : self.layers[0].in_features] / INPUT_SCALE
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < 2:
                h = torch.relu(h)
        return h


def bits(net: Net, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bits of each coded value under the network's discretized logistic (its mean moved by
    the online filter's correction where ``f`` has that column after the features)."""
    out = net(f)
    mean = f[:, 18] + out[:, 0]  # sixteenths, relative to the rounded prediction
    if f.shape[1] > prior.FEATURES:
        mean = mean + f[:, prior.FEATURES]
    mean = mean / 16.0
    g = torch.clamp(out[:, 1] + prior.LOGSCALE_CENTRE, FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1)
    inv = torch.exp(-(LOGSCALE_MIN + g * LOGSCALE_STEP))
    upper = torch.sigmoid((x + 0.5 - mean) * inv)
    lower = torch.sigmoid((x - 0.5 - mean) * inv)
    return -torch.log2(torch.clamp(upper - lower, min=2.0**-24))


def integer_bits(p: prior.Prior, f: np.ndarray, x: np.ndarray) -> float:
    mean, scale = p.logistic(f[:, : prior.FEATURES].astype(np.float64))
    if f.shape[1] > prior.FEATURES:
        mean = mean + f[:, prior.FEATURES].astype(np.int64)
    scale = np.clip(scale, FIT_MIN_LOGSCALE, LOGSCALE_COUNT - 1)
    return prior.bits(x.astype(np.int64), mean, scale) / x.size


def to_prior(net: Net) -> prior.Prior:
    ws = [layer.weight.detach().double().numpy().T for layer in net.layers]
    bs = [layer.bias.detach().double().numpy() for layer in net.layers]
    return prior.quantize(ws, bs, INPUT_SCALE)


def from_prior(net: Net, p: prior.Prior) -> None:
    """Float weights equal to an integer prior's (to continue training a shipped one)."""
    scale_in = [np.log2(INPUT_SCALE), prior.ACTIVATION_BITS, prior.ACTIVATION_BITS]
    scale_out = [prior.ACTIVATION_BITS, prior.ACTIVATION_BITS, 0]
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            bits_w = p.shifts[i] + scale_out[i] - scale_in[i]
            layer.weight.copy_(torch.from_numpy(p.weights[i].T / 2.0**bits_w))
            layer.bias.copy_(torch.from_numpy(p.biases[i] / 2.0 ** (bits_w + scale_in[i])))


def _shown(folder: Path) -> str:
    """A data folder as the card shows it: relative to the repository where it can be."""
    try:
        return "../" + str(folder.resolve().relative_to(ROOT.parent))
    except ValueError:
        return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "prior-1")
    parser.add_argument("--init-from", type=Path, help="a prior .safetensors or a checkpoint")
    parser.add_argument("--resume", action="store_true", help="continue runs/prior/checkpoint.pt")
    parser.add_argument("--per-plane", type=int, default=1500, help="values sampled per tile plane")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--sample-seed", type=int, default=1,
                        help="seed of the training values' sampling (the validation "
                        "values' stays fixed)")  # fmt: skip
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "prior",
                        help="checkpoint and sample cache (samples.npz) of this run")
    parser.add_argument("--train", type=Path, default=DATA / "train", help="training images")
    parser.add_argument("--val", type=Path, default=DATA / "val", help="validation images")
    parser.add_argument("--hidden", type=int, default=prior.HIDDEN,
                        help="hidden width; other than the format's "
                        f"{prior.HIDDEN} it is a float probe: curve only, no prior written")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.run.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cache = args.run / "samples.npz"
    start = None
    if args.init_from and args.init_from.suffix != ".pt":
        start = prior.load_file(args.init_from)
    view = functools.partial(filtered_view, start=start or prior.load_prior(prior.DEFAULT_PRIOR))
    if cache.is_file():
        data = dict(np.load(cache))
    else:
        train = samples(
            image_files(args.train), args.per_plane, 0.3, seed=args.sample_seed, view=view
        )
        val = samples(image_files(args.val), 400, 0.0, seed=2, view=view)
        data = {"tf": train["features"], "tc": train["coded"], "vf": val["features"],
                "vc": val["coded"]}  # fmt: skip
        np.savez(cache, **data)
    print(f"{data['tc'].size} training and {data['vc'].size} validation values "
          f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    tf, tc = torch.from_numpy(data["tf"]), torch.from_numpy(data["tc"])
    vf, vc = torch.from_numpy(data["vf"]), torch.from_numpy(data["vc"])
    net = Net(args.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    state = {"steps": 0, "seconds": 0.0, "curve": []}
    checkpoint = args.run / "checkpoint.pt"
    if args.resume and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
    elif args.init_from and args.init_from.suffix == ".pt":
        net.load_state_dict(torch.load(args.init_from, weights_only=False)["net"])
    elif start is not None:
        from_prior(net, start)
    gen = torch.Generator().manual_seed(state["steps"])
    begin = time.monotonic()
    end = begin + 60 * args.minutes
    last_save = begin
    sched_total = 60 * args.minutes
    while time.monotonic() < end:
        frac = (time.monotonic() - begin) / sched_total
        for group in opt.param_groups:  # cosine decay over the run's clock
            group["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))
        pick = torch.randint(0, tc.numel(), (8192,), generator=gen)
        loss = bits(net, tf[pick], tc[pick]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["steps"] += 1
        if state["steps"] % 500 == 0:
            with torch.no_grad():
                val_bits = float(bits(net, vf, vc).mean())
            hours = (state["seconds"] + time.monotonic() - begin) / 3600
            state["curve"].append([state["steps"], round(hours, 4), round(val_bits, 5)])
            print(f"step {state['steps']} train {float(loss):.4f} val {val_bits:.4f}", flush=True)
        if time.monotonic() - last_save > 180:
            _save(checkpoint, net, opt, state, begin)
            last_save = time.monotonic()
    state["seconds"] += time.monotonic() - begin
    begin = time.monotonic()
    _save(checkpoint, net, opt, state, begin)
    if args.hidden != prior.HIDDEN:  # a float probe: the format has no prior of this width
        (args.run / "curve.json").write_text(json.dumps(state["curve"]) + "\n")
        return
    p = to_prior(net)
    with torch.no_grad():
        float_val = float(bits(net, vf, vc).mean())
    int_val = integer_bits(p, data["vf"], data["vc"])
    from safetensors.numpy import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    weights = args.out.with_suffix(".safetensors")
    save_file(p.tensors(), str(weights))
    card = {
        "name": args.out.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "architecture": f"{prior.FEATURES}-{prior.HIDDEN}-{prior.HIDDEN}-2 ReLU, integer",
        "data": {"train": _shown(args.train), "values": int(data["tc"].size),
                 "per_tile_plane": args.per_plane, "grey_share": 0.3,
                 "sample_seed": args.sample_seed,
                 "validation": f"{_shown(args.val)}, 400 values per tile plane",
                 "online_filter": "each value's mean moved by the filter's correction as the "
                                  "encoder makes it with the starting prior"},
        "init_from": str(args.init_from) if args.init_from else None,
        "steps": state["steps"],
        "hours": round(state["seconds"] / 3600, 3),
        "validation_bits_per_value": {"float": round(float_val, 5), "integer": round(int_val, 5)},
        "curve": state["curve"],
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {weights}: validation {float_val:.4f} (float) {int_val:.4f} (integer) bits/value")


def _save(path: Path, net: Net, opt, state: dict, begin: float) -> None:
    saved = dict(state, seconds=state["seconds"] + time.monotonic() - begin)
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": saved}, path)


if __name__ == "__main__":
    main()
