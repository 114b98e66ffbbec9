#!/usr/bin/env python
"""Compare idfc with the classic lossless image codecs on real photos.

    python scripts/benchmark.py                          # scikit-image's bundled photos
    python scripts/benchmark.py ../shared/data/val/rgb/mcmaster --limit 8 --per-image
    python scripts/benchmark.py photo.png --codecs 'png,jxl-e7,idfc*' --repeats 5

Every codec is round-trip verified on every image; a codec that does not give back the
exact pixels is flagged and left out of the totals. Prints markdown tables on stdout,
progress on stderr, and writes results.csv, results.json and bpsp_vs_decode.png to --out.
See docs/BENCHMARK.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import fnmatch
import gc
import io
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

try:  # the optional dependencies of the "bench" extra; main() explains if one is missing
    import imagecodecs
except ImportError:  # pragma: no cover
    imagecodecs = None
try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

MEBI = 1 << 20
IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".pnm", ".webp", ".qoi", ".tga"}
# Photographs bundled with scikit-image (no download): colour first, then grey.
DEFAULT_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
CSV_FIELDS = (
    "image", "codec", "status", "exact", "height", "width", "channels", "subpixels", "bytes",
    "bpsp", "ratio_raw", "ratio_png", "encode_s", "decode_s", "encode_mps", "decode_mps",
    "encode_runs", "decode_runs", "threads", "encode_peak_mib", "decode_peak_mib",
    "tiles", "coarse_tiles", "png_bytes", "note",
)  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def missing_dependencies() -> list[str]:
    """Modules of the bench extra that cannot be imported."""
    missing = []
    for module in ("imagecodecs", "matplotlib", "skimage", "psutil"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return missing


# --------------------------------------------------------------------------- images


@dataclass
class BenchImage:
    """One test image: uint8 pixels, (H, W) for grey or (H, W, C)."""

    name: str
    pixels: np.ndarray

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else int(self.pixels.shape[2])

    @property
    def subpixels(self) -> int:
        return int(self.pixels.size)

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


def pixels_of(image: Image.Image) -> np.ndarray:
    """8-bit pixels of a Pillow image: (H, W) for L, (H, W, C) for LA/RGB/RGBA."""
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(f"mode {image.mode} is not 8-bit L, LA, RGB or RGBA")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def read_image(path: Path, name: str | None = None) -> BenchImage:
    with Image.open(path) as image:
        return BenchImage(name or path.name, pixels_of(image))


def default_photo_paths() -> list[Path]:
    """The photographic images that scikit-image ships in skimage/data."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    found = [folder / name for name in DEFAULT_PHOTOS if (folder / name).is_file()]
    if not found:
        raise SystemExit(f"benchmark: no bundled photos found in {folder}")
    return found


def load_images(targets: Sequence[str], limit: int | None = None) -> list[BenchImage]:
    """Images of the named files and folders (first ``limit`` per folder, sorted by name)."""
    groups: list[tuple[str, list[Path]]] = []
    if not targets:
        groups.append(("skimage", default_photo_paths()))
    for target in targets:
        path = Path(target)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                log(f"benchmark: warning: no images in {path}")
            groups.append((path.name, files))
        elif path.is_file():
            groups.append(("", [path]))
        else:
            raise SystemExit(f"benchmark: {target}: no such file or folder")
    images = []
    for prefix, files in groups:
        for path in files[:limit] if limit else files:
            name = f"{prefix}/{path.name}" if prefix else path.name
            try:
                images.append(read_image(path, name))
            except (OSError, ValueError) as exc:
                log(f"benchmark: skipping {path}: {exc}")
    return images


# --------------------------------------------------------------------------- codecs

Encoded = tuple[bytes, dict]


@dataclass
class Codec:
    """A lossless codec under test.

    ``encode(pixels) -> (bytes, extra figures)``; ``decode(bytes, shape) -> pixels`` (the shape
    is only used by codecs without a header, i.e. the zstd floor); ``supports(image)`` returns
    why the codec cannot code an image, or None.
    """

    name: str
    encode: Callable[[np.ndarray], Encoded]
    decode: Callable[[bytes, tuple[int, ...]], np.ndarray]
    threads: int = 1
    settings: str = ""
    supports: Callable[[BenchImage], str | None] = field(default=lambda image: None)


