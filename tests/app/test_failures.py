"""The command line's failure paths (issue 19) and its messages (issue 20): each error one
line and the documented exit code, found before the work where it can be."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_cli import (
    assert_one_error,
    exited,
    idfc,
    make_array,
    run_idfc,
    save_png,
)

from idfcompress import api
from idfcompress.app import files, headers, jobs
from idfcompress.codec import decoder, encoder
from idfcompress.format import container

DEV_ZERO = "/dev/zero"
needs_dev_zero = pytest.mark.skipif(not os.path.exists(DEV_ZERO), reason="no /dev/zero")


@pytest.fixture()
def work(tmp_path, tiny_models, monkeypatch):
    """A folder (the current directory) with photo.png in it (as in test_cli)."""
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "photo.png", make_array())
    return tmp_path


@pytest.fixture()
def photo_idf(work):
    """photo.idf made by the API."""
    (work / "photo.idf").write_bytes(api.compress(make_array()))
    return work / "photo.idf"


def noise_png(path, side: int = 200) -> bytes:
    """A PNG of noise: its .idf file is larger than the first bytes read (64 KiB)."""
    noise = np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return api.compress(noise)


def test_constants_agree_with_the_codec():
    """jobs keeps copies (so that ``idfc --version`` imports no codec): they must agree."""
    assert jobs.MAX_PIXELS == decoder.MAX_PIXELS
    assert jobs.DEFAULT_TILE_SIZE == encoder.DEFAULT_TILE_SIZE
    assert jobs.IDF_MAGIC == container.MAGIC


# ----------------------------------------------------------------------------- 6b: bounded reads


@needs_dev_zero
@pytest.mark.parametrize("command", ["info", "test", "decompress"])
def test_dev_zero_is_refused_after_its_first_bytes(work, command):
    """Reading /dev/zero to its end would never end: the magic is checked first."""
    done = run_idfc(
        [command, DEV_ZERO, *(["-o", "out.png"] if command == "decompress" else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
    )
    assert done.returncode == 1, done.stderr
    assert "not an .idf file" in assert_one_error(done.stderr, DEV_ZERO)
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]


@needs_dev_zero
def test_compress_refuses_a_device(work):
    result = idfc("compress", DEV_ZERO, "-o", "zero.idf")
    exited(result, 1)
    assert "not a regular file" in assert_one_error(result.stderr, DEV_ZERO)
    assert not (work / "zero.idf").exists()


class CountingReader:
    """A file that counts the bytes read from it."""

    def __init__(self, handle) -> None:
        self.handle, self.count = handle, 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.count += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_info_reads_only_the_header(work, monkeypatch):
    data = noise_png(work / "noise.png", side=300)
    (work / "noise.idf").write_bytes(data)
    header = container.header_size_needed(data)
    assert len(data) > 3 * files.PREFIX > 3 * header
    readers = []
    real = headers.open_input

    @contextlib.contextmanager
    def counted(name):
        with real(name) as handle:
            readers.append(CountingReader(handle))
            yield readers[-1]

    monkeypatch.setattr(headers, "open_input", counted)
    result = idfc("info", "--json", "noise.idf")
    exited(result, 0)
    assert f'"file_bytes": {len(data)}' in result.stdout
    assert readers[0].count < files.PREFIX + 2 * header + 8192  # no payload, but the header


def test_decompress_reads_no_further_than_the_header_says(work):
    data = noise_png(work / "noise.png")
    with open(work / "noise.idf", "wb") as handle:
        handle.write(data + b"\0" * (3 * files.PREFIX))  # a file that goes on past its end
    assert bytes(files.read_idf(str(work / "noise.idf"))) == data + b"\0"  # one byte more
    result = idfc("decompress", "noise.idf", "-o", "n.png")
    exited(result, 1)
    assert "unexpected bytes" in assert_one_error(result.stderr, "noise.idf")


@pytest.mark.parametrize("cut", ["header", "payload"])
def test_info_on_a_truncated_file_is_an_error(photo_idf, cut):
    data = photo_idf.read_bytes()
    size = container.header_size_needed(data)
    (photo_idf.parent / "cut.idf").write_bytes(data[: size - 3 if cut == "header" else size + 5])
    result = idfc("info", "cut.idf")
    exited(result, 1)
    assert "truncated" in assert_one_error(result.stderr, "cut.idf")
    assert result.stdout == ""
    # from a stream too (read to its end, no further than the header says)
    result = idfc("info", "-", input=(photo_idf.parent / "cut.idf").read_bytes())
    exited(result, 1)
    assert "truncated" in assert_one_error(result.stderr, "-")


def test_info_on_a_file_with_trailing_bytes_is_an_error(photo_idf):
    (photo_idf.parent / "long.idf").write_bytes(photo_idf.read_bytes() + b"more")
    result = idfc("info", "long.idf")
    exited(result, 1)
    assert "4 unexpected bytes" in assert_one_error(result.stderr, "long.idf")


def test_info_from_stdin(photo_idf):
    result = idfc("info", "--json", "-", input=photo_idf.read_bytes())
    exited(result, 0)
    assert f'"file_bytes": {len(photo_idf.read_bytes())}' in result.stdout


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty file"), (b"this is not an image", "not an image file")],
)
def test_compress_says_empty_or_not_an_image(work, content, expected):
    (work / "bad.png").write_bytes(content)
    for args, stdin in ((["compress", "bad.png"], None), (["compress", "-", "-c"], content)):
        result = idfc(*args, input=stdin)
        exited(result, 1)
        line = assert_one_error(result.stderr)
        assert expected in line and "BytesIO" not in line and "0x" not in line
    assert sorted(p.name for p in work.iterdir()) == ["bad.png", "photo.png"]


def test_compress_of_an_idf_file_says_so(photo_idf):
    (photo_idf.parent / "photo.idf.idf").write_bytes(b"would be the output")
    result = idfc("compress", "photo.idf")
    exited(result, 1)
    line = assert_one_error(result.stderr, "photo.idf")
    assert "already an .idf file" in line and "exists" not in line


def test_decompress_of_an_image_says_not_an_idf_file(work):
    (work / "photo.png.png").write_bytes(b"an output that exists")
    result = idfc("decompress", "photo.png")
    exited(result, 1)
    line = assert_one_error(result.stderr, "photo.png")
    assert "not an .idf file" in line and "exists" not in line
    assert (work / "photo.png.png").read_bytes() == b"an output that exists"


def test_empty_idf_input_says_empty(work):
    (work / "empty.idf").write_bytes(b"")
    for command in ("decompress", "test", "info"):
        result = idfc(command, "empty.idf")
        exited(result, 1)
        assert "empty file" in assert_one_error(result.stderr, "empty.idf")


# ----------------------------------------------------------------------------- 8b: animations


def test_animated_image_is_one_line_exit_1(work):
    frames = [Image.fromarray(make_array(seed)) for seed in range(3)]
    frames[0].save(work / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    result = idfc("compress", "anim.gif")
    exited(result, 1)
    assert "3 frames" in assert_one_error(result.stderr, "anim.gif")
    assert not (work / "anim.gif.idf").exists()


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("where", ["compress", "decompress", "info"])
def test_memory_error_is_one_line(photo_idf, monkeypatch, where):
    def no_memory(*args, **kwargs):
        raise MemoryError

    if where == "compress":
        monkeypatch.setattr(api, "read_image", no_memory)
        args = ["compress", "photo.png", "-o", "x.idf"]
    elif where == "decompress":
        monkeypatch.setattr(api, "decompress_pixels", no_memory)
        args = ["decompress", "photo.idf", "-o", "x.png"]
    else:
        monkeypatch.setattr(api, "info", no_memory)
        args = ["info", "photo.idf"]
    result = idfc(*args)
    exited(result, 1)
    line = assert_one_error(result.stderr)
    assert "not enough memory" in line and "internal error" not in line
    assert not (photo_idf.parent / args[-1]).exists() or where == "info"


# ----------------------------------------------------------------------------- honest summary


def test_summary_is_a_share_of_the_input_file(work):
    result = idfc("compress", "photo.png")
    exited(result, 0)
    size, out = (work / "photo.png").stat().st_size, (work / "photo.png.idf").stat().st_size
    line = result.stderr.strip()
    assert line.startswith(f"photo.png : {100 * out / size:6.2f}%")
    assert f"({size} => {out} bytes, photo.png.idf)" in line
    assert "larger" not in line  # (the smooth test image compresses)


def test_summary_says_when_the_output_is_larger_and_why_for_jpeg(work):
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(work / "noise.jpg", quality=40)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=9)
    (work / "noise.png").write_bytes(buffer.getvalue())
    result = idfc("compress", "noise.jpg", "noise.png", "-j", "1")
    exited(result, 0)
    jpeg, png = result.stderr.splitlines()[:2]
    assert "larger than the input file (JPEG is lossy" in jpeg
    assert "JPEG" not in png  # the PNG's size is about the pixels', so either way no JPEG note


# ----------------------------------------------------------------------------- -c and pipes


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_stdout_terminal_is_refused_before_any_work(work):
    """The terminal is checked before the input is even opened."""
    import pty

    leader, follower = pty.openpty()
    try:
        for command in ("compress", "decompress"):
            done = run_idfc(
                [command, "-c", "missing.file"], stdout=follower, stderr=subprocess.PIPE, text=True
            )
            assert done.returncode == 1
            line = assert_one_error(done.stderr)
            assert "terminal" in line and "missing.file" not in line
    finally:
        os.close(follower)
        os.close(leader)


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_closed_pipe_ends_with_one_line(work, command):
    """``idfc compress -c x.png | head -c 10``: one line, exit 1, no traceback."""
    data = noise_png(work / "noise.png", side=300)  # larger than a pipe's buffer either way
    (work / "noise.idf").write_bytes(data)
    source = "noise.png" if command == "compress" else "noise.idf"
    process = subprocess.Popen(
        [sys.executable, "-m", "idfcompress.app.entry", command, "-c", source],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    assert len(process.stdout.read(10)) == 10  # head -c 10
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "closed" in assert_one_error(stderr, source)  # no "Exception ignored ..." either


def test_an_interrupted_command_leaves_the_sigint_handler_alone(work, monkeypatch):
    """In-process callers (and their later child processes, which inherit an ignored
    SIGINT) keep the handler they had."""
    before = signal.getsignal(signal.SIGINT)

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    exited(idfc("compress", "photo.png"), 130)
    assert signal.getsignal(signal.SIGINT) is before
