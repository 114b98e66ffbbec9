"""The ``idfc`` command line: files, stdin/stdout, errors and exit codes, as users run it.

Most cases run in-process with click's CliRunner and the ``tiny_models`` fixture; a few run
the installed ``idfc`` script in a real process where stdin/stdout/stderr behaviour matters.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import recorded, smooth_image
from PIL import Image

from idfcompress import __version__, api
from idfcompress.app import files
from idfcompress.app.cli import main
from idfcompress.flow import store
from idfcompress.format import container
from idfcompress.predictive import prior

H, W = 40, 56
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


# ----------------------------------------------------------------------------- helpers


def idfc(*args: str, input: bytes | None = None, env: dict | None = None):
    """Run the CLI in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, list(args), input=input, env=env)


def make_array(seed: int = 0, channels: int = 3) -> np.ndarray:
    array = smooth_image(np.random.default_rng(seed), H, W, channels)
    return array[:, :, 0] if channels == 1 else array


def save_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array, MODES[1 if array.ndim == 2 else array.shape[2]]).save(path)
    return path


def pixels_of(data_or_path: bytes | Path) -> tuple[str, np.ndarray]:
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    with Image.open(source) as image:
        image.load()
        return image.mode, np.asarray(image)


def assert_one_error(stderr: str, name: str | None = None) -> str:
    """Exactly one line on stderr, ``idfc: NAME: ...``, and no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("idfc:"), lines[0]
    if name is not None:
        assert lines[0].startswith(f"idfc: {name}:"), lines[0]
    return lines[0]


def assert_no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


def exited(result, code: int) -> None:
    """The exit code is ``code`` and came from a clean exit, not an escaped exception."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    if code:
        assert isinstance(result.exception, SystemExit), result.exception


@pytest.fixture()
def work(tmp_path, tiny_models, monkeypatch):
    """A folder (also the current directory) with photo.png (RGB, 40x56) in it."""
    monkeypatch.chdir(tmp_path)
    save_png(tmp_path / "photo.png", make_array())
    return tmp_path


@pytest.fixture()
def photo_idf(work):
    """photo.idf made by the API (independent of the CLI's compress)."""
    (work / "photo.idf").write_bytes(api.compress(make_array()))
    return work / "photo.idf"


def bad_files(folder: Path, good: bytes) -> dict[str, Path]:
    middle = bytearray(good)
    middle[len(middle) // 2] ^= 0xFF
    contents = {
        "corrupt": bytes(middle),
        "truncated": good[: len(good) // 2],
        "foreign": (folder / "photo.png").read_bytes(),  # a PNG named .idf
        "empty": b"",
    }
    paths = {}
    for kind, data in contents.items():
        paths[kind] = folder / f"{kind}.idf"
        paths[kind].write_bytes(data)
    return paths


# ----------------------------------------------------------------------------- compress


def test_compress_verbose_says_how_tiles_were_coded(work):
    result = idfc("compress", "-v", "photo.png", "-o", "d.idf")
    exited(result, 0)
    assert "bits/subpixel; 1 tiles after 1 of the coarse level;" in result.output


@pytest.mark.parametrize("option", [["--progressive"], ["-e", "2"], ["--model", "idf-rgb-c1"]])
def test_the_flows_encoder_options_are_gone(work, option):
    result = idfc("compress", *option, "photo.png")
    exited(result, 2)
    assert "No such option" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]


def test_compress_writes_idf_next_to_input_and_keeps_input(work):
    before = (work / "photo.png").read_bytes()
    result = idfc("compress", "photo.png")
    exited(result, 0)
    assert sorted(p.name for p in work.iterdir()) == ["photo.png", "photo.png.idf"]
    assert (work / "photo.png").read_bytes() == before
    assert np.array_equal(api.decompress((work / "photo.png.idf").read_bytes()), make_array())
    assert "photo.png.idf" in result.stderr  # the summary line names the output
    assert result.stdout == ""


def test_verify_decodes_before_writing(work, monkeypatch):
    exited(idfc("compress", "--verify", "photo.png"), 0)
    assert np.array_equal(api.decompress((work / "photo.png.idf").read_bytes()), make_array())
    (work / "photo.png.idf").unlink()
    real = api.decompress_pixels

    def off_by_one(data, **kwargs):
        decoded = real(data, **kwargs)
        decoded.pixels[0, 0, 0] ^= 1
        return decoded

    monkeypatch.setattr(api, "decompress_pixels", off_by_one)
    result = idfc("compress", "--verify", "photo.png")
    exited(result, 1)
    assert "verification failed" in result.stderr and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]
    exited(idfc("compress", "photo.png"), 0)  # without --verify nothing decodes