def _plain(encode: Callable[[np.ndarray], bytes]) -> Callable[[np.ndarray], Encoded]:
    return lambda pixels: (bytes(encode(pixels)), {})


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    """Grey replicated to RGB, for codecs without a grey mode (WebP, QOI)."""
    if pixels.ndim == 2:
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if pixels.shape[2] == 2:  # LA -> RGBA
        return np.ascontiguousarray(
            np.dstack([pixels[:, :, :1].repeat(3, axis=2), pixels[:, :, 1:]])
        )
    return pixels


def png_encode(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_decode(data: bytes, shape: tuple[int, ...] = ()) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def classic_codecs(threads: int) -> list[Codec]:
    """PNG, WebP, JPEG XL, JPEG 2000, JPEG-LS, QOI, AVIF and the zstd floor, all lossless."""
    ic = imagecodecs
    n = threads
    return [
        Codec("png", _plain(png_encode), png_decode, 1, "Pillow, optimize=True (zlib level 9)"),
        Codec(
            "webp",
            _plain(
                lambda p: ic.webp_encode(_as_rgb(p), 100, lossless=True, method=6, numthreads=n)
            ),
            lambda d, s: ic.webp_decode(d),
            n,
            "libwebp lossless, level 100, method 6 (cwebp -lossless -z 9); grey coded as RGB",
        ),
        Codec(
            "jxl-e7",
            _plain(lambda p: ic.jpegxl_encode(p, lossless=True, effort=7, numthreads=n)),
            lambda d, s: ic.jpegxl_decode(d, numthreads=n),
            n,
            "libjxl lossless, effort 7 (the cjxl default)",
        ),
        Codec(
            "jxl-e9",
            _plain(lambda p: ic.jpegxl_encode(p, lossless=True, effort=9, numthreads=n)),
            lambda d, s: ic.jpegxl_decode(d, numthreads=n),
            n,
            "libjxl lossless, effort 9",
        ),
        Codec(
            "jpeg2000",
            _plain(lambda p: ic.jpeg2k_encode(p, reversible=True, codecformat="J2K", numthreads=n)),
            lambda d, s: ic.jpeg2k_decode(d, numthreads=n),
            n,
            "OpenJPEG, reversible 5/3 wavelet + RCT, raw J2K codestream",
        ),
        Codec(
            "jpeg-ls",
            _plain(lambda p: ic.jpegls_encode(p, 0)),
            lambda d, s: ic.jpegls_decode(d),
            1,
            "CharLS, NEAR=0 (lossless)",
        ),
        Codec(
            "qoi",
            _plain(lambda p: ic.qoi_encode(_as_rgb(p))),
            lambda d, s: ic.qoi_decode(d),
            1,
            "reference QOI; grey coded as RGB",
        ),
        Codec(
            "avif",
            _plain(lambda p: ic.avif_encode(p, ic.AVIF.QUALITY.LOSSLESS, numthreads=n)),
            lambda d, s: ic.avif_decode(d, numthreads=n),
            n,
            "libavif lossless (quality 100: identity matrix, 4:4:4 / 4:0:0), default speed",
        ),
        Codec(
            "zstd-19",
            _plain(lambda p: ic.zstd_encode(np.ascontiguousarray(p).tobytes(), 19)),
            lambda d, s: np.frombuffer(ic.zstd_decode(d), dtype=np.uint8).reshape(s),
            1,
            "zstd level 19 of the raw pixel bytes (no header): a floor",
        ),
    ]


def idfc_codec(threads: int) -> Codec:
    """idfc with its defaults (``compress_with_stats(pixels)``: the coarse level first, then
    every tile a predictive or LZMA2 region payload)."""
    import idfcompress

    def encode(pixels: np.ndarray) -> Encoded:
        data, stats = idfcompress.compress_with_stats(pixels)
        return data, {"tiles": int(stats.tiles), "coarse_tiles": int(stats.coarse_tiles)}

    return Codec(
        "idfc",
        encode,
        lambda data, shape: idfcompress.decompress(data),
        threads,
        "defaults: coarse level first, every tile a predictive or LZMA2 region payload",
    )


def idfc_codecs(threads: int) -> list[Codec]:
    """The "idfc" entry (the encoder has no model or mode to choose)."""
    return [idfc_codec(threads)]


def all_codecs(threads: int) -> list[Codec]:
    return idfc_codecs(threads) + classic_codecs(threads)


def select_codecs(codecs: list[Codec], patterns: str | None) -> list[Codec]:
    """Codecs whose names match any of the comma-separated shell patterns (all if None)."""
    if not patterns:
        return codecs
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    for pattern in wanted:
        if not any(fnmatch.fnmatchcase(c.name, pattern) for c in codecs):
            names = ", ".join(c.name for c in codecs)
            raise SystemExit(f"benchmark: no codec matches '{pattern}' (available: {names})")
    return [c for c in codecs if any(fnmatch.fnmatchcase(c.name, p) for p in wanted)]


def set_threads(threads: int) -> None:
    """Thread count for idfc's tiles (coded side by side); the imagecodecs codecs receive
    it as numthreads."""
    from idfcompress import set_threads as set_idfc_threads

    set_idfc_threads(threads)


# --------------------------------------------------------------------------- measuring


def _read_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _read_status("VmHWM") is not None
    except OSError:
        return False


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def _release_free_memory() -> None:
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


class PeakMemory:
    """Peak resident set size (RSS) above the level at entry, in bytes, for a block of code.

    On Linux the kernel's own high-water mark (VmHWM) is reset at entry through
    /proc/self/clear_refs and read at exit: exact and free. Elsewhere a thread samples the
    RSS with psutil every millisecond (short peaks can be missed).
    """

    method = "rss-hwm" if _can_reset_peak() else "rss-poll"

    def __enter__(self) -> PeakMemory:
        _release_free_memory()
        self.peak = 0
        if self.method == "rss-hwm":
            self.base = _read_status("VmRSS") or 0
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        else:
            process = psutil.Process()
            self.base = process.memory_info().rss
            self._max = self.base
            self._stop = threading.Event()

            def poll() -> None:
                while not self._stop.wait(0.001):
                    self._max = max(self._max, process.memory_info().rss)

            self._thread = threading.Thread(target=poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.method == "rss-hwm":
            top = _read_status("VmHWM") or 0
        else:
            self._stop.set()
            self._thread.join()
            top = max(self._max, psutil.Process().memory_info().rss)
        self.peak = max(0, top - self.base)


def _colour_and_alpha(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    planes = pixels if pixels.ndim == 3 else pixels[:, :, None]
    channels = planes.shape[2]
    colour = planes[:, :, :3] if channels >= 3 else planes[:, :, :1]
    alpha = planes[:, :, channels - 1] if channels in (2, 4) else None
    return colour, alpha


def same_pixels(original: np.ndarray, decoded: np.ndarray) -> bool:
    """Exactly the original pixels. A grey image may come back as R = G = B, and an alpha
    channel that is opaque everywhere may be dropped or added (WebP drops it)."""
    decoded = np.asarray(decoded)
    if decoded.dtype != np.uint8 or decoded.shape[:2] != original.shape[:2]:
        return False
    if decoded.ndim not in (2, 3) or (decoded.ndim == 3 and decoded.shape[2] > 4):
        return False
    colour, alpha = _colour_and_alpha(original)
    colour_out, alpha_out = _colour_and_alpha(decoded)
    if colour_out.shape[2] == colour.shape[2]:
        same_colour = np.array_equal(colour_out, colour)
    elif colour.shape[2] == 1 and colour_out.shape[2] == 3:
        same_colour = all(np.array_equal(colour_out[:, :, c], colour[:, :, 0]) for c in range(3))
    else:
        return False
    if alpha is None and alpha_out is None:
        same_alpha = True
    elif alpha is None or alpha_out is None:
        same_alpha = bool(np.all((alpha if alpha_out is None else alpha_out) == 255))
    else:
        same_alpha = np.array_equal(alpha, alpha_out)
    return bool(same_colour and same_alpha)


@dataclass
class Result:
    """Every figure of one codec on one image (status: ok, lossy, n/a or error)."""

    image: str
    codec: str
    status: str
    exact: bool | None
    height: int
    width: int
    channels: int
    subpixels: int
    bytes: int | None = None
    bpsp: float | None = None
    ratio_raw: float | None = None
    ratio_png: float | None = None
    encode_s: float | None = None
    decode_s: float | None = None
    encode_mps: float | None = None
    decode_mps: float | None = None
    encode_runs: int = 0
    decode_runs: int = 0
    threads: int = 1
    encode_peak_mib: float | None = None
    decode_peak_mib: float | None = None
    tiles: int | None = None  # idfc only: tiles of the image, and of its coarse level
    coarse_tiles: int | None = None
    note: str = ""
    png_bytes: int | None = None


def _timed_runs(run: Callable[[], object], first_s: float, repeats: int, budget_s: float) -> list:
    """Seconds of each run: the first (already made) plus more until ``repeats`` or the budget."""
    times = [first_s]
    while len(times) < repeats and sum(times) < budget_s:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def measure(
    codec: Codec, image: BenchImage, repeats: int = 3, budget_s: float = 30.0, png_bytes: int = 0
) -> Result:
    """Encode and decode ``image`` with ``codec``, verify the round trip, time it, weigh it.

    The first encode and decode are measured for peak memory and time; further runs (up to
    ``repeats`` in all, fewer once ``budget_s`` seconds are spent) are timed; the medians count.
    """
    result = Result(
        image.name,
        codec.name,
        "ok",
        None,
        image.height,
        image.width,
        image.channels,
        image.subpixels,
        threads=codec.threads,
    )
    result.png_bytes = png_bytes or None
    reason = codec.supports(image)
    if reason:
        result.status, result.note = "n/a", reason
        return result
    pixels, shape = image.pixels, image.pixels.shape
    try:
        with PeakMemory() as memory:
            start = time.perf_counter()
            data, extra = codec.encode(pixels)
            first_encode = time.perf_counter() - start
        result.encode_peak_mib = memory.peak / MEBI
        with PeakMemory() as memory:
            start = time.perf_counter()
            decoded = codec.decode(data, shape)
            first_decode = time.perf_counter() - start
        result.decode_peak_mib = memory.peak / MEBI
        exact = same_pixels(pixels, decoded)
        encode_times = _timed_runs(lambda: codec.encode(pixels), first_encode, repeats, budget_s)

        def decode_and_check() -> None:
            nonlocal exact
            exact = same_pixels(pixels, codec.decode(data, shape)) and exact

        decode_times = _timed_runs(decode_and_check, first_decode, repeats, budget_s)
    except Exception as exc:  # a codec failing on an image is a result, not a crash
        result.status, result.note = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
        return result
    result.exact = bool(exact)
    result.status = "ok" if exact else "lossy"
    if not exact:
        result.note = "decoded pixels differ from the original"
    result.bytes = len(data)
    result.bpsp = 8.0 * len(data) / image.subpixels
    result.ratio_raw = image.subpixels / len(data)
    result.ratio_png = png_bytes / len(data) if png_bytes else None
    result.encode_s = statistics.median(encode_times)
    result.decode_s = statistics.median(decode_times)
    result.encode_runs, result.decode_runs = len(encode_times), len(decode_times)
    result.encode_mps = image.megapixels / result.encode_s if result.encode_s > 0 else math.inf
    result.decode_mps = image.megapixels / result.decode_s if result.decode_s > 0 else math.inf
    result.tiles, result.coarse_tiles = extra.get("tiles"), extra.get("coarse_tiles")
    return result


def warm_up(images: Sequence[BenchImage], codecs: Sequence[Codec], side: int = 64) -> None:
    """Code a small crop once with each codec, so one-time set-up (lazy imports, thread pools,
    tables) is neither timed nor counted as the memory of the first image."""
    for codec in codecs:
        for image in images:
            if codec.supports(image) is None:
                crop = BenchImage(image.name, np.ascontiguousarray(image.pixels[:side, :side]))
                try:
                    codec.decode(codec.encode(crop.pixels)[0], crop.pixels.shape)
                except Exception:  # measure() reports it on the real images
                    pass
                break


def run_benchmark(
    images: Sequence[BenchImage],
    codecs: Sequence[Codec],
    repeats: int = 3,
    budget_s: float = 30.0,
    progress: bool = True,
) -> list[Result]:
    """Every codec on every image; PNG (Pillow, optimize) sizes are the reference for ratio_png."""
    warm_up(images, codecs)
    results = []
    for i, image in enumerate(images, 1):
        png_bytes = len(png_encode(image.pixels))
        if progress:
            log(f"[{i}/{len(images)}] {image.name} {image.width}x{image.height}x{image.channels}")
        for codec in codecs:
            start = time.perf_counter()
            result = measure(codec, image, repeats, budget_s, png_bytes)
            results.append(result)
            if progress:
                if result.status in ("ok", "lossy"):
                    flag = "exact" if result.exact else "NOT LOSSLESS"
                    what = f"{result.bpsp:.3f} bpsp, {flag}"
                else:
                    what = f"{result.status}: {result.note}"
                log(f"    {codec.name:<14} {what} ({time.perf_counter() - start:.1f} s)")
    return results


# --------------------------------------------------------------------------- totals and output


@dataclass
class Total:
    """A codec over the whole set: sizes summed over all subpixels it coded."""

    codec: str
    lossless: bool
    images: int
    images_total: int
    subpixels: int
    threads: int = 1
    bytes: int | None = None
    bpsp: float | None = None
    ratio_raw: float | None = None
    ratio_png: float | None = None
    encode_mps: float | None = None
    decode_mps: float | None = None
    encode_peak_mib: float | None = None
    decode_peak_mib: float | None = None
    lossy_images: list[str] = field(default_factory=list)
    failed_images: list[str] = field(default_factory=list)
    note: str = ""


def kind_of(channels: int) -> str:
    return "grey" if channels in (1, 2) else "colour"


def _failures(rows: Sequence[Result], shown: int = 4) -> str:
    """'a.png, b.png (reason); c.png (other reason)', at most ``shown`` names per reason."""
    reasons: dict[str, list[str]] = {}
    for r in rows:
        reasons.setdefault(r.note or r.status, []).append(r.image)
    parts = []
    for reason, names in reasons.items():
        listed = ", ".join(names[:shown]) + (
            f" and {len(names) - shown} more" if len(names) > shown else ""
        )
        parts.append(f"{listed} ({reason})")
    return "; ".join(parts)


def totals(
    results: Sequence[Result], codecs: Sequence[Codec] | None = None, kind: str | None = None
) -> list[Total]:
    """Per codec: bits per subpixel over all subpixels of the images it coded exactly, total
    megapixels over total median seconds, the largest peak memory. A codec that was not
    lossless on some image is flagged (``lossless`` False) and gets no figures. Ranked by
    bits per subpixel, codecs that coded only part of the set after the others.
    ``kind`` ("colour" or "grey") restricts the totals to those images."""
    if kind is not None:
        results = [r for r in results if kind_of(r.channels) == kind]
    names = [c.name for c in codecs] if codecs else list(dict.fromkeys(r.codec for r in results))
    image_count = len({r.image for r in results})
    out = []
    for name in names:
        rows = [r for r in results if r.codec == name]
        good = [r for r in rows if r.status == "ok"]
        lossy = [r.image for r in rows if r.status == "lossy"]
        failed = [r.image for r in rows if r.status in ("error", "n/a")]
        threads = rows[0].threads if rows else 1
        total = Total(
            name, not lossy, len(good), image_count, sum(r.subpixels for r in good), threads
        )
        total.lossy_images, total.failed_images = lossy, failed
        if lossy:
            total.note = f"NOT LOSSLESS on {len(lossy)} image(s): excluded"
        elif failed:
            total.note = "not coded: " + _failures([r for r in rows if r.image in failed])
        if good and not lossy:
            size = sum(r.bytes for r in good)
            megapixels = sum(r.height * r.width for r in good) / 1e6
            total.bytes = size
            total.bpsp = 8.0 * size / total.subpixels
            total.ratio_raw = total.subpixels / size
            if all(r.png_bytes for r in good):
                total.ratio_png = sum(r.png_bytes for r in good) / size
            encode_s, decode_s = sum(r.encode_s for r in good), sum(r.decode_s for r in good)
            total.encode_mps = megapixels / encode_s if encode_s > 0 else math.inf
            total.decode_mps = megapixels / decode_s if decode_s > 0 else math.inf
            total.encode_peak_mib = max(r.encode_peak_mib for r in good)
            total.decode_peak_mib = max(r.decode_peak_mib for r in good)
        out.append(total)
    # best first; totals over only part of the set (not comparable) and flagged codecs last
    return sorted(out, key=lambda t: (t.bpsp is None, t.images < t.images_total, t.bpsp or 0.0))


def _fmt(value, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _speed(value: float | None) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]], right: int) -> str:
    align = ["---"] * right + ["--:"] * (len(header) - right)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def totals_table(rows: Sequence[Total]) -> str:
    header = [
        "codec",
        "lossless",
        "images",
        "bits/subpixel",
        "× raw",
        "× PNG",
        "enc MP/s",
        "dec MP/s",
        "threads",
        "enc peak MiB",
        "dec peak MiB",
    ]
    body = []
    for t in rows:
        lossless = "yes" if t.lossless and t.images else ("NO" if not t.lossless else "–")
        body.append(
            [
                t.codec,
                lossless,
                f"{t.images}/{t.images_total}",
                *_size_and_speed_cells(t),
                str(t.threads),
                *_memory_cells(t),
            ]
        )
    return _markdown(header, body, 2)


def _size_and_speed_cells(x: Result | Total) -> list[str]:
    """bits/subpixel, ratios and speeds, as the per-image and total tables show them."""
    return [
        _fmt(x.bpsp),
        _fmt(x.ratio_raw, 2),
        _fmt(x.ratio_png, 3),
        _speed(x.encode_mps),
        _speed(x.decode_mps),
    ]


def _memory_cells(x: Result | Total) -> list[str]:
    """Peak memory, as the per-image and total tables show it."""
    return [_fmt(x.encode_peak_mib, 1), _fmt(x.decode_peak_mib, 1)]


def per_image_table(results: Sequence[Result]) -> str:
    header = [
        "image",
        "codec",
        "status",
        "bits/subpixel",
        "× raw",
        "× PNG",
        "enc MP/s",
        "dec MP/s",
        "enc peak MiB",
        "dec peak MiB",
    ]
    body = []
    for r in results:
        status = {"ok": "exact", "lossy": "NOT LOSSLESS"}.get(r.status, r.status)
        body.append(
            [
                r.image,
                r.codec,
                status,
                *_size_and_speed_cells(r),
                *_memory_cells(r),
            ]
        )
    return _markdown(header, body, 3)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int, repeats: int, budget_s: float) -> dict:
    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "repeats": repeats,
        "time_budget_s": budget_s,
        "timing": "median wall-clock (time.perf_counter) of up to `repeats` runs, first included",
        "memory_method": PeakMemory.method,
        "memory": "peak RSS above the RSS at the start of the first encode / decode",
        "pillow": Image.__version__,
    }
    if imagecodecs is not None:
        info["imagecodecs"] = imagecodecs.__version__
        versions = imagecodecs.version(dict)
        for key in ("libjxl", "libwebp", "openjpeg", "charls", "libavif", "qoi", "zstd"):
            if key in versions:
                info[key] = versions[key]
    try:
        import idfcompress

        info["idfcompress"] = idfcompress.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def write_outputs(
    out_dir: Path,
    results: Sequence[Result],
    rows: Sequence[Total],
    codecs: Sequence[Codec],
    meta: dict,
    images: Sequence[BenchImage],
    by_kind: dict[str, list[Total]] | None = None,
) -> dict[str, Path]:
    """results.csv (per image, then TOTAL rows), results.json (everything) and the plot."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow(asdict(r))
        for t in rows:
            row = asdict(t)
            row.update(
                image="TOTAL",
                status="ok" if t.lossless else "lossy",
                exact=t.lossless,
                channels="",
                note=t.note,
            )
            writer.writerow(row)
    document = {
        "meta": meta,
        "codecs": [{"name": c.name, "threads": c.threads, "settings": c.settings} for c in codecs],
        "images": [
            {"name": i.name, "height": i.height, "width": i.width, "channels": i.channels}
            for i in images
        ],
        "results": [asdict(r) for r in results],
        "totals": [asdict(t) for t in rows],
        "totals_by_kind": {k: [asdict(t) for t in v] for k, v in (by_kind or {}).items()},
    }
    with open(paths["json"], "w") as handle:
        json.dump(document, handle, indent=1, default=lambda v: None)
    plot = plot_results(rows, out_dir / "bpsp_vs_decode.png", meta)
    if plot:
        paths["plot"] = plot
    return paths


# Candidate places for a label, in points from its point: beside, above, below and on the
# diagonals, then the same farther out (with a leader line), in that order of preference.
_LABEL_OFFSETS = tuple(
    (dx * r, dy * r)
    for r in (5, 14, 26)
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
)


def _overlap(a, b) -> float:
    """Area shared by two display-space boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box, frame) -> float:
    """Area of ``box`` that lies outside ``frame``."""
    return box.width * box.height - _overlap(box, frame)


