"""The ``idfc`` command line: parses arguments and calls the Python API."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import click

from . import __version__, api, container, progressive
from .codec import DEFAULT_TILE_SIZE, MAX_PIXELS
from .errors import IdfError, TruncatedFile
from .imageio import encode_image, output_format
from .model_io import DEFAULT_MODELS, available_models

EXIT_CODES = """\b
Exit codes:
  0  every input was processed
  1  an error with at least one input (the others are still processed)
  2  usage error (bad option or argument)
  130 interrupted (Ctrl-C); no partial output is left behind"""

PREVIEW_EXIT = 3
PREVIEW_EXIT_CODES = EXIT_CODES.replace(
    "\n  130 ",
    f"\n  {PREVIEW_EXIT}  only a preview, not the exact image, was written or shown: the data"
    "\n     ended early (decompress --bytes N / --progressive DIR, view)\n  130 ",
)

STDIO = "-"
threads_option = click.option(
    "-T",
    "--threads",
    type=click.IntRange(1, 1024),
    help="CPU threads for the networks [default: PyTorch's, usually the core count]. Files "
    "and images are identical whatever the count (exact integer arithmetic, docs/FORMAT.md).",
)
max_pixels_option = click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=MAX_PIXELS,
    show_default=True,
    help="Refuse images with more pixels (decompression-bomb guard).",
)


class Failure(Exception):
    """An error about one input, reported in one line."""


def _debug() -> bool:
    return bool(os.environ.get("IDFC_DEBUG")) or bool(
        click.get_current_context().find_root().params.get("debug")
    )


def _report(name: str, exc: BaseException) -> None:
    if _debug():
        traceback.print_exception(exc)
    message = str(exc) or exc.__class__.__name__
    click.echo(f"idfc: {name}: {message}", err=True)


def _read_input(name: str) -> bytes:
    if name == STDIO:
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except IsADirectoryError:
        raise Failure("is a directory") from None
    except OSError as exc:
        raise Failure(exc.strerror or str(exc)) from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _unnamed_file(folder: Path) -> int | None:
    """A file without a name in ``folder`` (Linux ``O_TMPFILE``), or None if unsupported."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, flag | os.O_RDWR | os.O_CLOEXEC, 0o666)
    except OSError:  # a filesystem or kernel without O_TMPFILE: use a named temporary file
        return None


def _link_unnamed(handle: BinaryIO, folder: Path, name: str) -> bool:
    """Give the unnamed file of ``handle`` the name ``folder/name``; False if impossible.

    Raises FileExistsError if that name exists.
    """
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(
            f"/proc/self/fd/{handle.fileno()}",
            name,
            src_dir_fd=dir_fd,  # any dir fd makes os.link call linkat(), which can follow
            dst_dir_fd=dir_fd,
            follow_symlinks=True,
        )
        return True
    except FileExistsError:
        raise
    except OSError:
        return False
    finally:
        os.close(dir_fd)


def _hidden_copy(handle: BinaryIO, folder: Path, path: Path) -> str:
    """A named temporary file in ``folder`` with the unnamed file's content."""
    for _ in range(100):
        name = f".{path.name}.{os.urandom(4).hex()}.part"
        try:
            if _link_unnamed(handle, folder, name):
                return str(folder / name)
            break
        except FileExistsError:
            continue
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    with os.fdopen(fd, "wb") as copy:
        handle.seek(0)
        shutil.copyfileobj(handle, copy)
        copy.flush()
        os.fsync(copy.fileno())
    return tmp


