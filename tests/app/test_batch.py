"""Output names (zstd's convention), ``-o`` as a folder, ``-r`` trees, ``-j`` processes, and
Ctrl-C in a batch (issue 19 finding 9, issue 20)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from test_cli import (
    assert_no_temp_files,
    assert_one_error,
    exited,
    idfc,
    make_array,
    pixels_of,
    save_png,
)

from idfcompress import api
from idfcompress.app.naming import compressed_name, decompressed_name


@pytest.fixture()
def work(tmp_path, tiny_models, monkeypatch):
    """A folder (the current directory) with photo.png in it (as in test_cli)."""
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "photo.png", make_array())
    return tmp_path


@pytest.mark.parametrize(
    ("name", "restored"),
    [
        ("photo.png.idf", "photo.png"),
        ("photo.PNG.idf", "photo.PNG"),
        ("photo.tif.idf", "photo.tif"),
        ("photo.jpg.idf", "photo.jpg.png"),  # not a lossless format: a PNG beside it
        ("photo.gif.idf", "photo.gif.png"),
        ("photo.idf", "photo.png"),  # files named before zstd's convention
        ("dir/photo.idf", "dir/photo.png"),
        ("blob", "blob.png"),  # an .idf file without the suffix
        ("photo.png", "photo.png.png"),
        (".idf", ".idf.png"),
    ],
)
def test_decompressed_names(name, restored):
    assert decompressed_name(name) == restored


def test_compressed_names_keep_the_whole_name():
    assert compressed_name("photo.png") == "photo.png.idf"
    assert compressed_name("p.jpg") != compressed_name("p.png")


def test_round_trip_restores_the_original_name(work):
    before = (work / "photo.png").read_bytes()
    exited(idfc("compress", "photo.png"), 0)
    (work / "photo.png").rename(work / "kept.png")
    result = idfc("decompress", "photo.png.idf")
    exited(result, 0)
    assert "photo.png.idf : 56x40 RGB => photo.png" in result.stderr
    assert np.array_equal(pixels_of(work / "photo.png")[1], make_array())
    assert (work / "kept.png").read_bytes() == before


def test_decompress_next_to_its_original_is_refused_without_force(work):
    exited(idfc("compress", "photo.png"), 0)
    result = idfc("decompress", "photo.png.idf")
    exited(result, 1)
    assert "photo.png already exists" in assert_one_error(result.stderr, "photo.png.idf")
    exited(idfc("decompress", "-f", "photo.png.idf"), 0)
    assert np.array_equal(pixels_of(work / "photo.png")[1], make_array())


def test_jpeg_and_png_of_one_name_get_two_outputs(work):
    Image.fromarray(make_array(2)).save(work / "photo.jpg", quality=95)
    exited(idfc("compress", "photo.jpg", "photo.png"), 0)
    assert (work / "photo.jpg.idf").is_file() and (work / "photo.png.idf").is_file()
    (work / "photo.png").unlink()
    exited(idfc("decompress", "photo.jpg.idf", "photo.png.idf"), 0)
    assert np.array_equal(pixels_of(work / "photo.png")[1], make_array())
    with Image.open(work / "photo.jpg") as jpeg:
        assert np.array_equal(pixels_of(work / "photo.jpg.png")[1], np.asarray(jpeg))


# ----------------------------------------------------------------------------- -o


def test_output_with_a_slash_is_a_folder_created_if_missing(work):
    exited(idfc("compress", "photo.png", "-o", "newdir/"), 0)
    assert sorted(p.name for p in work.iterdir()) == ["newdir", "photo.png"]
    assert (work / "newdir" / "photo.png.idf").is_file()
    exited(idfc("decompress", "newdir/photo.png.idf", "-o", "deeper/still/"), 0)
    assert np.array_equal(pixels_of(work / "deeper" / "still" / "photo.png")[1], make_array())


def test_output_without_a_slash_is_a_file(work):
    exited(idfc("compress", "photo.png", "-o", "newdir"), 0)
    assert (work / "newdir").is_file()
    assert np.array_equal(api.decompress((work / "newdir").read_bytes()), make_array())


def test_several_inputs_into_a_new_folder_need_the_slash(work):
    save_png(work / "second.png", make_array(5))
    result = idfc("compress", "photo.png", "second.png", "-o", "missing")
    exited(result, 2)
    assert "missing/" in result.stderr
    exited(idfc("compress", "photo.png", "second.png", "-o", "made/"), 0)
    assert sorted(p.name for p in (work / "made").iterdir()) == ["photo.png.idf", "second.png.idf"]


def test_no_folder_is_made_when_nothing_is_written(work):
    (work / "bad.png").write_bytes(b"not an image")
    exited(idfc("compress", "bad.png", "-o", "empty/"), 1)
    assert not (work / "empty").exists()


def test_two_inputs_with_one_output_are_refused(work):
    for folder in ("a", "b"):
        (work / folder).mkdir()
        save_png(work / folder / "x.png", make_array())
    result = idfc("compress", "a/x.png", "b/x.png", "-o", "out/")
    exited(result, 2)
    assert "same output" in result.stderr
    assert not (work / "out").exists()


def test_output_and_stdout_exclude_each_other(work):
    exited(idfc("compress", "photo.png", "-c", "-o", "x.idf"), 2)


# ----------------------------------------------------------------------------- -r and -j


def make_tree(root):
    """tree/a.png, tree/sub/b.png, tree/sub/deep/c.tif, plus what -r must leave alone."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    arrays = {"a.png": make_array(1), "sub/b.png": make_array(2), "sub/deep/c.tif": make_array(3)}
    for name, array in arrays.items():
        Image.fromarray(array).save(root / name)
    save_png(root / ".hidden" / "h.png", make_array(4))
    save_png(root / ".dot.png", make_array(4))
    (root / "notes.txt").write_text("not an image")
    return arrays


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_recursive_tree_is_mirrored_and_back(work, jobs):
    arrays = make_tree(work / "tree")
    result = idfc("compress", "-r", "tree", "-o", "archive/", "-j", jobs)
    exited(result, 0)
    found = sorted(str(p.relative_to(work / "archive")) for p in (work / "archive").rglob("*.idf"))
    assert found == sorted(f"{name}.idf" for name in arrays)
    lines = result.stderr.splitlines()
    assert [line.split(" : ")[0] for line in lines[:-1]] == sorted(
        os.path.join("tree", name) for name in arrays
    )  # in input order, whatever finished first
    assert lines[-1].startswith("3 of 3 files compressed, 0 failed")
    assert "% of the input files" in lines[-1]

    exited(result := idfc("test", "-r", "archive", "-j", jobs), 0)
    assert result.stderr.count(": OK (") == 3
    exited(idfc("decompress", "-r", "archive", "-o", "restored/", "-j", jobs), 0)
    for name, array in arrays.items():
        assert np.array_equal(pixels_of(work / "restored" / name)[1], array), name
    assert not (work / "restored" / ".hidden").exists()
    assert_no_temp_files(work)