def test_quiet_prints_nothing(work):
    result = idfc("compress", "-q", "photo.png")
    exited(result, 0)
    assert result.stderr == "" and result.stdout == ""
    assert (work / "photo.png.idf").is_file()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_outputs_get_ordinary_permissions(work):
    """Outputs follow the umask like any new file (not the 0600 of a private temp file)."""
    (work / "reference").write_bytes(b"")
    expected = stat.S_IMODE((work / "reference").stat().st_mode)
    exited(idfc("compress", "photo.png"), 0)
    exited(idfc("decompress", "photo.png.idf", "-o", "out.png"), 0)
    (work / "old.png").write_bytes(b"old")
    exited(idfc("decompress", "photo.png.idf", "-o", "old.png", "-f"), 0)
    for name in ("photo.png.idf", "out.png", "old.png"):
        assert stat.S_IMODE((work / name).stat().st_mode) == expected, name


# ----------------------------------------------------------------------------- decompress


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".tga"])
def test_decompress_rgb_to_lossless_formats(photo_idf, suffix):
    result = idfc("decompress", "photo.idf", "-o", f"out{suffix}")
    exited(result, 0)
    mode, pixels = pixels_of(photo_idf.parent / f"out{suffix}")
    assert mode == "RGB"
    assert np.array_equal(pixels, make_array())


@pytest.mark.parametrize(
    ("channels", "suffix"),
    [
        (1, ".png"),
        (1, ".tif"),
        (1, ".bmp"),
        (2, ".png"),
        (2, ".tif"),
        (4, ".png"),
        (4, ".tif"),
        (4, ".webp"),
    ],
)
def test_decompress_other_modes_where_the_format_allows(work, channels, suffix):
    array = make_array(seed=channels, channels=channels)
    save_png(work / "img.png", array)
    exited(idfc("compress", "img.png"), 0)
    exited(idfc("decompress", "img.png.idf", "-o", f"out{suffix}"), 0)
    mode, pixels = pixels_of(work / f"out{suffix}")
    assert mode == MODES[channels]
    assert np.array_equal(pixels, array)


def test_decompress_default_name_is_png_next_to_input(photo_idf):
    (photo_idf.parent / "photo.png").unlink()
    exited(idfc("decompress", "photo.idf"), 0)
    mode, pixels = pixels_of(photo_idf.parent / "photo.png")
    assert mode == "RGB" and np.array_equal(pixels, make_array())
    assert photo_idf.read_bytes() == api.compress(make_array())  # input kept, unchanged


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".gif", ".idf"])
def test_lossy_or_unknown_output_format_refused(photo_idf, suffix):
    result = idfc("decompress", "photo.idf", "-o", f"out{suffix}")
    exited(result, 1)
    line = assert_one_error(result.stderr, "photo.idf")
    assert suffix in line
    assert not (photo_idf.parent / f"out{suffix}").exists()
    assert_no_temp_files(photo_idf.parent)


@pytest.mark.parametrize("suffix", [".bmp", ".ppm"])
def test_rgba_to_a_format_without_alpha_is_refused(work, suffix):
    save_png(work / "img.png", make_array(seed=4, channels=4))
    exited(idfc("compress", "img.png"), 0)
    result = idfc("decompress", "img.png.idf", "-o", f"out{suffix}")
    exited(result, 1)
    assert_one_error(result.stderr, "img.png.idf")
    assert not (work / f"out{suffix}").exists()


