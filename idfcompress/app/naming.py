"""Output names and the inputs of a batch.

The convention is zstd's: ``compress`` keeps the input's name and appends ``.idf``
(``photo.png`` -> ``photo.png.idf``, ``photo.jpg`` -> ``photo.jpg.idf``), and ``decompress``
takes the suffix off again (``photo.png.idf`` -> ``photo.png``). When what is left has no
lossless image extension, ``.png`` is appended (``photo.jpg.idf`` -> ``photo.jpg.png``,
``photo.idf`` -> ``photo.png``, an .idf file named ``blob`` -> ``blob.png``): the output is
always a lossless image whose format its extension names.

``-o`` names a folder when it ends with ``/`` or is an existing folder; a folder that does
not exist yet is created (with its parents). With several inputs or ``-r`` it must be a
folder. ``-r DIR`` walks DIR and mirrors its tree under the ``-o`` folder (beside the
inputs without ``-o``).
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from .files import STDIO, Failure, is_url

IDF_SUFFIX = ".idf"
STDIN_NAME = "stdin"


def compressed_name(name: str) -> str:
    """``photo.png`` -> ``photo.png.idf``."""
    return name + IDF_SUFFIX


def _suffix(name: str) -> str:
    return posixpath.splitext(posixpath.basename(name.replace(os.sep, "/")))[1].lower()


def decompressed_name(name: str) -> str:
    """``photo.png.idf`` -> ``photo.png``; ``photo.jpg.idf`` -> ``photo.jpg.png``;
    ``photo.idf`` -> ``photo.png``; ``blob`` -> ``blob.png``."""
    from ..imageio import LOSSLESS_FORMATS

    base = name[: -len(IDF_SUFFIX)] if name.lower().endswith(IDF_SUFFIX) else name
    if base == name or not posixpath.basename(base.replace(os.sep, "/")):
        return name + ".png"
    return base if _suffix(base) in LOSSLESS_FORMATS else base + ".png"


def join(folder: str, relative: str) -> str:
    """``folder/relative`` for a local folder or a URL."""
    if is_url(folder):
        return folder.rstrip("/") + "/" + relative.replace(os.sep, "/")
    return str(Path(folder) / relative)


def is_dir(name: str) -> bool:
    """Whether ``name`` (a path or, with fsspec, a URL) is an existing folder."""
    if not is_url(name):
        return Path(name).is_dir()
    fs, path = url_fs(name)
    return bool(fs.isdir(path))


def url_fs(url: str):  # noqa: ANN201 - an fsspec filesystem and the path in it
    try:
        import fsspec
    except ImportError:
        raise Failure(f"{url}: URLs need fsspec (pip install fsspec and its s3fs, ...)") from None
    return fsspec.core.url_to_fs(url)


@dataclass(frozen=True)
class Output:
    """Where outputs go: ``-o`` as a file or a folder, or standard output (``-c``)."""

    path: str | None = None
    folder: bool = False
    stdout: bool = False

    @property
    def makes_folders(self) -> bool:
        """Whether missing folders under the target are created (only under an -o folder)."""
        return self.folder


def output_option(output: str | None, to_stdout: bool, several: bool) -> Output:
    """Interpret ``-o`` and ``-c``; a usage error where they cannot work."""
    if output is None:
        return Output(stdout=to_stdout)
    if to_stdout:
        raise click.UsageError("-o and -c exclude each other")
    if output == STDIO:
        return Output(stdout=True)
    try:
        folder = output.endswith(("/", os.sep)) or is_dir(output)
    except Failure as exc:
        raise click.UsageError(str(exc)) from None
    if several and not folder:
        exists = not is_url(output) and Path(output).exists()
        raise click.UsageError(
            f"with several inputs or -r, -o must name a folder: {output} is a file"
            if exists
            else f"with several inputs or -r, -o must name a folder: write {output}/ to create it"
        )
    return Output(output, folder)


def target_for(source: str, relative: str, output: Output, name: Callable[[str], str]) -> str:
    """The output of ``source`` (``relative``: its name under its -r folder, or its own)."""
    if output.stdout or (source == STDIO and output.path is None):
        return STDIO
    if output.path is None:
        return name(source)
    if not output.folder:
        return output.path
    return join(output.path, name(STDIN_NAME if source == STDIO else relative))


@functools.cache
def image_suffixes() -> frozenset[str]:
    """The extensions of the image files Pillow opens (``compress -r`` takes those)."""
    from PIL import Image

    Image.init()
    return frozenset(
        ext.lower()
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and ext.lower() != IDF_SUFFIX
    )


def _walk_local(folder: str) -> Iterable[tuple[str, str]]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(names):
            if not file.startswith("."):
                path = os.path.join(root, file)
                yield path, os.path.relpath(path, folder)


def _walk_url(url: str) -> Iterable[tuple[str, str]]:
    fs, root = url_fs(url)
    root = root.rstrip("/")
    for path in sorted(fs.find(root)):
        relative = path[len(root) :].lstrip("/")
        if not any(part.startswith(".") for part in relative.split("/")):
            yield url.rstrip("/") + "/" + relative, relative


def expand_inputs(
    inputs: Iterable[str], recursive: bool, wanted: Callable[[str], bool]
) -> list[tuple[str, str]]:
    """``(source, relative name)`` for every input; with ``recursive``, each folder is
    replaced by the ``wanted`` files under it (hidden ones skipped), in sorted order."""
    found: list[tuple[str, str]] = []
    for name in inputs:
        try:
            folder = recursive and name != STDIO and is_dir(name)
        except Failure:
            folder = False  # no fsspec: the job says so about this input
        if folder:
            walk = _walk_url(name) if is_url(name) else _walk_local(name)
            found.extend(item for item in walk if wanted(item[0]))
        else:
            found.append((name, posixpath.basename(name.replace(os.sep, "/").rstrip("/"))))
    return found


def wanted_images(name: str) -> bool:
    """``compress -r`` takes the image files (by extension), never .idf files."""
    return _suffix(name) in image_suffixes()


def wanted_idf(name: str) -> bool:
    """``decompress -r`` and ``test -r`` take the .idf files."""
    return _suffix(name) == IDF_SUFFIX