@contextlib.contextmanager
def _atomic_output(path: Path, force: bool) -> Iterator[Callable[[bytes], None]]:
    """Yield a writer; the file appears complete at ``path`` or not at all.

    The data goes to a file without a name in the target folder (Linux ``O_TMPFILE``) that
    is linked to ``path`` once complete, so not even a killed process leaves a partial file
    behind. Elsewhere it goes to a hidden ``.NAME.*.part`` file that is removed on any error
    or interruption (only SIGKILL can leave it behind).
    """
    if path.exists() and not force:
        raise Failure(f"{path} already exists (use -f to overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    fd = _unnamed_file(folder)
    tmp = None
    if fd is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle.write
            handle.flush()
            os.fsync(handle.fileno())
            if tmp is None:
                try:
                    if _link_unnamed(handle, folder, path.name):
                        return
                except FileExistsError:
                    if not force:
                        raise Failure(f"{path} already exists (use -f to overwrite)") from None
                tmp = _hidden_copy(handle, folder, path)  # then renamed over the old file
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the output appeared meanwhile: never clobber
            except FileExistsError:
                raise Failure(f"{path} already exists (use -f to overwrite)") from None
            except OSError:
                os.replace(tmp, path)
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _write_output(target: str, data: bytes, force: bool, source: str) -> None:
    if target == STDIO:
        if sys.stdout.isatty():
            raise Failure("stdout is a terminal, aborting (redirect it or use -o)")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    if source != STDIO and path.exists() and path.resolve() == Path(source).resolve():
        raise Failure("refusing to overwrite the input")
    try:
        with _atomic_output(path, force) as write:
            write(data)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from None


def _target(source: str, output: str | None, stdout: bool, several: bool, suffix: str) -> str:
    if stdout or (source == STDIO and output is None):
        return STDIO
    if output is not None and (several or Path(output).is_dir()):
        base = "stdin" if source == STDIO else Path(source).stem
        return str(Path(output) / (base + suffix))
    if output is not None:
        return output
    return str(Path(source).with_suffix(suffix))


def _check_output_option(inputs: tuple[str, ...], output: str | None) -> None:
    if output and len(inputs) > 1 and not Path(output).is_dir():
        raise click.UsageError(
            f"with several inputs, -o must name an existing directory ({output})"
        )


def _progress(name: str, quiet: bool) -> Callable[[int, int], None] | None:
    if quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        click.echo(f"\r{name}: {100 * done // total:3d}% of tiles", err=True, nl=False)
        if end:
            click.echo("\r" + " " * (len(name) + 20) + "\r", err=True, nl=False)

    return show


def _run(inputs: tuple[str, ...], one: Callable[[str], None]) -> None:
    failed = False
    for name in inputs:
        try:
            one(name)
        except KeyboardInterrupt:
            click.echo("idfc: interrupted", err=True)
            sys.exit(130)
        except (Failure, IdfError, OSError, ValueError) as exc:
            _report(name, exc)
            failed = True
        except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with --debug
            _report(
                name,
                RuntimeError(
                    f"internal error ({exc.__class__.__name__}: {exc}); rerun with --debug"
                ),
            )
            failed = True
    if failed:
        sys.exit(1)


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=PREVIEW_EXIT_CODES)
@click.version_option(
    __version__,
    message="idfc %(version)s (default models: "
    + ", ".join(f"{n} for {c} channel(s)" for c, n in sorted(DEFAULT_MODELS.items()))
    + ")",
)
@click.option("--debug", is_flag=True, help="Show tracebacks (also: IDFC_DEBUG=1).")
def main(debug: bool) -> None:
    """Lossless image compression with an Integer Discrete Flow.

    \b
    idfc compress photo.png          writes photo.idf, keeps photo.png
    idfc decompress photo.idf -o out.png
    idfc info photo.idf
    """