def test_output_in_missing_folder_is_an_error(photo_idf):
    result = idfc("decompress", "photo.idf", "-o", "nowhere/out.png")
    exited(result, 1)
    assert_one_error(result.stderr, "photo.idf")
    assert not (photo_idf.parent / "nowhere").exists()


def test_missing_input_and_directory_input(work):
    (work / "folder").mkdir()
    for name in ("nothere.png", "folder"):
        result = idfc("compress", name)
        exited(result, 1)
        assert_one_error(result.stderr, name)
    assert sorted(p.name for p in work.iterdir()) == ["folder", "photo.png"]


# ----------------------------------------------------------------------------- existing outputs


def test_existing_output_without_force_is_untouched(photo_idf):
    work = photo_idf.parent
    (work / "photo.png.idf").write_bytes(b"precious")
    result = idfc("compress", "photo.png")
    exited(result, 1)
    line = assert_one_error(result.stderr, "photo.png")
    assert "photo.png.idf" in line and "exists" in line
    assert (work / "photo.png.idf").read_bytes() == b"precious"

    (work / "photo.idf").write_bytes(api.compress(make_array()))
    (work / "out.png").write_bytes(b"precious too")
    result = idfc("decompress", "photo.idf", "-o", "out.png")
    exited(result, 1)
    assert "out.png" in assert_one_error(result.stderr, "photo.idf")
    assert (work / "out.png").read_bytes() == b"precious too"
    assert_no_temp_files(work)


def test_force_replaces_existing_output(work):
    (work / "photo.png.idf").write_bytes(b"old")
    exited(idfc("compress", "-f", "photo.png"), 0)
    assert np.array_equal(api.decompress((work / "photo.png.idf").read_bytes()), make_array())

    (work / "out.png").write_bytes(b"old")
    exited(idfc("decompress", "--force", "photo.png.idf", "-o", "out.png"), 0)
    assert np.array_equal(pixels_of(work / "out.png")[1], make_array())
    assert_no_temp_files(work)


def test_output_appearing_during_compression_is_not_clobbered(work, monkeypatch):
    """Another program creates photo.png.idf while we encode: without -f it must survive."""
    encode = api.compress_with_stats

    def slow_encode(*args, **kwargs):
        (work / "photo.png.idf").write_bytes(b"theirs")
        return encode(*args, **kwargs)

    monkeypatch.setattr(api, "compress_with_stats", slow_encode)
    result = idfc("compress", "photo.png")
    exited(result, 1)
    assert "photo.png.idf" in assert_one_error(result.stderr, "photo.png")
    assert (work / "photo.png.idf").read_bytes() == b"theirs"
    assert_no_temp_files(work)


def test_several_inputs_one_failing_the_others_still_processed(work):
    for name, seed in (("a", 1), ("b", 2), ("d", 3)):
        save_png(work / f"{name}.png", make_array(seed))
    (work / "b.png.idf").write_bytes(b"keep")
    (work / "c.png").write_bytes(b"this is not an image")
    result = idfc("compress", "a.png", "b.png", "c.png", "d.png")
    exited(result, 1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("idfc:")]
    assert [line.split(":")[1].strip() for line in errors] == ["b.png", "c.png"]
    assert "Traceback" not in result.stderr
    assert (work / "b.png.idf").read_bytes() == b"keep"
    assert not (work / "c.png.idf").exists()
    for name, seed in (("a", 1), ("d", 3)):
        data = (work / f"{name}.png.idf").read_bytes()
        assert np.array_equal(api.decompress(data), make_array(seed))


# ------------------------------------------------------------------ -o with several inputs


