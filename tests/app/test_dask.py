"""``--scheduler``: the same batch on a Dask cluster (a local one on the loopback here), and
fsspec URLs as inputs and outputs (issue 20, scale-out)."""

from __future__ import annotations

import numpy as np
import pytest
from test_batch import make_tree
from test_cli import exited, idfc, make_array, pixels_of, save_png

from idfcompress import api

distributed = pytest.importorskip("distributed")


@pytest.fixture()
def work(tmp_path, tiny_models, monkeypatch):
    """A folder (the current directory) with photo.png in it (as in test_cli)."""
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "photo.png", make_array())
    return tmp_path


@pytest.fixture(scope="module")
def cluster():
    """One worker thread in this process, on 127.0.0.1 (its tasks see this process's files
    and its fsspec memory:// filesystem)."""
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local


def test_compress_and_decompress_a_folder_on_the_cluster(work, cluster):
    arrays = make_tree(work / "tree")
    address = cluster.scheduler_address
    result = idfc("compress", "-r", "tree", "-o", "archive/", "--scheduler", address)
    exited(result, 0)
    lines = result.stderr.splitlines()
    assert (
        lines[-1].startswith("3 of 3 files compressed, 0 failed") and "1 Dask worker" in lines[-1]
    )
    for name, array in arrays.items():
        data = (work / "archive" / f"{name}.idf").read_bytes()
        assert np.array_equal(api.decompress(data), array), name

    exited(idfc("test", "-r", "archive", "--scheduler", address), 0)
    exited(idfc("decompress", "-r", "archive", "-o", "restored/", "--scheduler", address), 0)
    for name, array in arrays.items():
        assert np.array_equal(pixels_of(work / "restored" / name)[1], array), name


def test_a_failing_file_on_the_cluster_stops_nothing(work, cluster):
    save_png(work / "good.png", make_array(1))
    (work / "bad.png").write_bytes(b"not an image")
    result = idfc("compress", "bad.png", "good.png", "--scheduler", cluster.scheduler_address)
    exited(result, 1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("idfc:")]
    assert len(errors) == 1 and errors[0].startswith("idfc: bad.png: not an image file")
    assert np.array_equal(api.decompress((work / "good.png.idf").read_bytes()), make_array(1))


def test_stdin_is_refused_with_a_scheduler(work, cluster):
    result = idfc("compress", "-", "--scheduler", cluster.scheduler_address, input=b"")
    exited(result, 2)


def test_unreachable_scheduler_is_a_usage_error(work):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = idfc("compress", "photo.png", "--scheduler", "tcp://127.0.0.1:9")
    exited(result, 2)
    assert "scheduler" in result.stderr and "Traceback" not in result.stderr


def test_fsspec_urls_in_and_out(work, cluster):
    """memory:// stands for s3:// and the like: read, written, listed with -r."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/photos/a.png", (work / "photo.png").read_bytes())
    fs.pipe("/photos/sub/b.png", (work / "photo.png").read_bytes())
    # -j 1: memory:// lives in this process (s3:// would be seen by worker processes too)
    for scheduler in (["-j", "1"], ["--scheduler", cluster.scheduler_address]):
        fs.rm("/archive", recursive=True) if fs.exists("/archive") else None
        args = ["compress", "-r", "memory://photos", "-o", "memory://archive/", *scheduler]
        exited(idfc(*args), 0)
        for name in ("a.png.idf", "sub/b.png.idf"):
            assert np.array_equal(api.decompress(fs.cat(f"/archive/{name}")), make_array())
        result = idfc(*args)  # never clobbered without -f
        exited(result, 1)
        assert "already exists" in result.stderr
    exited(idfc("decompress", "memory://archive/a.png.idf", "-o", "back.png"), 0)
    assert np.array_equal(pixels_of(work / "back.png")[1], make_array())
    exited(idfc("info", "memory://archive/a.png.idf"), 0)