def test_recursive_without_output_writes_beside_the_inputs(work):
    arrays = make_tree(work / "tree")
    exited(idfc("compress", "-q", "-r", "tree"), 0)
    for name in arrays:
        assert (work / "tree" / f"{name}.idf").is_file()
    assert not (work / "tree" / "notes.txt.idf").exists()
    assert not (work / "tree" / ".hidden" / "h.png.idf").exists()


def test_folder_without_recursive_is_one_error(work):
    (work / "tree").mkdir()
    result = idfc("compress", "tree", "photo.png")
    exited(result, 1)
    assert "-r" in [line for line in result.stderr.splitlines() if line.startswith("idfc:")][0]
    assert (work / "photo.png.idf").is_file()


def test_empty_tree_says_so(work):
    (work / "tree").mkdir()
    result = idfc("compress", "-r", "tree")
    exited(result, 1)
    assert "no image files" in assert_one_error(result.stderr)


def test_one_failing_file_in_parallel_stops_nothing(work):
    for seed in range(4):
        save_png(work / f"{seed}.png", make_array(seed))
    (work / "1.png").write_bytes(b"broken")
    (work / "3.png.idf").write_bytes(b"keep")
    result = idfc("compress", "0.png", "1.png", "2.png", "3.png", "-j", "2")
    exited(result, 1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("idfc:")]
    assert [line.split(":")[1].strip() for line in errors] == ["1.png", "3.png"]
    assert result.stderr.splitlines()[-1].startswith("2 of 4 files compressed, 2 failed")
    for seed in (0, 2):
        data = (work / f"{seed}.png.idf").read_bytes()
        assert np.array_equal(api.decompress(data), make_array(seed))
    assert (work / "3.png.idf").read_bytes() == b"keep"


def test_quiet_batch_prints_nothing(work):
    save_png(work / "second.png", make_array(5))
    result = idfc("compress", "-q", "photo.png", "second.png", "-j", "2")
    exited(result, 0)
    assert result.stderr == ""


# ----------------------------------------------------------------------------- Ctrl-C


def test_interrupted_parallel_batch_leaves_only_complete_files(tiny_model_dir, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while two worker
    processes code: exit 130, one line, no traceback from any process, no partial file."""
    small = smooth_png(tmp_path / "0-small.png", 32)
    big = [smooth_png(tmp_path / f"{k}-big.png", 700) for k in (1, 2, 3)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idfcompress.app.entry",
            "compress",
            "-j",
            "2",
            small,
            *big,
            "-o",
            str(tmp_path / "out") + "/",
        ],  # fmt: skip
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "IDFC_MODELS": str(tiny_model_dir)},
    )
    try:
        first = process.stderr.readline()  # the small file is done: the big ones under way
        assert first.startswith(small), first
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        _, rest = process.communicate(timeout=120)  # EOF: no worker holds stderr any more
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # only if something was left running
    assert process.returncode == 130, rest
    assert "Traceback" not in rest and rest.count("idfc: interrupted") == 1, rest
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs][:1] == ["0-small.png.idf"]
    for path in outputs:  # whatever is there is complete
        assert not path.name.startswith(".") and path.suffix == ".idf"
        api.decompress(path.read_bytes())


def smooth_png(path, side: int) -> str:
    y, x = np.mgrid[0:side, 0:side]
    base = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    noise = np.random.default_rng(side).normal(0, 6, (side, side, 3))
    image = np.clip(base[:, :, None] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return str(path)