def test_output_directory_with_several_inputs(work):
    save_png(work / "second.png", make_array(5))
    (work / "out").mkdir()
    exited(idfc("compress", "photo.png", "second.png", "-o", "out"), 0)
    assert sorted(p.name for p in (work / "out").iterdir()) == ["photo.png.idf", "second.png.idf"]
    assert not (work / "photo.png.idf").exists() and not (work / "second.png.idf").exists()

    (work / "back").mkdir()
    exited(idfc("decompress", "out/photo.png.idf", "out/second.png.idf", "-o", "back"), 0)
    assert np.array_equal(pixels_of(work / "back" / "photo.png")[1], make_array())
    assert np.array_equal(pixels_of(work / "back" / "second.png")[1], make_array(5))


def test_output_directory_with_one_input(work):
    (work / "out").mkdir()
    exited(idfc("compress", "photo.png", "-o", "out"), 0)
    assert (work / "out" / "photo.png.idf").is_file()


@pytest.mark.parametrize("target", ["missing", "existing.idf"])
def test_output_must_be_an_existing_directory_with_several_inputs(work, target):
    save_png(work / "second.png", make_array(5))
    (work / "existing.idf").write_bytes(b"keep")
    before = sorted(p.name for p in work.iterdir())
    result = idfc("compress", "photo.png", "second.png", "-o", target)
    exited(result, 2)
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in work.iterdir()) == before
    assert (work / "existing.idf").read_bytes() == b"keep"


# ----------------------------------------------------------------------------- -c and -


def test_stdout_flag_and_stdin_in_process(work):
    result = idfc("compress", "-c", "photo.png")
    exited(result, 0)
    assert not (work / "photo.idf").exists()
    data = result.stdout_bytes
    assert np.array_equal(api.decompress(data), make_array())

    result = idfc("compress", "-", input=(work / "photo.png").read_bytes())
    exited(result, 0)
    assert np.array_equal(api.decompress(result.stdout_bytes), make_array())

    (work / "photo.png").unlink()
    (work / "photo.idf").write_bytes(data)
    for args, stdin in ((["decompress", "-c", "photo.idf"], None), (["decompress", "-"], data)):
        result = idfc(*args, input=stdin)
        exited(result, 0)
        assert pixels_of(result.stdout_bytes)[0] == "RGB"
        assert np.array_equal(pixels_of(result.stdout_bytes)[1], make_array())
    assert sorted(p.name for p in work.iterdir()) == ["photo.idf"]


def test_empty_stdin_is_an_error(work):
    result = idfc("decompress", "-", input=b"")
    exited(result, 1)
    assert_one_error(result.stderr, "-")
    assert result.stdout_bytes == b""


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "foreign", "empty"])
def test_bad_files_one_line_and_no_output(photo_idf, kind):
    work = photo_idf.parent
    bad = bad_files(work, photo_idf.read_bytes())[kind]
    before = sorted(p.name for p in work.iterdir())
    for args in (["decompress", bad.name], ["decompress", bad.name, "-o", "out.png"]):
        result = idfc(*args)
        exited(result, 1)
        assert_one_error(result.stderr, bad.name)
    result = idfc("test", bad.name)
    exited(result, 1)
    assert_one_error(result.stderr, bad.name)
    assert sorted(p.name for p in work.iterdir()) == before  # no X.png, out.png or .part


@pytest.mark.parametrize("kind", ["foreign", "empty"])
def test_info_on_non_idf_files(photo_idf, kind):
    bad = bad_files(photo_idf.parent, photo_idf.read_bytes())[kind]
    result = idfc("info", bad.name)
    exited(result, 1)
    assert_one_error(result.stderr, bad.name)


def test_debug_shows_the_traceback(photo_idf):
    bad = bad_files(photo_idf.parent, photo_idf.read_bytes())["corrupt"]
    exited(result := idfc("--debug", "decompress", bad.name), 1)
    assert "Traceback" in result.stderr
    exited(result := idfc("decompress", bad.name, env={"IDFC_DEBUG": "1"}), 1)
    assert "Traceback" in result.stderr


def test_write_failure_and_interrupt_leave_nothing(work, monkeypatch):
    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    result = idfc("compress", "photo.png")
    exited(result, 1)
    assert "No space left" in assert_one_error(result.stderr, "photo.png")
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    result = idfc("compress", "photo.png")
    exited(result, 130)
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]


