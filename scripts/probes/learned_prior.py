"""Probe for issue 18: a learned prior over the predictive coder's hand-made features.

Candidate 1 of the issue ("a learned autoregressive prior over today's hand-made
features"): every value keeps today's weighted-predictor blend as its base prediction; a
small network reads the pixel's causal features (the eight predictors relative to the
blend, the neighbours' blend errors, the gradient, the earlier planes' errors at the pixel)
and gives the mean and log-scale of a discretized logistic for the value's residual. It is
measured as ideal code length (bits per subpixel) against the hand-made rule in the same
framework (16 error contexts, a logistic fitted per context and image: today's coder) and
against the real coder's files, on every validation folder.

Variants, all over the same features:
- ``rule``: 16 contexts, one logistic fitted per (plane, context) per image (today's rule);
- ``net``: the trained network alone, no adaptation to the image;
- ``net+ctx``: the network, then per (plane, context) per image a fitted log-scale shift
  and mean shift (adaptation through parameters the encoder fits and would store);
- ``untrained``: the same network with random weights, then the same adaptation (the
  ablation the issue asks for: the weights must matter).

The features are computed for whole planes in raster order (numpy), with edge replication at
the borders instead of the coder's band rule, and chroma planes get no fitted gains: the
framework's ``rule`` figure, not the real coder's, is the like-for-like baseline.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/learned_prior.py --minutes 8
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import idfcompress

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
VAL = {
    "mcmaster": DATA / "val/rgb/mcmaster",
    "bsds500-val": DATA / "val/rgb/bsds500-val",
    "usc-sipi-rgb": DATA / "val/rgb/usc-sipi",
    "usc-sipi-gray": DATA / "val/gray/usc-sipi",
    "large-camera": DATA / "val/gray/large-camera",
}
THRESHOLDS = 16 * np.array([1, 2, 3, 4, 6, 8, 11, 15, 20, 27, 36, 48, 64, 90, 128])
CONTEXTS = THRESHOLDS.size + 1
FEATURES = 8 + 6 + 1 + 4 + 4 + 1


def image_files(folder: Path) -> list[Path]:
    suffixes = {".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".jpg"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)


def load(path: Path, crop: int | None = None) -> np.ndarray:
    """(H, W, C) uint8 pixels, grey or RGB; ``crop``: the central crop of that side."""
    with Image.open(path) as image:
        mode = "L" if image.mode in ("L", "I;16", "I", "1", "LA") else "RGB"
        pixels = np.asarray(image.convert(mode))
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if crop:
        h, w = pixels.shape[:2]
        y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        pixels = pixels[y : y + crop, x : x + crop]
    return np.ascontiguousarray(pixels)


def planes_of(pixels: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The coder's planes (G, R-G, B-G or grey) with their kind (0 grey, 1 G, 2 R-G, 3 B-G)."""
    p = pixels.astype(np.int64)
    if p.shape[2] == 1:
        return [(p[:, :, 0], 0)]
    g = p[:, :, 1]
    return [(g, 1), (p[:, :, 0] - g, 2), (p[:, :, 2] - g, 3)]


def causal(a: np.ndarray) -> dict[str, np.ndarray]:
    """Each value's W, N, NW, NE, WW and NN in ``a``, missing ones replaced as the coder
    replaces them (docs/FORMAT.md, without its bands): W by N, N by W, others by N or W,
    and 0 where neither exists."""
    h, w = a.shape
    p = np.zeros((h + 2, w + 4), dtype=a.dtype)
    p[2:, 2 : w + 2] = a
    y, x = np.mgrid[0:h, 0:w]
    raw = {
        "W": p[2:, 1 : w + 1], "N": p[1 : h + 1, 2 : w + 2], "NW": p[1 : h + 1, 1 : w + 1],
        "NE": p[1 : h + 1, 3 : w + 3], "WW": p[2:, 0:w], "NN": p[0:h, 2 : w + 2],
    }  # fmt: skip
    west = np.where(x > 0, raw["W"], np.where(y > 0, raw["N"], 0))
    north = np.where(y > 0, raw["N"], west)
    return {
        "W": west,
        "N": north,
        "NW": np.where((x > 0) & (y > 0), raw["NW"], north),
        "NE": np.where((y > 0) & (x < w - 1), raw["NE"], north),
        "WW": np.where(x > 1, raw["WW"], west),
        "NN": np.where(y > 1, raw["NN"], north),
    }


