"""``idfc decompress --bytes N`` and ``--progressive DIR``: previews from a file's prefix,
with exit code 3 when only a preview, not the exact image, was written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import TruncatedFile
from .batch import PREVIEW_EXIT, run_each
from .files import STDIO, Failure, check_target, read_idf, write_output
from .naming import decompressed_name, output_option, target_for

if TYPE_CHECKING:
    from ..codec.progressive import Stage


class ByteCount(click.ParamType):
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

    def convert(self, value, param, ctx):
        if isinstance(value, ByteCount.Value):
            return value
        text = str(value).strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
                if 0 <= percent <= 100:
                    return ByteCount.Value(None, percent)
            elif int(text) >= 0:
                return ByteCount.Value(int(text), None)
        except ValueError:
            pass
        self.fail(f"{value!r} is not a byte count or a percentage (like 4096 or 30%)", param, ctx)


def preview_note(name: str, stage: Stage, received: int) -> None:
    """The one stderr line that goes with exit code 3."""
    click.echo(
        f"idfc: {name}: preview only, not the exact image: stage {stage.index} of {stage.count} "
        f"from {received} of {stage.total_bytes} bytes",
        err=True,
    )


def decompress_stages(
    files: tuple[str, ...],
    output: str | None,
    force: bool,
    to_stdout: bool,
    max_pixels: int,
    quiet: bool,
    folder: str | None,
    byte_limit: ByteCount.Value | None,
) -> None:
    """decompress --progressive DIR and/or --bytes N: exit code 3 when only a preview is out."""
    if len(files) > 1:
        raise click.UsageError("--progressive and --bytes take a single FILE")
    if folder is not None and (output is not None or to_stdout):
        raise click.UsageError("--progressive writes DIR/stage-K.png; drop -o/-c")
    out = output_option(output, to_stdout, False)
    preview: list[tuple[Stage, int]] = []
    from ..codec import progressive
    from ..imageio import encode_image, output_format

    def one(name: str) -> None:
        data = read_idf(name)
        if byte_limit is not None:
            data = data[: byte_limit.of(len(data))]
        if folder is None:
            target = target_for(name, Path(name).name, out, decompressed_name)
            fmt = "PNG" if target == STDIO else output_format(target)
            check_target(target, force, out.makes_folders)
            stage = progressive.decode_preview(data, max_pixels=max_pixels)
            write_output(target, encode_image(stage.image, fmt), force, name, out.makes_folders)
            written = "stdout" if target == STDIO else target
        else:
            stage = write_stages(name, data, Path(folder), force, max_pixels)
            written = f"{folder}/stage-1.png … stage-{stage.index}.png"
        if not stage.exact:
            preview.append((stage, len(data)))
            preview_note(name, stage, len(data))
        elif not quiet:
            image = stage.image
            click.echo(f"{name} : {image.width}x{image.height} {image.mode} => {written}", err=True)

    run_each(files, one)
    if preview:
        sys.exit(PREVIEW_EXIT)


def write_stages(
    name: str, data: bytes | memoryview, folder: Path, force: bool, max_pixels: int
) -> Stage:
    """Write DIR/stage-K.png for every stage ``data`` allows; returns the last one."""
    from ..codec import progressive
    from ..imageio import encode_image

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
            write_output(
                str(folder / f"stage-{stage.index}.png"), encode_image(stage.image), force, name
            )
            last = stage
    except TruncatedFile:
        if last is None:
            raise
    assert last is not None
    return last