@main.command(epilog=EXIT_CODES)
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file, or directory when several inputs are given.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output.")
@click.option(
    "--model",
    help="Model name (see 'idfc models') or path to a .safetensors file, for the tiles the "
    "flow codes (--progressive, -e 2).",
)
@click.option(
    "--tile-size",
    type=click.IntRange(8, 65528),
    default=DEFAULT_TILE_SIZE,
    show_default=True,
    help="Tile side in pixels (a multiple of 8); bounds memory use.",
)
@click.option(
    "-e",
    "--effort",
    type=click.IntRange(1, 2),
    default=api.DEFAULT_EFFORT,
    show_default=True,
    help="1: code every tile with the predictive (or LZMA) region coder; 2: also run the "
    "flow on every tile and keep the smaller (about 2x the time; on photographs the flow "
    "has not yet won a tile).",
)
@click.option(
    "--progressive",
    is_flag=True,
    help="Code every tile with the flow, coarsest level first, so that any prefix of the "
    "file shows the whole picture (idfc view, decompress --bytes); files 10-14 % larger and "
    "encoding about 2x slower than the default.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Decode each output and compare it with its input before writing it (about 2.5x "
    "the time).",
)
@threads_option
@click.option("-q", "--quiet", is_flag=True, help="No summary lines.")
@click.option("-v", "--verbose", is_flag=True, help="Also print ideal size, overhead and speed.")
def compress(
    images: tuple[str, ...],
    output: str | None,
    force: bool,
    to_stdout: bool,
    model: str | None,
    tile_size: int,
    effort: int,
    progressive: bool,
    verify: bool,
    threads: int | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Compress IMAGES (PNG, TIFF, BMP, ... or - for stdin) to .idf files.

    Each output is written next to its input with the suffix .idf, unless -o or -c says
    otherwise; inputs are never modified. 8-bit L, LA, RGB and RGBA images are stored exactly;
    P (palette) images come back as RGB(A) and 1-bit images as L. ICC profiles and EXIF are kept.
    """
    if tile_size % 8:
        raise click.BadParameter("must be a multiple of 8", param_hint="--tile-size")
    _check_output_option(images, output)
    _threads(threads)

    def one(name: str) -> None:
        target = _target(name, output, to_stdout, len(images) > 1, ".idf")
        if target != STDIO and Path(target).exists() and not force:
            raise Failure(f"{target} already exists (use -f to overwrite)")
        raw = _read_input(name)
        started = time.perf_counter()
        image = api.read_image(raw)
        data, stats = api.compress_with_stats(
            image,
            model=model,
            tile_size=tile_size,
            effort=effort,
            allow_raw=not progressive,
            verify=verify,
            progress=_progress(name, quiet),
        )
        seconds = time.perf_counter() - started
        _write_output(target, data, force, name)
        if not quiet:
            raw_size = image.pixels.size
            click.echo(
                f"{name} : {100 * len(data) / raw_size:6.2f}%   ({raw_size} => {len(data)} bytes, "
                f"{'stdout' if target == STDIO else target})",
                err=True,
            )
        if verbose:
            flow = (
                f"flow streams and margins {8 * stats.flow_bytes} bits vs ideal "
                f"{stats.ideal_bits:.0f} ({100 * stats.overhead:+.3f} %); "
                if stats.flow_bytes
                else ""
            )
            click.echo(
                f"  {stats.bits_per_subpixel:.4f} bits/subpixel; {flow}"
                f"{stats.raw_tiles}/{stats.tiles} tiles as region payloads; "
                f"{image.width * image.height / 1e6 / seconds:.2f} MP/s",
                err=True,
            )

    _run(images, one)


class _ByteCount(click.ParamType):
    """A byte count (``1500``) or a percentage of the file (``30%``)."""

    name = "byte count"

    class Value:
        def __init__(self, count: int | None, percent: float | None) -> None:
            self.count, self.percent = count, percent

        def of(self, size: int) -> int:
            if self.percent is not None:
                return int(size * self.percent / 100)
            assert self.count is not None
            return self.count

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, _ByteCount.Value):
            return value
        text = str(value).strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
                if 0 <= percent <= 100:
                    return _ByteCount.Value(None, percent)
            elif int(text) >= 0:
                return _ByteCount.Value(int(text), None)
        except ValueError:
            pass
        self.fail(f"{value!r} is not a byte count or a percentage (like 4096 or 30%)", param, ctx)


def _preview_note(name: str, stage: progressive.Stage, received: int) -> None:
    """The one stderr line that goes with exit code 3."""
    click.echo(
        f"idfc: {name}: preview only, not the exact image: stage {stage.index} of {stage.count} "
        f"from {received} of {stage.total_bytes} bytes",
        err=True,
    )


def _decompress_stages(
    files: tuple[str, ...],
    output: str | None,
    force: bool,
    to_stdout: bool,
    max_pixels: int,
    quiet: bool,
    folder: str | None,
    byte_limit: _ByteCount.Value | None,
) -> None:
    """decompress --progressive DIR and/or --bytes N: exit code 3 when only a preview is out."""
    if len(files) > 1:
        raise click.UsageError("--progressive and --bytes take a single FILE")
    if folder is not None and (output is not None or to_stdout):
        raise click.UsageError("--progressive writes DIR/stage-K.png; drop -o/-c")
    preview: list[tuple[progressive.Stage, int]] = []

    def one(name: str) -> None:
        data = _read_input(name)
        if byte_limit is not None:
            data = data[: byte_limit.of(len(data))]
        if folder is None:
            target = _target(name, output, to_stdout, False, ".png")
            fmt = "PNG" if target == STDIO else output_format(target)
            if target != STDIO and Path(target).exists() and not force:
                raise Failure(f"{target} already exists (use -f to overwrite)")
            stage = progressive.decode_preview(data, max_pixels=max_pixels)
            _write_output(target, encode_image(stage.image, fmt), force, name)
            written = "stdout" if target == STDIO else target
        else:
            stage = _write_stages(name, data, Path(folder), force, max_pixels)
            written = f"{folder}/stage-1.png … stage-{stage.index}.png"
        if not stage.exact:
            preview.append((stage, len(data)))
            _preview_note(name, stage, len(data))
        elif not quiet:
            image = stage.image
            click.echo(f"{name} : {image.width}x{image.height} {image.mode} => {written}", err=True)

    _run(files, one)
    if preview:
        sys.exit(PREVIEW_EXIT)


def _write_stages(
    name: str, data: bytes, folder: Path, force: bool, max_pixels: int
) -> progressive.Stage:
    """Write DIR/stage-K.png for every stage ``data`` allows; returns the last one."""
    last = None
    try:
        for stage in progressive.decode_progressive(data, max_pixels=max_pixels):
            if last is None:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise Failure(f"cannot create {folder}: {exc.strerror or exc}") from None
                if not force:
                    for k in range(1, stage.count + 1):
                        if (folder / f"stage-{k}.png").exists():
                            raise Failure(f"{folder / f'stage-{k}.png'} already exists (use -f)")
            _write_output(
                str(folder / f"stage-{stage.index}.png"), encode_image(stage.image), force, name
            )
            last = stage
    except TruncatedFile:
        if last is None:
            raise
    assert last is not None
    return last


@main.command(epilog=PREVIEW_EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-o", "--output", help="Output image (format from its extension, PNG by default), or directory."
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write a PNG to standard output.")
@max_pixels_option
@threads_option
@click.option("-q", "--quiet", is_flag=True, help="No summary lines.")
@click.option(
    "--progressive",
    "progressive_dir",
    metavar="DIR",
    help="Write every stage: DIR/stage-1.png (coarse) ... stage-N.png (the exact image).",
)
@click.option(
    "--bytes",
    "byte_limit",
    type=_ByteCount(),
    metavar="N|P%",
    help="Use only the first N bytes (or P percent) of the file: write the best preview "
    f"they allow (exit code {PREVIEW_EXIT} when it is not the exact image).",
)
def decompress(
    files: tuple[str, ...],
    output: str | None,
    force: bool,
    to_stdout: bool,
    max_pixels: int,
    threads: int | None,
    quiet: bool,
    progressive_dir: str | None = None,
    byte_limit: _ByteCount.Value | None = None,
) -> None:
    """Decompress .idf FILES (or - for stdin) to lossless images.

    FILE.idf becomes FILE.png unless -o names another file (.png, .tif, .bmp, .webp, ...: the
    extension picks the format) or a directory. Every decoded image is checked against the
    checksum stored in the file; a mismatch is an error and nothing is written.

    A file is decoded coarse to fine: --progressive DIR writes each stage, --bytes N the best
    preview that the first N bytes allow (the stderr note says when it is not exact).
    """
    _check_output_option(files, output)
    _threads(threads)
    if progressive_dir is not None or byte_limit is not None:
        _decompress_stages(
            files, output, force, to_stdout, max_pixels, quiet, progressive_dir, byte_limit
        )
        return

    def one(name: str) -> None:
        target = _target(name, output, to_stdout, len(files) > 1, ".png")
        fmt = "PNG" if target == STDIO else output_format(target)
        if target != STDIO and Path(target).exists() and not force:
            raise Failure(f"{target} already exists (use -f to overwrite)")
        data = _read_input(name)
        image = api.decompress_pixels(data, max_pixels=max_pixels)
        _write_output(target, encode_image(image, fmt), force, name)
        if not quiet:
            click.echo(
                f"{name} : {image.width}x{image.height} {image.mode} => "
                f"{'stdout' if target == STDIO else target}",
                err=True,
            )

    _run(files, one)


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@threads_option
@max_pixels_option
def test(files: tuple[str, ...], threads: int | None, max_pixels: int) -> None:
    """Decode FILES fully and verify their checksums, writing nothing."""
    _threads(threads)

    def one(name: str) -> None:
        image = api.decompress_pixels(_read_input(name), max_pixels=max_pixels)
        click.echo(f"{name} : OK ({image.width}x{image.height} {image.mode})", err=True)

    _run(files, one)


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(files: tuple[str, ...], as_json: bool) -> None:
    """Print the header of .idf FILES (size, mode, models, tiles) without decoding."""

    def one(name: str) -> None:
        data = _read_input(name)
        fields = api.info(data)
        fields["file_bytes"] = len(data)
        if as_json:
            click.echo(json.dumps({"file": name, **fields}))
            return
        click.echo(f"{name}:")
        subpixels = (
            fields["width"] * fields["height"] * sum(g["channels"] for g in fields["groups"])
        )
        click.echo(
            f"  size      {fields['width']}x{fields['height']} {fields['mode']}"
            + (f" (from mode {fields['source_mode']})" if fields["source_mode"] else "")
        )
        click.echo(f"  bytes     {len(data)} ({8 * len(data) / subpixels:.3f} bits/subpixel)")
        click.echo(
            f"  tiles     {fields['tiles']} of {fields['tile_size']} px, "
            f"{fields['raw_tiles']} as region payloads, {fields['margins']} margins, "
            f"{fields['fitted_first_stages']} first-stage priors fitted"
        )
        for g in fields["groups"]:
            click.echo(
                f"  model     {g['model']} ({g['channels']} channel(s) from {g['first_channel']}, "
                f"sha256 {g['model_sha256'][:16]}…, {g['arithmetic']})"
            )
        if fields["metadata"]:
            click.echo(
                "  metadata  " + ", ".join(f"{k} {v} bytes" for k, v in fields["metadata"].items())
            )
        click.echo(f"  checksum  sha256 {fields['pixel_sha256']}")

    _run(files, one)


@main.command()
def models() -> None:
    """List the installed models and the defaults."""
    defaults = {name: channels for channels, name in DEFAULT_MODELS.items()}
    for name in available_models():
        mark = f"  (default for {defaults[name]} channel(s))" if name in defaults else ""
        click.echo(f"{name}{mark}")


@main.command(epilog=PREVIEW_EXIT_CODES)
@click.argument("file")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=50.0,
    show_default=True,
    help="Simulated download speed in kB/s (1 kB = 1000 bytes); 0 reads at full speed.",
)
@click.option(
    "--sample",
    is_flag=True,
    help="Fill the missing stages with seeded draws from the priors, not their likeliest values.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --sample.")
@click.option("--close-after", type=click.FloatRange(min=0), hidden=True)
@threads_option
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def view(
    file: str,
    rate: float,
    sample: bool,
    seed: int,
    close_after: float | None,
    threads: int | None,
    quiet: bool,
) -> None:
    """Show FILE in a window, coarse to fine, as if it were being downloaded.

    The file is read at --rate in the background and each stage is painted as soon as its
    bytes are in; the status line says which stage, how many bytes it used and whether it is
    the exact image (checked against the file's checksum). Needs Tk (tkinter) and a display.
    """
    _threads(threads)
    preview: list[bool] = []

    def one(name: str) -> None:
        from . import viewer

        if not Path(name).is_file():
            raise Failure("no such file")
        with open(name, "rb") as handle:  # not an .idf file: say so before opening a window
            container.header_size_needed(handle.read(1 << 16))
        try:
            painted = viewer.view(
                name,
                rate=1000 * rate if rate else None,
                sample=sample,
                seed=seed,
                close_when_done=close_after,
            )
        except ImportError as exc:
            raise Failure(f"cannot open a window: {exc} (install Tk for Python)") from None
        except Exception as exc:
            if exc.__class__.__name__ == "TclError":
                raise Failure(f"cannot open a window: {exc}") from None
            raise
        if not painted:
            raise Failure("the window was closed before the first stage")
        last = painted[-1]
        if not last.stage.exact:
            preview.append(True)
            _preview_note(name, last.stage, last.bytes_received)
        elif not quiet:
            click.echo(
                f"{name} : {len(painted)} stages shown, the last one exact "
                f"({last.stage.total_bytes} bytes)",
                err=True,
            )

    _run((file,), one)
    if preview:
        sys.exit(PREVIEW_EXIT)