def plane_features(plane: np.ndarray, earlier: list[np.ndarray], kind: int) -> dict:
    """Blend prediction, residuals, contexts and network features of one plane."""
    near = causal(plane)
    w, n, nw, ne, ww, nn = (near[k] for k in ("W", "N", "NW", "NE", "WW", "NN"))
    preds = np.stack(
        [
            16 * (w + n - nw), 16 * n, 16 * w, 8 * (w + ne), 16 * ne, 8 * (w + n),
            16 * (2 * n - nn), 16 * (2 * w - ww),
        ]
    )  # fmt: skip
    errors = np.abs(16 * plane[None] - preds)
    total = np.zeros_like(errors)
    for i, e in enumerate(errors):
        ne_ = causal(e)
        total[i] = 2 * (ne_["W"] + ne_["N"] + ne_["NW"] + ne_["NE"]) + ne_["WW"] + ne_["NN"]
    weights = (1 << 40) // (total + 64) ** 2
    blend = (2 * (weights * preds).sum(0) + weights.sum(0)) // (2 * weights.sum(0))
    signed = 16 * plane - blend
    err16 = np.abs(signed)
    nerr = causal(err16)
    gradient = np.abs(w - nw) + np.abs(n - nw) + np.abs(n - ne)
    prior = sum(earlier) if earlier else np.zeros_like(plane)
    ctx_total = nerr["W"] + nerr["N"] + nerr["NW"] + nerr["NE"] + (nerr["WW"] + nerr["NN"]) // 2
    ctx_total = ctx_total + 8 * gradient + (3 * prior) // 2
    context = np.searchsorted(THRESHOLDS, ctx_total, side="right")
    residual = plane - ((blend + 8) >> 4)
    first = earlier[0] if earlier else np.zeros_like(plane)
    last = earlier[-1] if earlier else np.zeros_like(plane)
    feats = [np.tanh((p - blend) / 256.0) for p in preds]
    feats += [np.log1p(nerr[k] / 16.0) for k in ("W", "N", "NW", "NE", "WW", "NN")]
    feats += [np.log1p(gradient)]
    feats += [np.tanh(first / 256.0), np.tanh(last / 256.0)]
    feats += [np.log1p(np.abs(first) / 16.0), np.log1p(np.abs(last) / 16.0)]
    feats += [np.full(plane.shape, float(kind == k)) for k in range(4)]
    feats += [((blend + 8) % 16 - 8) / 16.0]
    return {
        "residual": residual.ravel(),
        "context": context.ravel(),
        "features": np.stack([f.ravel() for f in feats], 1).astype(np.float32),
        "signed": signed,
        "kind": kind,
    }


def image_samples(pixels: np.ndarray) -> list[dict]:
    out, earlier = [], []
    for plane, kind in planes_of(pixels):
        f = plane_features(plane, earlier, kind)
        out.append(f)
        earlier.append(np.abs(f["signed"]))
    return out


