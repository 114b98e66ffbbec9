"""The ``idfc`` command line: parses arguments and calls the Python API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import __version__
from ..codec.decoder import MAX_PIXELS
from ..codec.encoder import DEFAULT_TILE_SIZE
from ..flow.store import DEFAULT_MODELS, available_models
from .batch import (
    EXIT_CODES,
    PREVIEW_EXIT,
    PREVIEW_EXIT_CODES,
    check_output_option,
    progress_printer,
    run_each,
    target_path,
)
from .files import STDIO, Failure, read_input, write_output
from .previews import ByteCount, decompress_stages, preview_note

if TYPE_CHECKING:
    pass

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


def _threads(threads: int | None) -> None:
    if threads:
        from ..flow.coding import set_threads

        set_threads(threads)


class _Group(click.Group):
    """Ctrl-C anywhere in a command, its imports included, ends with one line and 130."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("idfc: interrupted", err=True)
            sys.exit(130)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=PREVIEW_EXIT_CODES,
)
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
    default=1,
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
    check_output_option(images, output)
    _threads(threads)
    from .. import api

    mode = "flow" if progressive else ("auto" if effort == 2 else "predictive")

    def one(name: str) -> None:
        target = target_path(name, output, to_stdout, len(images) > 1, ".idf")
        if target != STDIO and Path(target).exists() and not force:
            raise Failure(f"{target} already exists (use -f to overwrite)")
        raw = read_input(name)
        started = time.perf_counter()
        image = api.read_image(raw)
        data, stats = api.compress_with_stats(
            image,
            model=model,
            tile_size=tile_size,
            mode=mode,
            verify=verify,
            progress=progress_printer(name, quiet),
        )
        seconds = time.perf_counter() - started
        write_output(target, data, force, name)
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
                f"{stats.region_tiles}/{stats.tiles} tiles as region payloads; "
                f"{image.width * image.height / 1e6 / seconds:.2f} MP/s",
                err=True,
            )

    run_each(images, one)


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
    type=ByteCount(),
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
    byte_limit: ByteCount.Value | None = None,
) -> None:
    """Decompress .idf FILES (or - for stdin) to lossless images.

    FILE.idf becomes FILE.png unless -o names another file (.png, .tif, .bmp, .webp, ...: the
    extension picks the format) or a directory. Every decoded image is checked against the
    checksum stored in the file; a mismatch is an error and nothing is written.

    A file is decoded coarse to fine: --progressive DIR writes each stage, --bytes N the best
    preview that the first N bytes allow (the stderr note says when it is not exact).
    """
    check_output_option(files, output)
    _threads(threads)
    if progressive_dir is not None or byte_limit is not None:
        decompress_stages(
            files, output, force, to_stdout, max_pixels, quiet, progressive_dir, byte_limit
        )
        return
    from .. import api
    from ..imageio import encode_image, output_format

    def one(name: str) -> None:
        target = target_path(name, output, to_stdout, len(files) > 1, ".png")
        fmt = "PNG" if target == STDIO else output_format(target)
        if target != STDIO and Path(target).exists() and not force:
            raise Failure(f"{target} already exists (use -f to overwrite)")
        data = read_input(name)
        image = api.decompress_pixels(data, max_pixels=max_pixels)
        write_output(target, encode_image(image, fmt), force, name)
        if not quiet:
            click.echo(
                f"{name} : {image.width}x{image.height} {image.mode} => "
                f"{'stdout' if target == STDIO else target}",
                err=True,
            )

    run_each(files, one)


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@threads_option
@max_pixels_option
def test(files: tuple[str, ...], threads: int | None, max_pixels: int) -> None:
    """Decode FILES fully and verify their checksums, writing nothing."""
    _threads(threads)
    from .. import api

    def one(name: str) -> None:
        image = api.decompress_pixels(read_input(name), max_pixels=max_pixels)
        click.echo(f"{name} : OK ({image.width}x{image.height} {image.mode})", err=True)

    run_each(files, one)


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(files: tuple[str, ...], as_json: bool) -> None:
    """Print the header of .idf FILES (size, mode, models, tiles) without decoding."""
    from .. import api

    def one(name: str) -> None:
        data = read_input(name)
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
            f"{fields['region_tiles']} as region payloads, {fields['margins']} margins, "
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

    run_each(files, one)


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
        from ..format import container
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
            preview_note(name, last.stage, last.bytes_received)
        elif not quiet:
            click.echo(
                f"{name} : {len(painted)} stages shown, the last one exact "
                f"({last.stage.total_bytes} bytes)",
                err=True,
            )

    run_each((file,), one)
    if preview:
        sys.exit(PREVIEW_EXIT)
