#!/usr/bin/env python
"""Peak memory and time of ``idfc`` on a big photo-like image (default 50 megapixels).

    python scripts/memory_bench.py                          # 50 MP
    python scripts/memory_bench.py --megapixels 5 --tile-size 128
    python scripts/memory_bench.py --synthetic --threads 2 --work /tmp/bench

The image is a mosaic of real photographs (../shared/data/val/rgb, randomly flipped 500 px
blocks) or, with ``--synthetic`` or when no photos are found, a smooth pattern plus noise. It
is saved as a PNG; then each phase runs the real command line in its own process:

    compress     idfc compress big.png -o big.idf
    test         idfc test big.idf                 (decode and verify, write nothing)
    decompress   idfc decompress big.idf -o out.png

For each phase: wall time, speed, and the peak resident memory of the process, both as the
kernel counts it (``ru_maxrss`` from wait4) and as sampled every 20 ms with psutil. The
decoded PNG is compared with the input pixel for pixel. Exits with 1 if a phase's peak is
over ``--limit-mib`` (default 1024, docs/RELIABILITY.md) or the round trip is not exact.

The table also gives each phase's peak less what the image itself must take (the pixels,
the PNG and the .idf bytes: ``per-image``): the rest is what the codec's working set and
the process cost, which must follow the tile, not the image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the "bench" extra
    psutil = None

MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "val" / "rgb"

Image.MAX_IMAGE_PIXELS = None  # our own image; Pillow's bomb guard would refuse 50 MP


def photo_mosaic(height: int, width: int, folder: Path, seed: int = 0) -> np.ndarray | None:
    """Random flips of 500x500 blocks cut from the photos in ``folder`` (None if none)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".ppm", ".tif"})
    blocks = []
    for path in files:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        for y in range(0, array.shape[0] - 499, 500):
            for x in range(0, array.shape[1] - 499, 500):
                blocks.append(array[y : y + 500, x : x + 500])
    if not blocks:
        return None
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for y in range(0, height, 500):
        for x in range(0, width, 500):
            block = blocks[int(rng.integers(len(blocks)))]
            if rng.random() < 0.5:
                block = block[:, ::-1]
            if rng.random() < 0.5:
                block = block[::-1]
            h, w = min(500, height - y), min(500, width - x)
            out[y : y + h, x : x + w] = block[:h, :w]
    return out


def synthetic(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth waves plus mild noise, built in strips to keep the bench's own memory low."""
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), dtype=np.uint8)
    x = np.arange(width)[None, :]
    for y0 in range(0, height, 256):
        y = np.arange(y0, min(height, y0 + 256))[:, None]
        base = 128 + 60 * np.sin(x / 37.0) * np.cos(y / 53.0) + 30 * np.sin((x + y) / 211.0)
        for c in range(3):
            noise = rng.normal(0, 3, base.shape)
            out[y0 : y0 + len(y), :, c] = np.clip(base + 15 * c + noise, 0, 255)
    return out


class Sampler(threading.Thread):
    """Samples the RSS of a process and its children until stopped."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        if psutil is None:
            return
        try:
            process = psutil.Process(self.pid)
            while not self.done.is_set():
                rss = process.memory_info().rss
                for child in process.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, rss)
                time.sleep(self.interval)
        except psutil.Error:
            return


def measure(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``command``; its seconds, exit code and peak RSS (kernel and sampled), in MiB."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    sampler = Sampler(process.pid)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": seconds,
        "exit": process.returncode,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "maxrss_mib": usage.ru_maxrss / 1024.0,  # kilobytes on Linux
        "sampled_mib": sampler.peak / MIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=50.0)
    parser.add_argument("--threads", type=int, help="idfc -T (default: the core count)")
    parser.add_argument("--tile-size", type=int, help="idfc compress --tile-size")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of photos to tile")
    parser.add_argument("--synthetic", action="store_true", help="smooth pattern + noise")
    parser.add_argument("--work", type=Path, help="folder for the files (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--limit-mib", type=float, default=1024.0)
    parser.add_argument("--phases", default="compress,test,decompress")
    args = parser.parse_args(argv)

    width = int(round((args.megapixels * 1e6 * 1.5) ** 0.5))
    height = int(round(args.megapixels * 1e6 / width))
    work = args.work or Path(tempfile.mkdtemp(prefix="idfc-membench-"))
    work.mkdir(parents=True, exist_ok=True)
    source, packed, decoded = work / "big.png", work / "big.idf", work / "out.png"

    started = time.perf_counter()
    image = None if args.synthetic else photo_mosaic(height, width, args.photos)
    kind = "photo mosaic" if image is not None else "synthetic"
    if image is None:
        image = synthetic(height, width)
    Image.fromarray(image).save(source, compress_level=1)
    print(
        f"{width}x{height} RGB ({width * height / 1e6:.1f} MP, {kind}), "
        f"PNG {source.stat().st_size / MIB:.0f} MiB, made in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    idfc = Path(sys.executable).with_name("idfc")
    base = [str(idfc)] if idfc.exists() else [sys.executable, "-m", "idfcompress"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    threads = ["-T", str(args.threads)] if args.threads else []
    compress = ["compress", "-q", "-f", *threads, str(source), "-o", str(packed)]
    if args.tile_size:
        compress += ["--tile-size", str(args.tile_size)]
    commands = {
        "compress": compress,
        "test": ["test", *threads, str(packed)],
        "decompress": ["decompress", "-q", "-f", *threads, str(packed), "-o", str(decoded)],
    }
    results = {}
    for phase in args.phases.split(","):
        results[phase] = measure(base + commands[phase], env)
        r = results[phase]
        print(
            f"{phase}: {r['seconds']:.1f} s ({r['cpu_seconds']:.0f} s CPU), "
            f"peak RSS {r['maxrss_mib']:.0f} MiB "
            f"(sampled {r['sampled_mib']:.0f}), exit {r['exit']}",
            flush=True,
        )
        if r["exit"]:
            break

    exact = None
    if "decompress" in results and results["decompress"]["exit"] == 0:
        with Image.open(decoded) as out:
            exact = bool(np.array_equal(np.asarray(out), image))
    megapixels = width * height / 1e6
    # what the image itself takes in each phase: its pixels, the PNG and the .idf bytes
    sizes = {"pixels": image.nbytes, "png": source.stat().st_size}
    sizes["idf"] = packed.stat().st_size if packed.exists() else 0
    per_image = (sizes["pixels"] + sizes["png"] + sizes["idf"]) / MIB
    print()
    print(
        f"| phase | seconds | CPU seconds | MP/s | peak RSS (MiB) | sampled (MiB) "
        f"| less per-image {per_image:.0f} MiB | under {args.limit_mib:.0f} MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for phase, r in results.items():
        ok = "yes" if r["maxrss_mib"] < args.limit_mib else "**no**"
        print(
            f"| {phase} | {r['seconds']:.1f} | {r['cpu_seconds']:.0f} | "
            f"{megapixels / r['seconds']:.3f} | "
            f"{r['maxrss_mib']:.0f} | {r['sampled_mib']:.0f} | "
            f"{r['maxrss_mib'] - per_image:.0f} | {ok} |"
        )
    if packed.exists():
        bits = 8 * packed.stat().st_size / (width * height * 3)
        print(f"\n.idf {packed.stat().st_size / MIB:.1f} MiB ({bits:.3f} bits/subpixel)", end="")
    print(f"; round trip exact: {exact}")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    failed = any(r["exit"] or r["maxrss_mib"] >= args.limit_mib for r in results.values())
    return 1 if failed or exact is False else 0


if __name__ == "__main__":
    sys.exit(main())
