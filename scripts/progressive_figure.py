#!/usr/bin/env python
"""Figure of the progressive stages of a real photo in a default file.

    .venv/bin/python scripts/progressive_figure.py                 # docs/figures/progressive.png
    .venv/bin/python scripts/progressive_figure.py --image coffee --tile-size 128 --out coffee.png

Compresses the photo (scikit-image's astronaut by default) with ``idfcompress.compress``
(the coarse level first, then the tiles row by row), decodes it with
``idfcompress.decode_progressive`` and draws the stages with the share of the file each
needs: stage 1 is the coarse level (every F-th pixel of every F-th row) upsampled, and each
later stage adds one row of tiles, exact; the last is the exact image. With many tile rows
(small tiles, tall images) ``--columns`` draws an even pick of the stages, always the first
and the last. What the coarse-to-fine order costs in bytes is scripts/progressive_stages.py's
to measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from progressive_stages import load_photo, psnr  # noqa: E402

import idfcompress as ic  # noqa: E402
from idfcompress.codec import encoder  # noqa: E402
from idfcompress.format import layout  # noqa: E402


def pick(stages: list, columns: int) -> list:
    """At most ``columns`` of ``stages``, evenly spread, the first and the last among them
    (all of them when ``columns`` is 0)."""
    if columns <= 0 or len(stages) <= columns:
        return stages
    if columns == 1:
        return stages[-1:]
    chosen = np.linspace(0, len(stages) - 1, columns).round().astype(int)
    return [stages[i] for i in dict.fromkeys(chosen.tolist())]


def fit_crop(crop: tuple, height: int, width: int) -> tuple[int, int, int]:
    """The (y, x, size) box moved and shrunk so that it lies inside the image."""
    y0, x0, size = crop
    size = max(1, min(size, height, width))
    return min(max(y0, 0), height - size), min(max(x0, 0), width - size), size


def draw(image: np.ndarray, stages: list, title: str, out: Path, crop: tuple) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(stages)
    y0, x0, size = crop
    fig, axes = plt.subplots(
        2, n, figsize=(3.2 * n, 7.0), gridspec_kw={"hspace": 0.05}, squeeze=False
    )
    for k, stage in enumerate(stages):
        pixels = stage.pixels
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        cmap = "gray" if pixels.ndim == 2 else None
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(pixels, cmap=cmap, vmin=0, vmax=255)
        top.add_patch(
            matplotlib.patches.Rectangle(
                (x0, y0), size, size, fill=False, edgecolor="yellow", linewidth=1.2
            )
        )
        bottom.imshow(
            pixels[y0 : y0 + size, x0 : x0 + size],
            cmap=cmap,
            interpolation="nearest",
            vmin=0,
            vmax=255,
        )
        quality = "exact (lossless)" if stage.exact else f"PSNR {psnr(pixels, image):.1f} dB"
        top.set_title(
            f"stage {stage.index}/{stage.count}: {100 * stage.fraction:.1f} % of the file\n"
            f"({stage.bytes_used / 1000:.1f} kB) · {quality}",
            fontsize=10,
        )
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def viewer_shot(data: bytes, out: Path, at_stage: int, seconds: float) -> None:
    """Screenshot of ``idfc view``'s window under a private Xvfb once ``at_stage`` is painted."""
    import os
    import shutil
    import subprocess
    import tempfile

    if shutil.which("Xvfb") is None:
        raise SystemExit("--viewer-shot needs Xvfb (apt-get install xvfb)")
    number = 150 + os.getpid() % 100
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                break
            time.sleep(0.05)
        os.environ["DISPLAY"] = f":{number}"
        from PIL import Image, ImageGrab

        from idfcompress.app import viewer

        def grab(root, painted) -> None:
            if painted.stage.index == at_stage:
                root.update()
                x, y = root.winfo_rootx(), root.winfo_rooty()
                box = (x, y, x + root.winfo_width(), y + root.winfo_height())
                shot = ImageGrab.grab(bbox=box, xdisplay=f":{number}").convert("RGB")
                shot.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "photo.idf"
            path.write_bytes(data)
            viewer.view(path, rate=len(data) / seconds, close_when_done=0.5, on_paint=grab)
    finally:
        server.terminate()
        server.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="astronaut", help="skimage.data name or image path")
    parser.add_argument("--tile-size", type=int, default=encoder.DEFAULT_TILE_SIZE)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/figures/progressive.png")
    parser.add_argument(
        "--crop", type=int, nargs=3, default=(80, 170, 96), metavar=("Y", "X", "SIZE")
    )
    parser.add_argument(
        "--columns",
        type=int,
        default=6,
        help="draw at most this many stages, the first and the last among them (0: all)",
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument(
        "--viewer-shot", type=Path, help="also screenshot 'idfc view' (under Xvfb) to this PNG"
    )
    parser.add_argument("--shot-stage", type=int, default=2, help="stage on that screenshot")
    parser.add_argument(
        "--shot-seconds", type=float, default=12.0, help="simulated download time for it"
    )
    parser.add_argument("-T", "--threads", type=int, help="idfcompress.set_threads")
    args = parser.parse_args(argv)
    if args.threads:
        ic.set_threads(args.threads)

    image = load_photo(args.image)
    h, w = image.shape[:2]
    started = time.perf_counter()
    data, stats = ic.compress_with_stats(image, tile_size=args.tile_size)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    stages = list(ic.decode_progressive(data))
    decode_s = time.perf_counter() - started
    final = stages[-1].pixels
    assert stages[-1].exact and np.array_equal(final.reshape(image.shape), image)
    stride = layout.coarse_stride(h, w, args.tile_size)
    drawn = pick(stages, args.columns)
    title = (
        f"{args.image} {w}×{h}, tile size {args.tile_size}: {len(data) / 1000:.1f} kB "
        f"({stats.bits_per_subpixel:.2f} bits/subpixel)\n"
        f"stage 1: the coarse level (every {stride}th pixel of every {stride}th row) upsampled; "
        "each later stage adds a row of tiles; below: the yellow box enlarged"
    )
    if len(drawn) < len(stages):
        title += f" ({len(drawn)} of {len(stages)} stages shown)"
    draw(image, drawn, title, args.out, fit_crop(tuple(args.crop), h, w))

    report = {
        "image": args.image,
        "size": [w, h],
        "tile_size": args.tile_size,
        "coarse_stride": stride,
        "tiles": stats.tiles,
        "coarse_tiles": stats.coarse_tiles,
        "file_bytes": len(data),
        "bits_per_subpixel": stats.bits_per_subpixel,
        "encode_s": encode_s,
        "progressive_decode_s": decode_s,
        "stages": [
            {
                "stage": s.index,
                "bytes": s.bytes_used,
                "fraction": s.fraction,
                "psnr_db": None if s.exact else psnr(s.pixels.reshape(image.shape), image),
                "exact": s.exact,
            }
            for s in stages
        ],
    }
    for s in report["stages"]:
        quality = "exact" if s["exact"] else f"PSNR {s['psnr_db']:.2f} dB"
        print(
            f"stage {s['stage']}: {s['bytes']:8d} bytes ({100 * s['fraction']:5.1f} %)  {quality}"
        )
    print(f"encode {encode_s:.1f} s, progressive decode {decode_s:.1f} s; figure: {args.out}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.viewer_shot:
        viewer_shot(data, args.viewer_shot, args.shot_stage, args.shot_seconds)
        print(f"viewer screenshot: {args.viewer_shot}")


if __name__ == "__main__":
    main()
