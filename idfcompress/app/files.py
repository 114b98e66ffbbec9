"""Files for the command line: inputs read with bounds (an .idf file no further than its
header says, after checking its magic on the first bytes), outputs written atomically (the
file appears complete under its name or not at all) and never clobbered without ``force``.

Names with a scheme (``s3://bucket/x.png``, ``memory://...``) are read and written with
fsspec when it is installed; an object store shows an object only once its upload is
complete, which is as atomic as a local rename.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

STDIO = "-"
PREFIX = 1 << 16  # what is read first, to check what kind of file an input is
CHUNK = 1 << 24
INPUT_LIMIT = 1 << 31  # larger image files are refused (no 8-bit image Pillow opens is)


class Failure(Exception):
    """An error about one input, reported in one line."""


class StdoutClosed(Failure):
    """Standard output was closed by its reader (``idfc ... -c | head``)."""


def is_url(name: str) -> bool:
    """Whether ``name`` has a scheme (``s3://...``) and is not a local file of that name."""
    return "://" in name and not os.path.exists(name)


def _os_failure(exc: OSError) -> Failure:
    return Failure(exc.strerror or str(exc))


@contextlib.contextmanager
def open_input(name: str) -> Iterator[BinaryIO]:
    """The open input ``name`` (``-``: standard input, left open)."""
    if name == STDIO:
        yield sys.stdin.buffer
        return
    if is_url(name):
        try:
            import fsspec
        except ImportError:
            raise Failure("URLs need fsspec (pip install fsspec and its s3fs, ...)") from None
        opened = fsspec.open(name, "rb")
    else:
        opened = None
    try:
        handle = opened.open() if opened is not None else open(name, "rb")  # noqa: SIM115
    except IsADirectoryError:
        raise Failure("is a directory (-r takes the files in it)") from None
    except FileNotFoundError:
        raise Failure("no such file") from None
    except OSError as exc:
        raise _os_failure(exc) from None
    with handle:
        yield handle


def read_upto(handle: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` bytes: until the end of the input or ``limit``."""
    parts, left = [], limit
    try:
        while left > 0:
            part = handle.read(min(left, CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    except OSError as exc:
        raise _os_failure(exc) from None
    return b"".join(parts)


def _is_device(handle: BinaryIO) -> bool:
    try:
        mode = os.fstat(handle.fileno()).st_mode
    except (OSError, AttributeError, ValueError):
        return False  # not a local file (fsspec) or no descriptor
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)


def read_input(name: str, check: Callable[[bytes], None] | None = None) -> bytes:
    """The bytes of an image file ``name`` (``-``: standard input); ``Failure`` if unreadable,
    a device (``/dev/zero``), empty, or larger than ``INPUT_LIMIT``. ``check`` sees the
    first bytes before the rest is read (to refuse the wrong kind of file at once)."""
    with open_input(name) as handle:
        if name != STDIO and _is_device(handle):
            raise Failure("not a regular file")
        head = read_upto(handle, PREFIX)
        if not head:
            raise Failure("empty file")
        if check is not None:
            check(head)
        if len(head) == PREFIX:
            head += read_upto(handle, INPUT_LIMIT + 1 - len(head))
        data = head
    if len(data) > INPUT_LIMIT:
        raise Failure(f"larger than {INPUT_LIMIT >> 30} GiB: no image that idfc compresses is")
    return data


def read_header_prefix(handle: BinaryIO) -> tuple[bytearray, int | None]:
    """The first bytes of an .idf stream up to its whole header (or all of a shorter
    stream), and the header's size (None if too short to tell). The magic is checked on the
    first bytes, so a foreign file (or ``/dev/zero``) is refused before the rest is read."""
    from ..format import container

    data = bytearray(read_upto(handle, PREFIX))
    if not data:
        raise Failure("empty file")
    need = container.header_size_needed(data)  # NotAnIdfFile, UnsupportedVersion
    while need is None or len(data) < need:
        more = read_upto(handle, (need or 2 * len(data)) - len(data))
        if not more:
            break
        data += more
        need = need or container.header_size_needed(data)
    return data, need


def read_idf(name: str) -> memoryview:
    """An .idf file, read no further than its header says (plus one byte, so that data
    after its end is noticed)."""
    from ..format import container

    with open_input(name) as handle:
        data, need = read_header_prefix(handle)
        if need is None or len(data) < need:
            return memoryview(data)  # truncated: the decoder says how
        _, entries = container.read_header(bytes(data[:need]))
        data += read_upto(handle, container.file_size(entries, need) + 1 - len(data))
    return memoryview(data)


def check_target(target: str, force: bool, make_folders: bool) -> None:
    """Refuse, before any work, an output that exists (without ``force``) or whose folder
    does not exist (unless it is to be created)."""
    if target == STDIO or is_url(target):
        return
    path = Path(target)
    if path.is_dir():
        raise Failure(f"{target} is a folder")
    if path.exists() and not force:
        raise Failure(f"{target} already exists (use -f to overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    if not make_folders and not folder.is_dir():
        raise Failure(f"cannot write {target}: no folder {folder}")


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


def _write_stdout(data: bytes) -> None:
    if sys.stdout.isatty():
        raise Failure("stdout is a terminal, aborting (redirect it or use -o)")
    try:
        left = memoryview(data)
        while left:  # a pipe whose reader leaves takes part of a write without an error
            written = sys.stdout.buffer.write(left)
            if written is None:  # a non-blocking descriptor that is full: wait a little
                time.sleep(0.01)
                continue
            if not written:
                raise BrokenPipeError
            left = left[written:]
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # Nothing more can be written; point stdout at /dev/null so that the flush at exit
        # does not complain a second time.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise StdoutClosed("standard output was closed before the output was complete") from None


def _write_url(target: str, data: bytes, force: bool) -> None:
    try:
        import fsspec
    except ImportError:
        raise Failure("URLs need fsspec (pip install fsspec and its s3fs, ...)") from None
    fs, path = fsspec.core.url_to_fs(target)
    if not force and fs.exists(path):
        raise Failure(f"{target} already exists (use -f to overwrite)")
    try:
        with fs.open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise Failure(f"cannot write {target}: {exc.strerror or exc}") from None


def write_output(
    target: str, data: bytes, force: bool, source: str, make_folders: bool = False
) -> None:
    """Write ``data`` to ``target`` (``-``: standard output, never a terminal) atomically,
    never over the input ``source`` and over another file only with ``force``;
    ``make_folders`` creates the target's missing folders."""
    if target == STDIO:
        _write_stdout(data)
        return
    if is_url(target):
        _write_url(target, data, force)
        return
    path = Path(target)
    if source != STDIO and path.exists() and path.resolve() == Path(source).resolve():
        raise Failure("refusing to overwrite the input")
    try:
        if make_folders:
            path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, force) as write:
            write(data)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from None