# ----------------------------------------------------------------------------- never the input


def test_never_overwrites_the_input(photo_idf):
    work = photo_idf.parent
    data = photo_idf.read_bytes()
    result = idfc("decompress", "photo.idf", "-o", "photo.idf", "-f")
    exited(result, 1)
    assert_one_error(result.stderr, "photo.idf")
    assert photo_idf.read_bytes() == data

    # An .idf file named x.png: the extension is a valid output, so only the input check refuses.
    (work / "x.png").write_bytes(data)
    for target in ("x.png", "./x.png", str(work / "x.png")):
        result = idfc("decompress", "x.png", "-o", target, "-f")
        exited(result, 1)
        assert "input" in assert_one_error(result.stderr, "x.png")
        assert (work / "x.png").read_bytes() == data

    png = (work / "photo.png").read_bytes()
    result = idfc("compress", "photo.png", "-o", "photo.png", "-f")
    exited(result, 1)
    assert "input" in assert_one_error(result.stderr, "photo.png")
    assert (work / "photo.png").read_bytes() == png
    if hasattr(os, "symlink"):
        (work / "link.png").symlink_to("photo.png")
        result = idfc("compress", "photo.png", "-o", "link.png", "-f")
        exited(result, 1)
        assert (work / "photo.png").read_bytes() == png
    assert_no_temp_files(work)


# ----------------------------------------------------------------------------- info, test, models


def ic_info_fitted(data: bytes) -> int:
    """First-stage payloads with prior byte 1, counted from the chunk table by hand."""
    from idfcompress.format import container, layout

    _, chunks = container.read(data)
    first = max(e.kind for e, _ in chunks if e.kind not in (layout.REGION_KIND, layout.MARGIN_KIND))
    return sum(1 for e, p in chunks if e.kind == first and p[0] == layout.TOP_LOGISTIC)


def test_info_text_and_json(photo_idf):
    work = photo_idf.parent
    result = idfc("info", "photo.idf")
    exited(result, 0)
    assert f"{W}x{H} RGB" in result.stdout
    assert "tiny-rgb" not in result.stdout and "flow model" not in result.stdout
    assert "margins" not in result.stdout and "first-stage" not in result.stdout  # flow only
    data = recorded("rgb-64x64-t32-fitted")  # flow-coded: first stages with fitted priors
    (work / "bright.idf").write_bytes(data)
    fitted = ic_info_fitted(data)
    assert fitted >= 1
    result = idfc("info", "bright.idf")
    exited(result, 0)
    assert f"{fitted} first-stage priors fitted" in result.stdout
    assert "flow model tiny-rgb" in result.stdout

    save_png(work / "alpha.png", make_array(seed=4, channels=4))
    exited(idfc("compress", "alpha.png"), 0)
    result = idfc("info", "--json", "photo.idf", "alpha.png.idf")
    exited(result, 0)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == ["photo.idf", "alpha.png.idf"]
    for record, mode in zip(records, ["RGB", "RGBA"], strict=True):
        assert (record["width"], record["height"], record["mode"]) == (W, H, mode)
        assert record["file_bytes"] == (work / record["file"]).stat().st_size
    assert [g["model"] for g in records[1]["groups"]] == ["none", "none"]
    assert [g["flow_chunks"] for g in records[1]["groups"]] == [0, 0]


def ic_region_coders(data: bytes) -> dict[str, int]:
    """Region, margin and coarse payloads by their first byte, counted from the chunk table
    by hand."""
    from idfcompress.format import container, layout

    _, chunks = container.read(data)
    kinds = (layout.REGION_KIND, layout.MARGIN_KIND, layout.COARSE_KIND)
    first = [p[:2] for e, p in chunks if e.kind in kinds]
    return {
        "learned": sum(1 for p in first if p[0] == 6),
        "given": sum(1 for p in first if p[0] == 7),
        "lzma": sum(1 for p in first if p[0] in (0, 1)),
        "prior ids": {p[1] for p in first if p[0] in (6, 7)},
        "coarse": sum(1 for e, _ in chunks if e.kind == layout.COARSE_KIND),
    }


