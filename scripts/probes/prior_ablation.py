"""Probe for issue 18: what the learned prior brings over the rule, and what training does.

Codes sampled 256-px tiles of every validation folder with the predictive coder four ways
and prints the real payload sizes (bits per subpixel):
- ``rule``: format 7, one fitted logistic per (plane, context);
- ``untrained``: the default coder with random network weights (``prior.random_prior``),
  its shifts and online filter still fitted and learnt;
- ``no filter``: the shipped prior without the online filter (format 8);
- ``learned``: the default, the shipped prior (``predictive.prior.DEFAULT_PRIOR``) with the
  online filter, shifted per context;
- ``candidate`` (with ``--candidate PATH``): a newly trained prior, to ship only if it beats
  ``learned`` on every folder.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/prior_ablation.py --tiles 40
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from idfcompress.predictive import coder, prior

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "val"
SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm"}


def tiles(folder: Path, count: int, seed: int) -> list[np.ndarray]:
    """``count`` 256-px tiles drawn at random (seeded) from the folder's images."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES):
        with Image.open(path) as image:
            grey = image.mode in ("L", "I;16", "I", "1", "LA")
            pixels = np.asarray(image.convert("L" if grey else "RGB"))
        pixels = pixels if pixels.ndim == 3 else pixels[:, :, None]
        for y in range(0, pixels.shape[0], 256):
            for x in range(0, pixels.shape[1], 256):
                out.append(np.ascontiguousarray(pixels[y : y + 256, x : x + 256]))
    rng = np.random.default_rng(seed)
    return [out[i] for i in sorted(rng.choice(len(out), min(count, len(out)), replace=False))]


def folder_table(names, tile_bits, count: int, base: int = 0, note: str = "") -> None:
    """Prints, per validation folder, the bits per subpixel of each of ``names`` summed over
    ``count`` sampled tiles (``tile_bits(tile)``: one figure per name), and each after the
    ``base``-th relative to it."""
    print(f"{'folder':<22}" + "".join(f"{v:>10}" for v in names) + f"   (bits/subpixel{note})")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, count, seed=0)
        sizes = np.array([tile_bits(t) for t in sample]).sum(0) / sum(t.size for t in sample)
        rel = "  ".join(f"{100 * (s / sizes[base] - 1):+.2f}%" for s in sizes[base + 1 :])
        name = folder.parent.name + "/" + folder.name
        print(f"{name:<22}" + "".join(f"{s:>10.4f}" for s in sizes) + "   " + rel, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=40, help="tiles per folder")
    parser.add_argument(
        "--candidate", type=Path, help="a trained prior .safetensors to compare as well"
    )
    args = parser.parse_args()
    shipped = prior.load_prior(prior.DEFAULT_PRIOR)
    variants: dict[str, tuple[prior.Prior | None, bool]] = {
        "rule": (None, False),
        "untrained": (prior.random_prior(0), True),
        "no filter": (shipped, False),
        "learned": (shipped, True),
    }
    if args.candidate:
        variants["candidate"] = (prior.load_file(args.candidate), True)
    print(
        f"{'folder':<22}" + "".join(f"{v:>11}" for v in variants)
        + "  learned vs rule, untrained, no filter"
    )  # fmt: skip
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, args.tiles, seed=0)
        values = sum(t.size for t in sample)
        sizes = {}
        for name, (learned, online) in variants.items():
            sizes[name] = sum(  # the shipped coder's shifts by scale (filters 6 and 7)
                len(coder.plan([t], learned, online, by_scale=True).payload()) for t in sample
            )
        row = "".join(f"{8 * sizes[v] / values:>11.4f}" for v in variants)
        ratios = [sizes["learned"] / sizes[v] - 1 for v in ("rule", "untrained", "no filter")]
        print(
            f"{folder.parent.name + '/' + folder.name:<22}{row}  "
            + "  ".join(f"{100 * r:+.2f} %" for r in ratios),
            flush=True,
        )


if __name__ == "__main__":
    main()
