"""What ``compress``, ``decompress`` and ``test`` do with one file, as a function that runs
the same in this process, in a local worker process or on a Dask worker.

A job never prints and never exits: it returns an :class:`Outcome` whose lines the batch
prints in input order. Every error about the file becomes one line (``idfc: NAME: ...``);
only KeyboardInterrupt goes through.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import IdfError, IdfWarning, UnsupportedImage
from .files import STDIO, Failure, StdoutClosed, check_target, read_idf, read_input, write_output

MAX_PIXELS = 1 << 28  # codec.decoder.MAX_PIXELS, not imported for start-up time (a test checks)
DEFAULT_TILE_SIZE = 256  # codec.encoder.DEFAULT_TILE_SIZE (the same test)
JPEG_MAGIC = b"\xff\xd8\xff"
IDF_MAGIC = b"\x89IDF\r\n\x1a\n"  # format.container.MAGIC (the same test)
Progress = Callable[[int, int], None]


def _one_line(message, category, filename, lineno, file=None, line=None):
    """idfcompress's own warnings (metadata left out, odd inputs) as one stderr line."""
    if issubclass(category, IdfWarning):
        print(f"idfc: warning: {message}", file=sys.stderr)
    else:
        _show(message, category, filename, lineno, file, line)


_show = warnings.showwarning
warnings.showwarning = _one_line


@dataclass(frozen=True)
class Settings:
    """The options of one command, the same for every file of a batch."""

    force: bool = False
    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    tile_size: int = DEFAULT_TILE_SIZE
    verify: bool = False
    max_pixels: int | None = MAX_PIXELS


@dataclass(frozen=True)
class Task:
    """One file: ``source`` is what the job opens, ``name`` what the messages call it."""

    command: str  # "compress", "decompress" or "test"
    source: str
    name: str
    target: str | None = None
    make_folders: bool = False


@dataclass
class Outcome:
    """What a job did: the lines to print and the sizes for the summary."""

    name: str
    ok: bool = False
    lines: list[str] = field(default_factory=list)
    traceback: str = ""
    in_bytes: int = 0
    out_bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0
    stop: bool = False  # standard output was closed: nothing more can be written


def _where(target: str) -> str:
    return "stdout" if target == STDIO else target


def _not_idf(head: bytes) -> None:
    if head.startswith(IDF_MAGIC):
        raise Failure("already an .idf file (idfc decompress gives the image back)")


def _image(raw: bytes):  # noqa: ANN202 - an imageio.PixelImage
    from .. import api

    try:
        return api.read_image(raw)
    except UnsupportedImage as exc:
        if "cannot identify image file" in str(exc):
            raise Failure("not an image file (none of the formats Pillow reads)") from None
        raise


def _warm_up() -> None:
    from .. import api

    with contextlib.suppress(Exception):  # a real failure shows in the compress itself
        api.warm_up()


def compress_summary(name: str, raw: bytes, out_bytes: int, target: str) -> str:
    """``photo.png : 61.20%   (120351 => 73654 bytes, photo.png.idf)``: the share of the
    input FILE's size, and a word when the output is the larger."""
    line = (
        f"{name} : {100 * out_bytes / len(raw):6.2f}%   ({len(raw)} => {out_bytes} bytes, "
        f"{_where(target)})"
    )
    if out_bytes > len(raw):
        line += "; larger than the input file"
        if raw.startswith(JPEG_MAGIC):
            line += " (JPEG is lossy: a lossless copy of its decoded pixels is usually bigger)"
    return line


def _compress(task: Task, settings: Settings, progress: Progress | None) -> Outcome:
    from .. import api

    assert task.target is not None
    raw = read_input(task.source, check=_not_idf)
    check_target(task.target, settings.force, task.make_folders)
    started = time.perf_counter()
    # the coder's tables and compiled code get ready while the image is decoded
    threading.Thread(target=_warm_up, daemon=True, name="idfc-warm-up").start()
    image = _image(raw)
    data, stats = api.compress_with_stats(
        image, tile_size=settings.tile_size, verify=settings.verify, progress=progress
    )
    seconds = time.perf_counter() - started
    write_output(task.target, data, settings.force, task.source, task.make_folders)
    pixels = image.width * image.height
    done = Outcome(task.name, True, [], "", len(raw), len(data), pixels, seconds)
    if not settings.quiet:
        done.lines.append(compress_summary(task.name, raw, len(data), task.target))
    if settings.verbose:
        done.lines.append(
            f"  {stats.bits_per_subpixel:.4f} bits/subpixel; {stats.tiles} tiles after "
            f"{stats.coarse_tiles} of the coarse level; "
            f"{pixels / 1e6 / max(seconds, 1e-9):.2f} MP/s"
        )
    return done


def _decompress(task: Task, settings: Settings, progress: Progress | None) -> Outcome:
    from .. import api
    from ..imageio import encode_image, output_format

    assert task.target is not None
    data = read_idf(task.source)
    fmt = "PNG" if task.target == STDIO else output_format(task.target)
    check_target(task.target, settings.force, task.make_folders)
    started = time.perf_counter()
    image = api.decompress_pixels(data, max_pixels=settings.max_pixels)
    encoded = encode_image(image, fmt)
    seconds = time.perf_counter() - started
    write_output(task.target, encoded, settings.force, task.source, task.make_folders)
    lines = (
        []
        if settings.quiet
        else [f"{task.name} : {image.width}x{image.height} {image.mode} => {_where(task.target)}"]
    )
    pixels = image.width * image.height
    return Outcome(task.name, True, lines, "", len(data), len(encoded), pixels, seconds)


def _test(task: Task, settings: Settings, progress: Progress | None) -> Outcome:
    from .. import api

    data = read_idf(task.source)
    started = time.perf_counter()
    image = api.decompress_pixels(data, max_pixels=settings.max_pixels)
    seconds = time.perf_counter() - started
    lines = (
        [] if settings.quiet else [f"{task.name} : OK ({image.width}x{image.height} {image.mode})"]
    )
    return Outcome(task.name, True, lines, "", len(data), 0, image.width * image.height, seconds)


JOBS = {"compress": _compress, "decompress": _decompress, "test": _test}
OUT_OF_MEMORY = (
    "not enough memory for this image (a smaller --tile-size or --max-pixels bounds what a "
    "command needs)"
)


def error_message(exc: BaseException) -> str:
    """The one line that tells the user what went wrong with a file."""
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY
    if isinstance(exc, (Failure, IdfError, OSError, ValueError)):
        return str(exc) or exc.__class__.__name__
    return f"internal error ({exc.__class__.__name__}: {exc}); rerun with --debug"


def run_task(task: Task, settings: Settings, progress: Progress | None = None) -> Outcome:
    """Run one job; an error becomes a failed Outcome with one line (KeyboardInterrupt and
    SystemExit go through)."""
    try:
        return JOBS[task.command](task, settings, progress)
    except Exception as exc:  # noqa: BLE001 - one line per file, the traceback with --debug
        return Outcome(
            task.name,
            False,
            [f"idfc: {task.name}: {error_message(exc)}"],
            "".join(traceback.format_exception(exc)) if settings.debug else "",
            stop=isinstance(exc, StdoutClosed),
        )