def test_info_names_the_coder_of_every_region(tmp_path):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:64, 0:128]
    noisy = (x + y)[:, :, None] + rng.normal(0, 4, (64, 128, 3)) + 60  # the prediction wins
    photo = np.clip(noisy, 0, 255).astype(np.uint8)
    photo[:, :64] = 0  # a flat half: LZMA2 wins there
    data = api.compress(photo, tile_size=32)
    counted = ic_region_coders(data)
    assert counted["given"] and counted["lzma"] and counted["prior ids"] == {prior.DEFAULT_PRIOR}
    fields = api.info(data)["region_coders"]
    name = f"learned prior {prior.DEFAULT_PRIOR}, online filter, shifts by scale"
    assert fields.get(name, 0) == counted["learned"]
    assert fields.get(f"{name}, coarse level given") == counted["given"]
    assert fields.get("LZMA2", 0) + fields.get("LZMA2, delta", 0) == counted["lzma"]
    (tmp_path / "half.idf").write_bytes(data)
    result = idfc("info", str(tmp_path / "half.idf"))
    exited(result, 0)
    assert f"{counted['given']} {name}, coarse level given" in result.stdout
    assert f"in {counted['coarse']} tile(s)" in result.stdout


def test_test_command(photo_idf):
    work = photo_idf.parent
    bad = bad_files(work, photo_idf.read_bytes())["corrupt"]
    before = sorted(p.name for p in work.iterdir())
    result = idfc("test", "photo.idf")
    exited(result, 0)
    assert "OK" in result.stderr and result.stdout == ""
    result = idfc("test", "photo.idf", bad.name)
    exited(result, 1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("idfc:")]
    assert len(errors) == 1 and errors[0].startswith(f"idfc: {bad.name}:")
    assert sorted(p.name for p in work.iterdir()) == before


def test_models_lists_priors_then_flow_models(tiny_models):
    result = idfc("models")
    exited(result, 0)
    lines = result.stdout.splitlines()
    assert "tiny-rgb  (flow model, decodes older flow-coded files)" in lines
    assert "idf-rgb-c1  (flow model, decodes older flow-coded files)" in lines
    # the shipped prior is listed as what it is, not as a flow model
    for prior_id in prior.PRIORS:
        mark = ", default" if prior_id == prior.DEFAULT_PRIOR else ""
        listed = f"prior-{prior_id}  (learned prior {prior_id} of the predictive coder{mark})"
        assert listed in lines
        assert f"prior-{prior_id}" not in lines


def test_priors_beside_the_models_are_not_flow_models(tiny_model_dir, tmp_path, monkeypatch):
    from idfcompress.flow import store

    shipped = Path(__file__).resolve().parents[2] / "models" / "prior-1.safetensors"
    (tmp_path / "prior-1.safetensors").write_bytes(shipped.read_bytes())
    shutil.copy(tiny_model_dir / "tiny-rgb.safetensors", tmp_path)
    monkeypatch.setenv(store.MODELS_ENV, str(tmp_path))
    names = store.available_models()
    assert "tiny-rgb" in names and "prior-1" not in names


# ----------------------------------------------------------------------------- usage, help, version


@pytest.mark.parametrize(
    "args",
    [
        ["compress", "--bogus", "photo.png"],
        ["compress"],
        ["decompress"],
        ["test"],
        ["info"],
        ["compress", "--tile-size", "12", "photo.png"],
        ["compress", "--tile-size", "4", "photo.png"],
        ["compress", "--tile-size", "big", "photo.png"],
        ["compress", "-T", "0", "photo.png"],
        ["decompress", "--max-pixels", "0", "photo.idf"],
        ["frobnicate", "photo.png"],
    ],
)
def test_usage_errors_exit_2(work, args):
    result = idfc(*args)
    exited(result, 2)
    assert "Traceback" not in result.stderr
    assert "Usage:" in result.stderr or "Error:" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["photo.png"]