def place_labels(ax, points: Sequence[tuple[float, float, str]], fontsize: float = 8) -> list:
    """Label each (x, y, text) point of ``ax`` at the first candidate place where the text
    covers no marker, no other label and nothing outside the axes; where none is free, at
    the place that covers least. Returns the annotations (tests check their boxes)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    radius = 4 * fig.dpi / 72  # a default scatter marker (6 points wide), with a margin
    taken = [
        Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)
        for px, py in (ax.transData.transform((x, y)) for x, y, _ in points)
    ]
    annotations = []
    for x, y, text in points:
        best = None
        for dx, dy in _LABEL_OFFSETS:
            far = abs(dx) > 5 or abs(dy) > 5
            annotation = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                fontsize=fontsize,
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if far else None,
            )
            annotation.update_positions(renderer)
            box = Text.get_window_extent(annotation, renderer).expanded(1.04, 1.1)
            cost = sum(_overlap(box, other) for other in taken) + _outside(box, frame)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, annotation, box)
            else:
                annotation.remove()
            if cost == 0:
                break
        assert best is not None
        annotations.append(best[1])
        taken.append(best[2])
    return annotations


def plot_results(rows: Sequence[Total], path: Path, meta: dict) -> Path | None:
    """Bits per subpixel against decode speed (log x), one labelled point per lossless codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [t for t in rows if t.lossless and t.bpsp is not None and t.decode_mps]
    points = [t for t in points if math.isfinite(t.decode_mps)]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.set_xscale("log")
    for t in points:
        colour = "tab:red" if t.codec.startswith("idfc") else "tab:blue"
        ax.scatter(t.decode_mps, t.bpsp, color=colour, zorder=3)
    ax.margins(x=0.25, y=0.15)  # room for the labels of the outermost points
    ax.set_xlabel(f"decode speed, megapixels/s (log; {meta.get('threads', '?')} threads)")
    ax.set_ylabel("bits per subpixel (lower is better)")
    ax.set_title(meta.get("title", "lossless codecs"), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()  # fixes the limits and layout the labels are placed in
    labels = [
        t.codec if t.images == t.images_total else f"{t.codec} ({t.images}/{t.images_total})"
        for t in points
    ]
    place_labels(ax, [(t.decode_mps, t.bpsp, lab) for t, lab in zip(points, labels, strict=True)])
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare idfc with classic lossless codecs (size, speed, memory).",
        epilog="With no DIR|FILE: the photos bundled with scikit-image. See docs/BENCHMARK.md.",
    )
    parser.add_argument("targets", nargs="*", metavar="DIR|FILE", help="image folders or files")
    parser.add_argument("--codecs", help="comma-separated names or patterns, e.g. 'png,jxl*,idfc*'")
    parser.add_argument("--list-codecs", action="store_true", help="list the codecs and exit")
    parser.add_argument("--limit", type=int, help="at most N images per folder (sorted by name)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per step (median)")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=30.0,
        metavar="S",
        help="stop repeating a step once its runs took S seconds (default 30)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for idfc and the other codecs"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="output folder")
    parser.add_argument("--per-image", action="store_true", help="also print per-image rows")
    parser.add_argument(
        "--replot",
        type=Path,
        metavar="DIR",
        help="only redraw DIR/bpsp_vs_decode.png from DIR/results.json (no codec runs)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--repeats, --threads and --limit must be at least 1")
    return args


