#!/usr/bin/env python
"""Figure of the progressive stages of a real photo, and the cost of the progressive layout.

    .venv/bin/python scripts/progressive_figure.py                 # docs/figures/progressive.png
    .venv/bin/python scripts/progressive_figure.py --image coffee --model idf-rgb-x2

Compresses the photo (scikit-image's astronaut by default) with the default model, every tile
through the flow (``idfc compress --progressive``; ``--raw`` lets tiles be region payloads as
the default encoder does), decodes it
with ``idfcompress.decode_progressive`` and draws every stage with the share of the file it
needs. Also measures what the layout costs: the file as written (one ANS stream and one
16-byte chunk-table entry per tile and stage) against one stream per tile, obtained by coding
each tile's latents of all stages with the same tables into a single ANS stream.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from progressive_stages import load_photo, psnr  # noqa: E402

import idfcompress as ic  # noqa: E402
from idfcompress.codec import encoder  # noqa: E402
from idfcompress.entropy import ans  # noqa: E402
from idfcompress.flow import coding  # noqa: E402
from idfcompress.flow.loading import load_model  # noqa: E402
from idfcompress.flow.model import MixturePrior  # noqa: E402
from idfcompress.format import container, layout  # noqa: E402

ENTRY_BYTES = 16  # one chunk-table entry


@torch.no_grad()
def layout_cost(image: np.ndarray, data: bytes) -> dict:
    """Bytes of the per-(tile, stage) layout against one ANS stream per tile."""
    header, table = container.read_header(data)
    group = header.groups[0]
    loaded = load_model(group.model_name)
    flow = loaded.flow
    stages = flow.config.stages
    raw = {e.tile for e in table if e.kind == layout.REGION_KIND}
    per_stage = {}
    for e in table:
        if e.kind not in (layout.REGION_KIND, layout.MARGIN_KIND):
            per_stage[e.tile] = per_stage.get(e.tile, 0) + e.length
    plane = image[:, :, group.first_channel : group.first_channel + group.channels]
    tiles = layout.tiles_of(header.height, header.width, header.tile_size)
    logistic = coding.logistic_tableset()
    mixture = coding.mixture_tableset(flow)
    n_mix = len(mixture)
    combined = ans.TableSet(
        [mixture.table(t) for t in range(n_mix)] + [logistic.table(t) for t in range(len(logistic))]
    )
    payloads = {(e.tile, e.kind): p for e, p in container.read(data)[1]}
    single = {}
    for batch in layout.tile_batches(tiles, flow.config.granularity):
        x = coding.tile_tensor(plane, batch, flow.config.granularity)
        parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in batch]
        heads = [0] * len(batch)  # the stages' leading bytes, in the one stream too
        for s, (z, prior) in enumerate(flow.coding_stages(x)):
            values = z.to(torch.int64).numpy()
            first = isinstance(prior, MixturePrior)
            if not first:
                q, g = coding.grid_point(prior)
            for i, tile in enumerate(batch):
                payload = payloads.get((tile.index, stages - s))
                if payload is None:  # a raw core
                    continue
                if first:  # the file's choice: mixtures or fitted
                    shape = (1, *z.shape[1:])
                    _, ids, offsets, stream = coding.first_stage_streams(
                        flow, payload, shape, tile.index
                    )
                    base = 0 if payload[0] == layout.TOP_MIXTURE else n_mix
                else:  # the file's log-scale shift
                    shift, stream = coding.logistic_stage(payload, tile.index)
                    ids, offsets = coding.shifted(q[i], g[i], shift)
                    base = n_mix
                heads[i] += len(payload) - len(stream)
                parts[i].append((values[i].ravel(), ids.ravel() + base, offsets.ravel()))
        for i, tile in enumerate(batch):
            if tile.index in raw:
                continue
            v, t, o = (np.concatenate([p[j] for p in parts[i]]) for j in range(3))
            single[tile.index] = heads[i] + len(ans.encode(v, t, o, combined))
    streams = sum(per_stage.values())
    one_stream = sum(single.values())
    flow_tiles = len(single)
    entries = flow_tiles * (stages - 1) * ENTRY_BYTES
    saved = streams - one_stream + entries
    return {
        "file_bytes": len(data),
        "flow_tiles": flow_tiles,
        "region_tiles": len(raw),
        "stages": stages,
        "stage_streams_bytes": streams,
        "one_stream_bytes": one_stream,
        "extra_table_bytes": entries,
        "layout_bytes": saved,
        "layout_overhead": saved / (len(data) - saved),
    }


def draw(image: np.ndarray, stages: list, title: str, out: Path, crop: tuple) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(stages)
    y0, x0, size = crop
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 7.0), gridspec_kw={"hspace": 0.05})
    for k, stage in enumerate(stages):
        pixels = stage.pixels
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255)
        top.add_patch(
            matplotlib.patches.Rectangle(
                (x0, y0), size, size, fill=False, edgecolor="yellow", linewidth=1.2
            )
        )
        bottom.imshow(
            pixels[y0 : y0 + size, x0 : x0 + size], interpolation="nearest", vmin=0, vmax=255
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


def viewer_shot(data: bytes, stages: list, out: Path, at_stage: int, seconds: float) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="astronaut", help="skimage.data name or image path")
    parser.add_argument("--model", help="model name (default: the default RGB model)")
    parser.add_argument("--tile-size", type=int, default=encoder.DEFAULT_TILE_SIZE)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/figures/progressive.png")
    parser.add_argument(
        "--crop", type=int, nargs=3, default=(80, 170, 96), metavar=("Y", "X", "SIZE")
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="let tiles be region payloads as the default encoder does (since format 7 that "
        "is every tile, so the file has a single stage); without it every tile goes through "
        "the flow, as with 'idfc compress --progressive'",
    )
    parser.add_argument(
        "--viewer-shot", type=Path, help="also screenshot 'idfc view' (under Xvfb) to this PNG"
    )
    parser.add_argument("--shot-stage", type=int, default=2, help="stage on that screenshot")
    parser.add_argument(
        "--shot-seconds", type=float, default=12.0, help="simulated download time for it"
    )
    parser.add_argument("-T", "--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    image = load_photo(args.image)
    started = time.perf_counter()
    data, stats = ic.compress_with_stats(
        image, model=args.model, tile_size=args.tile_size, mode="predictive" if args.raw else "flow"
    )
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    stages = list(ic.decode_progressive(data))
    decode_s = time.perf_counter() - started
    assert stages[-1].exact and np.array_equal(stages[-1].pixels, image)
    header, _ = container.read_header(data)
    model = header.groups[0].model_name
    h, w = image.shape[:2]
    title = (
        f"{args.image} {w}×{h}, model {model}: {len(data) / 1000:.1f} kB "
        f"({stats.bits_per_subpixel:.2f} bits/subpixel)\n"
        "stage k is what the first bytes of the file (share above each image) already show; "
        "below: the yellow box enlarged"
    )
    draw(image, stages, title, args.out, tuple(args.crop))

    cost = layout_cost(image, data)
    report = {
        "image": args.image,
        "model": model,
        "size": [w, h],
        "file_bytes": len(data),
        "bits_per_subpixel": stats.bits_per_subpixel,
        "encode_s": encode_s,
        "progressive_decode_s": decode_s,
        "stages": [
            {
                "stage": s.index,
                "bytes": s.bytes_used,
                "fraction": s.fraction,
                "psnr_db": None if s.exact else psnr(s.pixels, image),
                "exact": s.exact,
            }
            for s in stages
        ],
        "layout": cost,
    }
    for s in report["stages"]:
        quality = "exact" if s["exact"] else f"PSNR {s['psnr_db']:.2f} dB"
        print(
            f"stage {s['stage']}: {s['bytes']:8d} bytes ({100 * s['fraction']:5.1f} %)  {quality}"
        )
    print(
        f"layout: {cost['stage_streams_bytes']} bytes in {cost['stages']} streams per tile vs "
        f"{cost['one_stream_bytes']} in one stream per tile, + {cost['extra_table_bytes']} bytes "
        f"of chunk table = {cost['layout_bytes']} bytes, "
        f"{100 * cost['layout_overhead']:.3f} % of the one-stream file"
    )
    print(f"encode {encode_s:.1f} s, progressive decode {decode_s:.1f} s; figure: {args.out}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.viewer_shot:
        viewer_shot(data, stages, args.viewer_shot, args.shot_stage, args.shot_seconds)
        print(f"viewer screenshot: {args.viewer_shot}")


if __name__ == "__main__":
    main()