def test_version_names_the_format_and_prior():
    result = idfc("--version")
    exited(result, 0)
    assert __version__ in result.stdout
    expected = f"format {container.FORMAT_VERSION}, learned prior {prior.DEFAULT_PRIOR}"
    assert expected in result.stdout


def test_help_documents_exit_codes_and_options():
    result = idfc("--help")
    exited(result, 0)
    assert "Exit codes" in result.stdout
    for command, options in {
        "compress": ["-o, --output", "-f, --force", "-c, --stdout", "--tile-size", "--verify"],
        "decompress": ["-o, --output", "-f, --force", "-c, --stdout", "--max-pixels"],
        "test": ["--threads"],
        "info": ["--json"],
    }.items():
        assert command in result.stdout
        sub = idfc(command, "--help")
        exited(sub, 0)
        for option in options:
            assert option in sub.stdout, (command, option)
        assert "Exit codes" in sub.stdout, command
        for code in ("0 ", "1 ", "2 "):
            assert f"  {code}" in sub.stdout, (command, code)


# ----------------------------------------------------------------------------- real processes


def run_idfc(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run the installed script; the tiny models come from IDFC_MODELS (set by the fixture)."""
    assert os.environ.get(store.MODELS_ENV)
    script = Path(sys.executable).with_name("idfc")
    command = (
        [str(script)]
        if script.exists()
        else [
            sys.executable,
            "-c",
            "import sys; from idfcompress.app.cli import main; main(prog_name='idfc')",
        ]
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    env.pop("IDFC_DEBUG", None)
    return subprocess.run(command + args, env=env, timeout=120, **kwargs)


def test_process_stdin_stdout_round_trip(work):
    with open(work / "photo.png", "rb") as src, open(work / "out.idf", "wb") as dst:
        done = run_idfc(
            ["compress", "-"], stdin=src, stdout=dst, stderr=subprocess.PIPE
        )
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert np.array_equal(api.decompress((work / "out.idf").read_bytes()), make_array())

    with open(work / "out.idf", "rb") as src:
        done = run_idfc(
            ["decompress", "-", "-c"], stdin=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    assert done.returncode == 0, done.stderr
    mode, pixels = pixels_of(done.stdout)
    assert mode == "RGB" and np.array_equal(pixels, make_array())
    assert sorted(p.name for p in work.iterdir()) == ["out.idf", "photo.png"]


def test_process_bad_files_one_line_each(photo_idf):
    work = photo_idf.parent
    paths = bad_files(work, photo_idf.read_bytes())
    before = sorted(p.name for p in work.iterdir())
    names = [p.name for p in paths.values()]
    done = run_idfc(
        ["decompress", *names], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    *lines, summary = done.stderr.splitlines()  # one line per file, in order, then the summary
    assert len(lines) == len(names), done.stderr
    for line, name in zip(lines, names, strict=True):
        assert line.startswith(f"idfc: {name}:"), line
    assert summary.startswith("0 of 4 files decompressed, 4 failed")
    assert sorted(p.name for p in work.iterdir()) == before


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_process_refuses_binary_to_a_terminal(photo_idf):
    import pty
    import select

    leader, follower = pty.openpty()
    try:
        done = run_idfc(
            ["decompress", "-c", "photo.idf"], stdout=follower, stderr=subprocess.PIPE, text=True
        )
        os.close(follower)
        follower = -1
        assert done.returncode == 1
        assert "terminal" in assert_one_error(done.stderr)
        readable, _, _ = select.select([leader], [], [], 0.2)
        if readable:  # Linux reports EIO once the terminal's other side is closed
            try:
                assert os.read(leader, 1 << 16) == b""
            except OSError:
                pass
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert sorted(p.name for p in photo_idf.parent.iterdir()) == ["photo.idf", "photo.png"]
