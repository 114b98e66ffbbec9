"""scripts/benchmark.py on two tiny generated images with cheap codecs."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

imagecodecs = pytest.importorskip("imagecodecs")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("idfc_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture()
def images(bench):
    rng = np.random.default_rng(7)
    return [
        bench.BenchImage("colour", smooth_image(rng, 40, 48, 3)),
        bench.BenchImage("grey", smooth_image(rng, 32, 24, 1)[:, :, 0]),
    ]


def lossy_codec(bench):
    """Drops the low bit of one subpixel of colour images: lossless on grey only."""

    def encode(pixels):
        changed = pixels.copy()
        if changed.ndim == 3:
            changed[0, 0, 0] ^= 1
        return bytes(imagecodecs.zstd_encode(changed.tobytes(), 3)), {}

    def decode(data, shape):
        return np.frombuffer(imagecodecs.zstd_decode(data), np.uint8).reshape(shape)

    return bench.Codec("fake-lossy", encode, decode, 1, "deliberately lossy")


def cheap_codecs(bench):
    """idfc, PNG, QOI, zstd."""
    classic = bench.select_codecs(bench.classic_codecs(1), "png,qoi,zstd-19")
    return [*bench.idfc_codecs(1), *classic]


def partial_codec(bench):
    """zstd that refuses grey images (``supports``): a codec that codes part of the set."""
    zstd = bench.select_codecs(bench.classic_codecs(1), "zstd-19")[0]
    return bench.Codec(
        "colour-only",
        zstd.encode,
        zstd.decode,
        1,
        "zstd, colour images only",
        lambda image: "grey" if image.channels == 1 else None,
    )


def test_figures_are_consistent(bench, images):
    codecs = [*cheap_codecs(bench), partial_codec(bench), lossy_codec(bench)]
    names = [c.name for c in codecs]
    assert names == ["idfc", "png", "qoi", "zstd-19", "colour-only", "fake-lossy"]
    results = bench.run_benchmark(images, codecs, repeats=2, progress=False)
    by = {(r.image, r.codec): r for r in results}
    assert len(results) == len(images) * len(codecs)

    for image in images:
        png = by[(image.name, "png")]
        assert png.bytes == len(bench.png_encode(image.pixels))
        assert png.ratio_png == pytest.approx(1.0)
        zstd = by[(image.name, "zstd-19")]
        assert zstd.bytes == len(imagecodecs.zstd_encode(image.pixels.tobytes(), 19))
        for r in results:
            if r.image != image.name or r.status in ("n/a",):
                continue
            assert r.subpixels == image.height * image.width * image.channels
            assert r.bpsp == pytest.approx(8 * r.bytes / r.subpixels)
            assert r.ratio_raw == pytest.approx(r.subpixels / r.bytes)
            assert r.ratio_png == pytest.approx(png.bytes / r.bytes)
            assert r.encode_runs == r.decode_runs == 2
            assert r.encode_mps > 0 and r.decode_mps > 0
            assert r.encode_peak_mib >= 0 and r.decode_peak_mib >= 0
            if r.codec != "fake-lossy" or image.channels == 1:
                assert (r.status, r.exact) == ("ok", True), r

    assert (by[("grey", "colour-only")].status, by[("grey", "colour-only")].note) == ("n/a", "grey")
    # idfc's tiles: one 256-px tile and one coarse-level tile per plane group
    for image in images:
        r = by[(image.name, "idfc")]
        assert (r.tiles, r.coarse_tiles) == (1, 1)
        assert by[(image.name, "png")].tiles is None

    lossy = by[("colour", "fake-lossy")]
    assert (lossy.status, lossy.exact) == ("lossy", False)

    rows = {t.codec: t for t in bench.totals(results, codecs)}
    for name in ("png", "qoi", "zstd-19", "idfc"):
        total, rs = rows[name], [by[(i.name, name)] for i in images]
        assert total.lossless and total.images == total.images_total == 2
        assert total.bpsp == pytest.approx(
            8 * sum(r.bytes for r in rs) / sum(r.subpixels for r in rs)
        )
        assert total.ratio_png == pytest.approx(
            sum(r.png_bytes for r in rs) / sum(r.bytes for r in rs)
        )
    partial = rows["colour-only"]
    assert partial.images == 1 and partial.failed_images == ["grey"]
    assert partial.bpsp == pytest.approx(by[("colour", "colour-only")].bpsp)
    flagged = rows["fake-lossy"]
    assert not flagged.lossless and flagged.lossy_images == ["colour"]
    assert flagged.bpsp is None and flagged.bytes is None and "NOT LOSSLESS" in flagged.note
    assert list(rows)[-1] == "fake-lossy"  # ranked after every counted codec
    assert list(rows)[-2] == "colour-only"  # then the partial totals
    full = [rows[n].bpsp for n in list(rows)[:-2]]
    assert full == sorted(full)

    grey_rows = {t.codec: t for t in bench.totals(results, codecs, "grey")}
    assert grey_rows["fake-lossy"].lossless  # lossless on the grey image alone
    assert grey_rows["png"].bpsp == pytest.approx(by[("grey", "png")].bpsp)

    table = bench.totals_table(bench.totals(results, codecs))
    assert "| fake-lossy | NO |" in table and "| png | yes | 2/2 |" in table
    assert "| colour | fake-lossy | NOT LOSSLESS |" in bench.per_image_table(results)


def test_outputs(bench, images, tmp_path):
    codecs = [c for c in cheap_codecs(bench) if c.name in ("idfc", "png")]
    codecs.append(lossy_codec(bench))
    results = bench.run_benchmark(images, codecs, repeats=1, progress=False)
    rows = bench.totals(results, codecs)
    paths = bench.write_outputs(tmp_path, results, rows, codecs, {"threads": 1}, images)
    with open(paths["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(results) + len(rows)
    assert {"tiles", "coarse_tiles"} <= set(table[0])
    assert next(r for r in table if r["codec"] == "idfc")["tiles"] == "1"
    assert {r["codec"] for r in table if r["image"] == "TOTAL"} == {c.name for c in codecs}
    document = json.loads(paths["json"].read_text())
    assert len(document["results"]) == len(results)
    png = next(t for t in document["totals"] if t["codec"] == "png")
    assert png["bpsp"] == pytest.approx(next(t.bpsp for t in rows if t.codec == "png"))
    with Image.open(paths["plot"]) as plot:
        assert plot.format == "PNG" and plot.width > 100


def test_same_pixels(bench):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert bench.same_pixels(grey, rgb) and bench.same_pixels(grey, grey[:, :, None])
    assert not bench.same_pixels(grey, grey.T)
    rgba = np.dstack([rgb, np.full_like(grey, 255)])
    assert bench.same_pixels(rgba, rgb) and bench.same_pixels(rgb, rgba)
    rgba[0, 0, 3] = 3
    assert not bench.same_pixels(rgba, rgb)
    shifted = rgb.copy()
    shifted[1, 1, 2] += 1
    assert not bench.same_pixels(grey, shifted) and not bench.same_pixels(rgb, shifted)
    assert not bench.same_pixels(rgb, rgb.astype(np.uint16))


def test_command_line(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "set_threads", lambda threads: None)  # leave idfc's setting
    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(smooth_image(rng, 24, 32, 3)).save(folder / "a.png")
    Image.fromarray(smooth_image(rng, 16, 16, 1)[:, :, 0]).save(folder / "b.png")
    Image.fromarray(smooth_image(rng, 16, 16, 3)).save(folder / "c.png")
    out = tmp_path / "out"
    argv = [str(folder), "--limit", "2", "--codecs", "png,qoi,idfc", "--repeats", "1",
            "--threads", "1", "--out", str(out), "--per-image"]  # fmt: skip
    assert bench.main(argv) == 0
    printed = capsys.readouterr()
    assert "| png | yes | 2/2 |" in printed.out and "Per image" in printed.out
    assert "Grey images only (1)" in printed.out
    assert "photos/c.png" not in printed.out  # --limit 2
    assert "[2/2] photos/b.png" in printed.err
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.json", "bpsp_vs_decode.png"}
    with pytest.raises(SystemExit, match="no codec matches 'nope'"):
        bench.main([str(folder), "--codecs", "nope"])


def test_missing_dependency_message(bench, monkeypatch, capsys):
    monkeypatch.setattr(bench, "missing_dependencies", lambda: ["imagecodecs"])
    assert bench.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scripts/setup.sh bench" in err
    assert "pip install -e '.[bench]'" in err  # the extra pulls no torch


def test_plot_labels_do_not_overlap(bench, tmp_path):
    """Crowded points (the two JPEG XL efforts, idfc and another point nearly on top of
    each other): no label covers another, a marker or the axes' edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    figures = [("jxl-e9", 3.719, 3.72), ("jxl-e7", 3.780, 4.26), ("idfc", 3.733, 0.409),
               ("neighbour", 3.745, 0.42), ("webp", 3.826, 42.5), ("jpeg2000", 4.115, 4.02),
               ("jpeg-ls", 4.169, 17.1), ("png", 4.635, 30.3), ("qoi", 3.80, 40.0)]  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.set_xscale("log")
    for _, bpsp, speed in figures:
        ax.scatter(speed, bpsp)
    ax.margins(x=0.25, y=0.15)
    fig.canvas.draw()
    labels = bench.place_labels(ax, [(speed, bpsp, name) for name, bpsp, speed in figures])
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(label, renderer) for label in labels]
    frame = ax.get_window_extent(renderer)
    markers = [ax.transData.transform((speed, bpsp)) for _, bpsp, speed in figures]
    for i, box in enumerate(boxes):
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), labels[i]
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), (labels[i].get_text(), boxes.index(other))
        for x, y in markers:
            assert not box.contains(x, y), labels[i].get_text()
    plt.close(fig)

    rows = [bench.Total(n, True, 1, 1, 10, bpsp=b, decode_mps=s) for n, b, s in figures]
    paths = bench.write_outputs(tmp_path, [], rows, [], {"threads": 2}, [])
    paths["plot"].unlink()
    assert bench.main(["--replot", str(tmp_path)]) == 0  # redrawn from results.json alone
    with Image.open(paths["plot"]) as plot:
        assert plot.format == "PNG" and plot.width > 100