def logistic_bits(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(x) under a discretized logistic (unit bins), floored at 2**-20."""
    inv = torch.exp(-log_scale)
    upper = torch.sigmoid((x + 0.5 - mean) * inv)
    lower = torch.sigmoid((x - 0.5 - mean) * inv)
    return -torch.log2(torch.clamp(upper - lower, min=2.0**-20))


class Net(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(FEATURES, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, 2),
        )  # fmt: skip

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.body(f)
        return out[:, 0], out[:, 1].clamp(-3.0, 6.0)


def training_set(per_plane: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    feats, targets = [], []
    for path in image_files(DATA / "train"):
        pixels = load(path)
        if rng.random() < 0.3:  # grey from colour, as the shipped grey model was made
            luma = pixels.astype(np.int64) @ np.array([299, 587, 114]) // 1000
            pixels = luma.astype(np.uint8)[:, :, None]
        for s in image_samples(pixels):
            pick = rng.choice(s["residual"].size, min(per_plane, s["residual"].size), False)
            feats.append(s["features"][pick])
            targets.append(s["residual"][pick])
    return np.concatenate(feats), np.concatenate(targets).astype(np.float32)


def train(net: Net, feats: np.ndarray, targets: np.ndarray, minutes: float) -> list[float]:
    f, t = torch.from_numpy(feats), torch.from_numpy(targets)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    end, curve, step = time.monotonic() + 60 * minutes, [], 0
    gen = torch.Generator().manual_seed(0)
    while time.monotonic() < end:
        pick = torch.randint(0, f.shape[0], (4096,), generator=gen)
        mean, ls = net(f[pick])
        loss = logistic_bits(t[pick], mean, ls).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0:
            curve.append(float(loss.detach()))
    return curve


def _fit_bits(values: np.ndarray) -> float:
    """Ideal bits of values under one discretized logistic fitted to them (mean, scale)."""
    if values.size == 0:
        return 0.0
    x = torch.from_numpy(values.astype(np.float32))
    best = math.inf
    med = float(np.median(values))
    for mean in np.arange(med - 1, med + 1.01, 0.25):
        for ls in np.arange(-3, 6.01, 0.125):
            bits = float(logistic_bits(x, torch.tensor(mean), torch.tensor(ls)).sum())
            best = min(best, bits)
    return best + 16  # the stored mean and scale


def _adapted_bits(x: np.ndarray, mean: np.ndarray, ls: np.ndarray, context: np.ndarray) -> float:
    """The network's prior with, per context, the best mean and log-scale shift (+16 bits)."""
    total = 0.0
    xt, mt, lt = (torch.from_numpy(a.astype(np.float32)) for a in (x, mean, ls))
    for k in np.unique(context):
        sel = torch.from_numpy(context == k)
        best = math.inf
        for dm in (-0.5, -0.25, 0.0, 0.25, 0.5):
            for dl in np.arange(-1.0, 1.01, 0.125):
                bits = float(logistic_bits(xt[sel], mt[sel] + dm, lt[sel] + dl).sum())
                best = min(best, bits)
        total += best + 16
    return total


@torch.no_grad()
def evaluate(nets: dict[str, Net], folder: Path, limit: int, crop: int | None) -> dict:
    sums = {k: 0.0 for k in ["coder", "rule", *nets, *(f"{k}+ctx" for k in nets)]}
    subpixels = 0
    for path in image_files(folder)[:limit]:
        pixels = load(path, crop)
        subpixels += pixels.size
        image = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
        sums["coder"] += 8 * len(idfcompress.compress(image))
        for s in image_samples(pixels):
            x, ctx = s["residual"], s["context"]
            sums["rule"] += sum(_fit_bits(x[ctx == k]) for k in np.unique(ctx))
            f = torch.from_numpy(s["features"])
            for name, net in nets.items():
                mean, ls = net(f)
                sums[name] += float(logistic_bits(torch.from_numpy(x).float(), mean, ls).sum())
                sums[f"{name}+ctx"] += _adapted_bits(x, mean.numpy(), ls.numpy(), ctx)
    return {k: v / subpixels for k, v in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training time (CPU)")
    parser.add_argument("--per-plane", type=int, default=3000, help="training pixels per plane")
    parser.add_argument("--limit", type=int, default=12, help="images per validation folder")
    parser.add_argument("--crop", type=int, default=256, help="central crop side (0: whole)")
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.monotonic()
    feats, targets = training_set(args.per_plane, seed=1)
    print(f"training set: {len(targets)} values from {DATA / 'train'} "
          f"({time.monotonic() - started:.0f} s)")  # fmt: skip
    net = Net()
    curve = train(net, feats, targets, args.minutes)
    print("training bits per value every 500 steps:", " ".join(f"{c:.3f}" for c in curve))
    untrained = Net()
    nets = {"net": net.eval(), "untrained": untrained.eval()}
    crop = args.crop or None
    print(f"\nbits per subpixel, first {args.limit} images per folder, central {crop} px crops")
    header = None
    for name, folder in VAL.items():
        row = evaluate(nets, folder, args.limit, crop)
        if header is None:
            header = list(row)
            print(f"| set | {' | '.join(header)} |")
            print("|---|" + "--:|" * len(header))
        print(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k in header) + " |", flush=True)


if __name__ == "__main__":
    main()
