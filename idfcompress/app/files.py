"""Files for the command line: inputs read whole, outputs written atomically (the file
appears complete under its name or not at all) and never clobbered without ``force``."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

STDIO = "-"


class Failure(Exception):
    """An error about one input, reported in one line."""


def read_input(name: str) -> bytes:
    """The bytes of file ``name`` (``-``: standard input); ``Failure`` if unreadable."""
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


def unnamed_file(folder: Path) -> int | None:
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
def atomic_output(path: Path, force: bool) -> Iterator[Callable[[bytes], object]]:
    """Yield a writer; the file appears complete at ``path`` or not at all.

    The data goes to a file without a name in the target folder (Linux ``O_TMPFILE``) that
    is linked to ``path`` once complete, so not even a killed process leaves a partial file
    behind. Elsewhere it goes to a hidden ``.NAME.*.part`` file that is removed on any error
    or interruption (only SIGKILL can leave it behind).
    """
    if path.exists() and not force:
        raise Failure(f"{path} already exists (use -f to overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    fd = unnamed_file(folder)
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


def write_output(target: str, data: bytes, force: bool, source: str) -> None:
    """Write ``data`` to ``target`` (``-``: standard output, never a terminal) atomically,
    never over the input ``source`` and over another file only with ``force``."""
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
        with atomic_output(path, force) as write:
            write(data)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from None