def replot(folder: Path) -> Path | None:
    """Redraw a finished run's plot from its results.json."""
    document = json.loads((folder / "results.json").read_text())
    rows = [Total(**t) for t in document["totals"]]
    return plot_results(rows, folder / "bpsp_vs_decode.png", document["meta"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        log(f"benchmark: wrote {replot(args.replot)}")
        return 0
    missing = missing_dependencies()
    if missing:
        print(
            f"benchmark: missing {', '.join(missing)}; install the extra with "
            "scripts/setup.sh bench (or, in a venv, "
            "python -m pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 2
    set_threads(args.threads)
    codecs = select_codecs(all_codecs(args.threads), args.codecs)
    if args.list_codecs:
        for codec in codecs:
            print(f"{codec.name:<16} threads={codec.threads}  {codec.settings}")
        return 0
    images = load_images(args.targets, args.limit)
    if not images:
        raise SystemExit("benchmark: no images to measure")
    what = ", ".join(args.targets) if args.targets else "scikit-image photos"
    log(
        f"benchmark: {len(images)} images ({what}), {len(codecs)} codecs, "
        f"{args.threads} threads, {args.repeats} repeats, memory by {PeakMemory.method}"
    )
    results = run_benchmark(images, codecs, args.repeats, args.time_budget)
    rows = totals(results, codecs)
    meta = environment(args.threads, args.repeats, args.time_budget)
    meta["command"] = " ".join(
        ["scripts/benchmark.py", *(argv if argv is not None else sys.argv[1:])]
    )
    meta["title"] = f"{len(images)} images: {what}"
    kinds = sorted({kind_of(i.channels) for i in images})
    by_kind = {k: totals(results, codecs, k) for k in kinds} if len(kinds) > 1 else {}
    paths = write_outputs(args.out, results, rows, codecs, meta, images, by_kind)
    megapixels = sum(i.megapixels for i in images)
    print(
        f"Totals over {len(images)} images ({what}; {megapixels:.2f} MP, "
        f"{sum(i.subpixels for i in images)} subpixels). {meta['processor']}, "
        f"{args.threads} threads, median of up to {args.repeats} runs, "
        f"peak memory by {PeakMemory.method}:\n"
    )
    print(totals_table(rows))
    for kind, kind_rows in by_kind.items():
        count = sum(1 for i in images if kind_of(i.channels) == kind)
        print(f"\n{kind.capitalize()} images only ({count}):\n")
        print(totals_table(kind_rows))
    if args.per_image:
        print("\nPer image:\n")
        print(per_image_table(results))
    notes = [f"- {row.codec}: {row.note}" for row in rows if row.note]
    if notes:
        print("\n" + "\n".join(notes))
    log("benchmark: wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
