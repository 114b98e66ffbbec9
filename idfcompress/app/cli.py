"""The ``idfc`` command line: parses arguments and calls the Python API."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import __version__
from .batch import (
    EXIT_CODES,
    PREVIEW_EXIT,
    PREVIEW_EXIT_CODES,
    debug_enabled,
    progress_printer,
    run_each,
)
from .files import STDIO, Failure
from .jobs import DEFAULT_TILE_SIZE, MAX_PIXELS, Settings, Task
from .naming import (
    compressed_name,
    decompressed_name,
    expand_inputs,
    output_option,
    target_for,
    wanted_idf,
    wanted_images,
)
from .previews import ByteCount, decompress_stages, preview_note

threads_option = click.option(
    "-T",
    "--threads",
    type=click.IntRange(1, 1024),
    help="CPU threads for each image (tiles coded side by side, and the networks) [default: "
    "the core count; with -j, each process's share of the cores]. Files and images are "
    "identical whatever the count (exact integer arithmetic, docs/FORMAT.md).",
)
max_pixels_option = click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=MAX_PIXELS,
    show_default=True,
    help="Refuse images with more pixels (decompression-bomb guard).",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No summary lines, no progress.")

BATCH_HELP = """\b
Folders and batches:
  -r walks each folder given and takes the files in it (hidden ones
  skipped) and mirrors its tree under the -o folder (beside the inputs
  without -o). -o is a folder when it ends with / or is an existing
  folder (a missing one is created); with several inputs or -r it must
  be one. Several files run in -j processes (default: the cores) or on
  a Dask cluster (--scheduler), with one progress bar on a terminal and
  a summary line at the end; a failing file never stops the others.
  Names with a scheme (s3://bucket/dir) are read and written through
  fsspec when it is installed."""


def batch_options(function: Callable) -> Callable:
    """-r, -j and --scheduler, shared by compress, decompress and test."""
    for option in reversed(
        [
            click.option(
                "-r", "--recursive", is_flag=True, help="Take the files in the folders given."
            ),
            click.option(
                "-j",
                "--jobs",
                type=click.IntRange(1, 1024),
                help="Worker processes for several files [default: the cores].",
            ),
            click.option(
                "--scheduler",
                metavar="ADDRESS",
                help="Run the batch on the Dask cluster of this scheduler (tcp://host:8786); "
                "its workers must see the same paths (docs/SCALING.md).",
            ),
        ]
    ):
        function = option(function)
    return function


def _threads(threads: int | None) -> None:
    if threads:
        from ..api import set_threads

        set_threads(threads)  # the tiles' threads, and the flow's networks' if they run


def _interrupted() -> None:
    click.echo("idfc: interrupted", err=True)
    sys.exit(130)


class _Group(click.Group):
    """Ctrl-C anywhere in a command, its imports included, ends with one line and 130
    (during start-up, before the command runs, ``entry``'s handler does the same)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:  # parsing the arguments (click itself would say "Aborted!" and exit 1)
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted()
            raise  # not reached

    def invoke(self, ctx: click.Context) -> object:
        try:
            entry = sys.modules.get(f"{__package__}.entry")
            if entry is not None:  # the console script: Python's handler from here on
                entry.end_start_up()
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted()
        return None


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ..format.container import FORMAT_VERSION
    from ..predictive.prior import DEFAULT_PRIOR

    click.echo(f"idfc {__version__} (format {FORMAT_VERSION}, learned prior {DEFAULT_PRIOR})")
    ctx.exit()


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=PREVIEW_EXIT_CODES,
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the version and the default models, and exit.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks (also: IDFC_DEBUG=1).")
def main(debug: bool) -> None:
    """Lossless image compression with an Integer Discrete Flow.

    \b
    idfc compress photo.png            writes photo.png.idf, keeps photo.png
    idfc decompress photo.png.idf -o copy.png
    idfc compress -r photos -o archive/
    idfc info photo.png.idf
    """


def _tasks(
    command: str,
    names: tuple[str, ...],
    output: str | None,
    to_stdout: bool,
    recursive: bool,
    name: Callable[[str], str],
) -> list[Task]:
    """The batch: one task per input file (-r: per file in each folder), with its output.

    Refuses at once what cannot work: standard output on a terminal, two inputs with
    the same output."""
    out = output_option(output, to_stdout, len(names) > 1 or recursive)
    writes = command != "test"
    if writes and (out.stdout or (STDIO in names and out.path is None)) and sys.stdout.isatty():
        click.echo("idfc: stdout is a terminal, aborting (redirect it or use -o)", err=True)
        sys.exit(1)
    wanted = wanted_idf if command != "compress" else wanted_images
    found = expand_inputs(names, recursive, wanted)
    if not found:
        click.echo(f"idfc: no {'image' if command == 'compress' else '.idf'} files found", err=True)
        sys.exit(1)
    tasks = []
    for source, relative in found:
        target = target_for(source, relative, out, name) if writes else None
        tasks.append(Task(command, source, source, target, out.makes_folders))
    return tasks


def _run(
    tasks: list[Task],
    settings: Settings,
    verb: str,
    jobs: int | None,
    scheduler: str | None,
    threads: int | None,
) -> None:
    from .parallel import run_batch

    if len(tasks) == 1 or jobs == 1:
        _threads(threads)  # in this process; workers get their share of the cores
    seen: dict[str, str] = {}
    for task in tasks:
        if task.target not in (None, STDIO):
            seen.setdefault(str(Path(task.target).absolute()), task.name)
    if len(seen) < sum(t.target not in (None, STDIO) for t in tasks):
        raise click.UsageError("two inputs would be written to the same output; use -o DIR/")
    try:
        ok = run_batch(
            tasks,
            settings,
            verb=verb,
            jobs=jobs,
            scheduler=scheduler,
            progress=lambda name: progress_printer(name, settings.quiet),
            threads=threads,
        )
    except KeyboardInterrupt:
        _interrupted()
    if not ok:
        sys.exit(1)


@main.command(epilog=BATCH_HELP + "\n\n" + EXIT_CODES)
@click.argument("images", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    help="Output file; a folder when it ends with / or exists (created if missing).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output.")
@batch_options
@click.option(
    "--tile-size",
    type=click.IntRange(8, 65528),
    default=DEFAULT_TILE_SIZE,
    show_default=True,
    help="Tile side in pixels (a multiple of 8); bounds memory use.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Decode each output and compare it with its input before writing it (about 2.5x "
    "the time).",
)
@threads_option
@quiet_option
@click.option("-v", "--verbose", is_flag=True, help="Also print bits/subpixel, tiles and speed.")
def compress(
    images: tuple[str, ...],
    output: str | None,
    force: bool,
    to_stdout: bool,
    recursive: bool,
    jobs: int | None,
    scheduler: str | None,
    tile_size: int,
    verify: bool,
    threads: int | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Compress IMAGES (PNG, TIFF, BMP, JPEG, ... or - for stdin) to .idf files.

    NAME becomes NAME.idf next to it (photo.png -> photo.png.idf) unless -o or -c says
    otherwise; inputs are never modified. The summary line gives the output's size as a
    share of the input FILE's. 8-bit L, LA, RGB and RGBA images are stored exactly; P
    (palette) images come back as RGB(A) and 1-bit images as L. ICC profiles and EXIF are
    kept. Every file starts with the image's coarse level, so that any prefix past it
    shows the whole picture (idfc view, decompress --bytes).
    """
    if tile_size % 8:
        raise click.BadParameter("must be a multiple of 8", param_hint="--tile-size")
    settings = Settings(force, quiet, verbose, debug_enabled(), tile_size, verify, MAX_PIXELS)
    tasks = _tasks("compress", images, output, to_stdout, recursive, compressed_name)
    _run(tasks, settings, "compressed", jobs, scheduler, threads)


@main.command(epilog=BATCH_HELP + "\n\n" + PREVIEW_EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    help="Output image (format from its extension, .png, .tif, .webp, ...); a folder when it "
    "ends with / or exists (created if missing).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write a PNG to standard output.")
@batch_options
@max_pixels_option
@threads_option
@quiet_option
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
    recursive: bool,
    jobs: int | None,
    scheduler: str | None,
    max_pixels: int,
    threads: int | None,
    quiet: bool,
    progressive_dir: str | None = None,
    byte_limit: ByteCount.Value | None = None,
) -> None:
    """Decompress .idf FILES (or - for stdin) to lossless images.

    NAME.idf becomes NAME (photo.png.idf -> photo.png), or NAME.png when NAME has no
    lossless image extension (photo.jpg.idf -> photo.jpg.png, photo.idf -> photo.png, an
    .idf file without the suffix: FILE.png), unless -o names another file (.png, .tif,
    .bmp, .webp, ...: the extension picks the format) or a folder. Every decoded image is
    checked against the checksum stored in the file; a mismatch is an error and nothing is
    written.

    A file is decoded coarse to fine: --progressive DIR writes each stage, --bytes N the best
    preview that the first N bytes allow (the stderr note says when it is not exact).
    """
    if progressive_dir is not None or byte_limit is not None:
        if recursive or jobs or scheduler:
            raise click.UsageError("--progressive and --bytes take a single FILE, not -r/-j")
        _threads(threads)
        decompress_stages(
            files, output, force, to_stdout, max_pixels, quiet, progressive_dir, byte_limit
        )
        return
    settings = Settings(force, quiet, False, debug_enabled(), max_pixels=max_pixels)
    tasks = _tasks("decompress", files, output, to_stdout, recursive, decompressed_name)
    _run(tasks, settings, "decompressed", jobs, scheduler, threads)


@main.command(epilog=BATCH_HELP + "\n\n" + EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@batch_options
@threads_option
@max_pixels_option
@quiet_option
def test(
    files: tuple[str, ...],
    recursive: bool,
    jobs: int | None,
    scheduler: str | None,
    threads: int | None,
    max_pixels: int,
    quiet: bool,
) -> None:
    """Decode FILES fully and verify their checksums, writing nothing."""
    settings = Settings(quiet=quiet, debug=debug_enabled(), max_pixels=max_pixels)
    tasks = _tasks("test", files, None, False, recursive, str)
    _run(tasks, settings, "OK", jobs, scheduler, threads)


@main.command(epilog=EXIT_CODES)
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(files: tuple[str, ...], as_json: bool) -> None:
    """Print the header of .idf FILES (size, mode, models, tiles) without decoding.

    Only the header is read (and one byte of some payloads); a file shorter or longer than
    its header says is an error.
    """
    from .headers import describe, read_info

    def one(name: str) -> None:
        fields = read_info(name)
        if as_json:
            click.echo(json.dumps({"file": name, **fields}))
            return
        for line in describe(name, fields):
            click.echo(line)

    run_each(files, one)


@main.command()
def models() -> None:
    """List the predictive coder's learned priors, then the installed flow models (which
    decode files made with --progressive or -e 2 before the flow's encoder was retired)."""
    from ..flow.store import available_models
    from ..predictive.prior import DEFAULT_PRIOR, PRIORS

    for prior_id, (stem, _) in sorted(PRIORS.items()):
        mark = ", default" if prior_id == DEFAULT_PRIOR else ""
        click.echo(f"{stem}  (learned prior {prior_id} of the predictive coder{mark})")
    for name in available_models():
        click.echo(f"{name}  (flow model, decodes older flow-coded files)")


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
