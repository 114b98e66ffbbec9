"""Progressive decoding (issue 4): stages from a prefix, streams, the CLI and the viewer.

Flow-coded files recorded with tiny random models (conftest, codec/data/flow): every tile
in 4 stages (3 levels + split top), the finest display the decoder has; a few mix in raw
tiles on purpose. Default files' stages (the coarse level, then rows of tiles) are tested
in test_coarse.py.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import recorded
from PIL import Image

import idfcompress as ic
from idfcompress.app.batch import PREVIEW_EXIT
from idfcompress.app.cli import main
from idfcompress.app.viewer import paint_sequence
from idfcompress.codec.progressive import decode_preview, decode_progressive
from idfcompress.entropy.tables import PROB_TOTAL, quantize_logistic
from idfcompress.errors import CorruptFile, TruncatedFile
from idfcompress.flow import coding, store
from idfcompress.flow.preview import prior_mode
from idfcompress.format import container
from idfcompress.format.layout import REGION_KIND
from idfcompress.predictive import regions

STAGES = 4  # tiny models: levels 3, split top


FORMAT10 = Path(__file__).with_name("data") / "format10"


@pytest.fixture()
def photo(tiny_models) -> tuple[np.ndarray, bytes]:
    """A 72x40 picture flow-coded in 32-px tiles, and its pixels (exact: SHA-256 checked)."""
    data = recorded("rgb-72x40-t32")
    return ic.decompress(data), data


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self.data, self.pos, self.step, self.reads = data, 0, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        n = self.step if size < 0 else min(size, self.step)
        piece = self.data[self.pos : self.pos + n]
        self.pos += len(piece)
        return piece


def arrays(stages) -> list[np.ndarray]:
    return [s.pixels for s in stages]


# ----------------------------------------------------------------------------- API


def test_stages_count_bytes_and_exact_last(photo):
    image, data = photo
    stages = list(ic.decode_progressive(data))
    assert [s.index for s in stages] == list(range(1, STAGES + 1))
    assert all(s.count == STAGES and s.total_bytes == len(data) for s in stages)
    used = [s.bytes_used for s in stages]
    assert used == sorted(used) and len(set(used)) == STAGES and used[-1] == len(data)
    assert [s.exact for s in stages] == [False] * (STAGES - 1) + [True]
    assert stages[0].fraction < 0.5 and stages[-1].fraction == 1.0
    # The last stage is the exact decode (and the original).
    assert np.array_equal(stages[-1].pixels, ic.decompress(data))
    assert np.array_equal(stages[-1].pixels, image)
    # Previews are whole images of the right shape and get closer to the original.
    errors = [np.abs(s.pixels.astype(int) - image).mean() for s in stages]
    assert all(s.pixels.shape == image.shape and s.pixels.dtype == np.uint8 for s in stages)
    assert errors[-1] == 0 and errors[-2] < errors[0], errors


def test_stages_are_deterministic(photo):
    _, data = photo
    first, second = arrays(decode_progressive(data)), arrays(decode_progressive(data))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[-1])


def test_a_prefix_yields_fewer_stages_then_truncated(photo):
    _, data = photo
    full = list(decode_progressive(data))
    for keep in (1, 2, STAGES - 1):
        prefix = data[: full[keep - 1].bytes_used]
        got = []
        with pytest.raises(TruncatedFile, match="incomplete"):
            for stage in decode_progressive(prefix):
                got.append(stage)
        assert len(got) == keep and not any(s.exact for s in got)
        assert all(np.array_equal(a, b) for a, b in zip(arrays(got), arrays(full), strict=False))
    # One byte short of the whole file: never the exact image.
    got = []
    with pytest.raises(TruncatedFile, match="previews, not the exact image"):
        got.extend(decode_progressive(data[:-1]))
    assert len(got) == STAGES - 1
    # Short of the first stage, or inside the header: nothing, and it says so.
    for cut in (full[0].bytes_used - 1, 30, 0):
        with pytest.raises(TruncatedFile, match="nothing can be shown|no bytes"):
            next(decode_progressive(data[:cut]))


def test_stream_in_7_byte_pieces_equals_bytes(photo, tmp_path):
    _, data = photo
    reference = list(decode_progressive(data))
    stream = Trickle(data, 7)
    streamed = list(decode_progressive(stream))
    assert stream.reads > len(data) // 7
    path = tmp_path / "photo.idf"
    path.write_bytes(data)
    for got in (streamed, list(decode_progressive(path)), list(decode_progressive(str(path)))):
        assert [(s.index, s.bytes_used, s.exact) for s in got] == [
            (s.index, s.bytes_used, s.exact) for s in reference
        ]
        assert all(
            np.array_equal(a, b) for a, b in zip(arrays(got), arrays(reference), strict=True)
        )
    # A stream that stops early: the stages it allows, then TruncatedFile.
    got = []
    with pytest.raises(TruncatedFile):
        got.extend(decode_progressive(Trickle(data[: reference[1].bytes_used + 3], 7)))
    assert len(got) == 2


def test_stream_stages_arrive_before_the_rest_is_read(photo):
    """Stage k is yielded as soon as its bytes are in, not after the whole file."""
    _, data = photo
    stream = Trickle(data, 100)
    for stage in decode_progressive(stream, piece_size=100):
        assert stream.pos < stage.bytes_used + 100


def test_sampling_differs_from_modes_but_is_reproducible(photo):
    image, data = photo
    modes = arrays(decode_progressive(data))
    sampled = arrays(decode_progressive(data, sample=True, seed=3))
    again = arrays(decode_progressive(data, sample=True, seed=3))
    other = arrays(decode_progressive(data, sample=True, seed=4))
    assert all(np.array_equal(a, b) for a, b in zip(sampled, again, strict=True))
    for k in range(STAGES - 1):
        assert not np.array_equal(sampled[k], modes[k]), k
        assert not np.array_equal(sampled[k], other[k]), k
    assert np.array_equal(sampled[-1], image)  # the exact stage does not depend on sampling


def test_region_tiles_are_exact_from_the_first_stage(tiny_models):
    # a flow-coded file whose tile 0 is a region chunk instead, as "auto" mode wrote them
    flow = recorded("rgb-64x64-t32")
    image = ic.decompress(flow)
    header, pairs = container.read(flow)
    chunks = [container.Chunk(e.group, e.kind, e.tile, bytes(p)) for e, p in pairs if e.tile]
    region = regions.encode_regions([image[:32, :32]])
    data = container.write(header, [container.Chunk(0, REGION_KIND, 0, region), *chunks])
    stages = list(decode_progressive(data))
    assert len(stages) == STAGES and stages[-1].exact
    assert np.array_equal(stages[0].pixels[:32, :32], image[:32, :32])
    assert not np.array_equal(stages[0].pixels[32:], image[32:])
    assert np.array_equal(stages[-1].pixels, image)
    # All raw in a flow file: a single stage, exact at once.
    only = list(decode_progressive(recorded("rgb-40x24-t16-noise-auto")))
    assert len(only) == 1 and only[0].exact and only[0].pixels.shape == (24, 40, 3)


def test_margins_are_exact_from_the_first_stage(tiny_models):
    stages = list(decode_progressive(recorded("rgb-29x45-t32")))  # 5 and 5 px of margin
    image = stages[-1].pixels
    assert len(stages) == STAGES and not stages[0].exact and stages[-1].exact
    assert np.array_equal(stages[0].pixels[40:], image[40:])
    assert np.array_equal(stages[0].pixels[:32, 24:29], image[:32, 24:29])
    assert not np.array_equal(stages[0].pixels[:40, :24], image[:40, :24])
    # An image smaller than the flow's granularity is all margin: one exact stage.
    only = list(decode_progressive(recorded("rgb-7x5")))
    assert len(only) == 1 and only[0].exact and only[0].pixels.shape == (5, 7, 3)


@pytest.mark.parametrize("name,mode", [("l", "L"), ("la", "LA"), ("rgba", "RGBA")])
def test_other_modes_and_plane_groups(tiny_models, name, mode):
    data = recorded(f"{name}-40x24-t16")
    stages = list(decode_progressive(data))
    assert len(stages) == STAGES and stages[-1].exact and not stages[0].exact
    assert np.array_equal(stages[-1].pixels, ic.decompress(data))
    assert stages[0].image.mode == mode


def test_a_context_split_model_shows_seven_stages():
    """Each logistic stage of a context-split model (the shipped one) is two stages of the
    file."""
    data = (FORMAT10 / "astronaut-112x96-flow.idf").read_bytes()
    stages = list(decode_progressive(data))
    assert len(stages) == 7 and [s.exact for s in stages] == [False] * 6 + [True]
    used = [s.bytes_used for s in stages]
    assert used == sorted(used) and len(set(used)) == 7


def test_corrupt_last_stage_is_never_presented_as_exact(photo):
    """A bad final chunk (CRC made to match) fails the checksum after the previews."""
    _, data = photo
    header, table = container.read_header(data)
    last = table[-1]
    payload = bytearray(data[last.offset : last.offset + last.length])
    payload[len(payload) // 2] ^= 0x10
    chunks = [
        container.Chunk(e.group, e.kind, e.tile, bytes(data[e.offset : e.offset + e.length]))
        for e in table[:-1]
    ] + [container.Chunk(last.group, last.kind, last.tile, bytes(payload))]
    bad = container.write(header, chunks)
    got = []
    with pytest.raises(CorruptFile):
        got.extend(decode_progressive(bad))
    assert len(got) == STAGES - 1 and not any(s.exact for s in got)


def test_trailing_bytes_make_the_last_stage_corrupt(photo):
    _, data = photo
    for source in (data + b"\0", Trickle(data + b"extra", 7)):
        got = []
        with pytest.raises(CorruptFile, match="after the last chunk"):
            got.extend(decode_progressive(source))
        assert len(got) == STAGES - 1 and not any(s.exact for s in got)


def test_trailing_bytes_give_one_message_in_every_reader(photo):
    _, data = photo
    messages = set()
    for read in (ic.decompress, container.read, lambda d: list(decode_progressive(d))):
        with pytest.raises(CorruptFile) as error:
            read(data + b"xy")
        messages.add(str(error.value))
    assert messages == {"corrupt .idf file: 2 unexpected bytes after the last chunk"}


def test_chunks_in_another_order_still_decode(photo):
    """Readers accept any chunk order; stages wait for all their chunks."""
    image, data = photo
    header, table = container.read_header(data)
    chunks = [
        container.Chunk(e.group, e.kind, e.tile, bytes(data[e.offset : e.offset + e.length]))
        for e in reversed(table)
    ]
    shuffled = container.write(header, chunks)
    stages = list(decode_progressive(shuffled))
    assert len(stages) == STAGES and all(s.bytes_used == len(shuffled) for s in stages)
    assert np.array_equal(stages[-1].pixels, image)
    assert zlib.crc32(shuffled) != zlib.crc32(data)


def test_decode_preview_is_the_best_stage(photo):
    _, data = photo
    full = list(decode_progressive(data))
    for k in (1, 3):
        preview = decode_preview(data[: full[k].bytes_used - 1])
        assert preview.index == k and not preview.exact
        assert np.array_equal(preview.pixels, full[k - 1].pixels)
    assert decode_preview(data).exact
    with pytest.raises(TruncatedFile):
        decode_preview(data[:100])


def test_logistic_mode_is_round_mean_and_the_table_mode():
    rng = np.random.default_rng(0)
    mean = np.concatenate([rng.uniform(-40, 40, 4000), np.arange(-8, 8, 1 / 16)])
    log_scale = rng.uniform(-3.2, 6.2, mean.size)
    ids, offsets = quantize_logistic(mean, log_scale)
    mode = prior_mode(mean)
    assert np.array_equal(mode, np.floor(mean + 0.5).astype(np.int64))
    tables = coding.logistic_tableset()
    for i in range(mean.size):
        weights = np.rint(tables.table(int(ids[i])) * PROB_TOTAL).astype(np.int64)
        # A mode of the snapped table; snapping moves weights by at most one unit.
        assert weights[mode[i] - offsets[i]] >= weights.max() - 1, (mean[i], log_scale[i])


# ----------------------------------------------------------------------------- CLI


def idfc(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_bytes_preview_and_exit_codes(photo, tmp_path, monkeypatch):
    image, data = photo
    monkeypatch.chdir(tmp_path)
    Path("photo.idf").write_bytes(data)
    full = list(decode_progressive(data))

    result = idfc("decompress", "photo.idf", "--bytes", "30%", "-o", "preview.png")
    assert result.exit_code == PREVIEW_EXIT, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("idfc: photo.idf: preview only"), lines
    expected = decode_preview(data[: int(0.3 * len(data))])
    assert not expected.exact
    assert np.array_equal(np.asarray(Image.open("preview.png")), expected.pixels)

    result = idfc("decompress", "photo.idf", "--bytes", str(full[1].bytes_used), "-o", "p2.png")
    assert result.exit_code == PREVIEW_EXIT
    assert np.array_equal(np.asarray(Image.open("p2.png")), full[1].pixels)

    result = idfc("decompress", "photo.idf", "--bytes", "100%", "-o", "exact.png")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open("exact.png")), image)

    result = idfc("decompress", "photo.idf", "--bytes", "40", "-o", "none.png")
    assert result.exit_code == 1 and not Path("none.png").exists()
    assert "incomplete" in result.stderr and len(result.stderr.splitlines()) == 1

    for bad in ("abc", "-5", "150%"):
        assert idfc("decompress", "photo.idf", "--bytes", bad, "-o", "x.png").exit_code == 2
    assert idfc("decompress", "photo.idf", "photo.idf", "--bytes", "10").exit_code == 2


def test_cli_progressive_writes_every_stage(photo, tmp_path, monkeypatch):
    image, data = photo
    monkeypatch.chdir(tmp_path)
    Path("photo.idf").write_bytes(data)
    reference = list(decode_progressive(data))

    result = idfc("decompress", "photo.idf", "--progressive", "stages")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in Path("stages").iterdir())
    assert written == [f"stage-{k}.png" for k in range(1, STAGES + 1)]
    for stage in reference:
        got = np.asarray(Image.open(f"stages/stage-{stage.index}.png"))
        assert np.array_equal(got, stage.pixels)
    assert np.array_equal(np.asarray(Image.open(f"stages/stage-{STAGES}.png")), image)

    # Existing stages are kept unless -f.
    result = idfc("decompress", "photo.idf", "--progressive", "stages")
    assert result.exit_code == 1 and "already exists" in result.stderr

    # A cut file: the stages it allows, exit code 3 and a note.
    result = idfc("decompress", "photo.idf", "--progressive", "cut", "--bytes", "60%")
    assert result.exit_code == PREVIEW_EXIT
    assert "preview only" in result.stderr and len(result.stderr.splitlines()) == 1
    assert 1 <= len(list(Path("cut").iterdir())) < STAGES

    assert idfc("decompress", "photo.idf", "--progressive", "d", "-o", "x.png").exit_code == 2


def test_help_documents_exit_code_3():
    for args in (["--help"], ["decompress", "--help"], ["view", "--help"]):
        result = idfc(*args)
        assert result.exit_code == 0
        assert f"  {PREVIEW_EXIT}  only a preview" in result.stdout, args
    help_text = idfc("decompress", "--help").stdout
    assert "--progressive" in help_text and "--bytes" in help_text


# ----------------------------------------------------------------------------- viewer


def test_viewer_paints_the_same_stages_as_it_receives_them(photo):
    _, data = photo
    reference = list(decode_progressive(data))
    painted = list(paint_sequence(data, piece_size=7))
    assert [p.stage.index for p in painted] == list(range(1, STAGES + 1))
    received = [p.bytes_received for p in painted]
    assert received == sorted(received) and received[-1] == len(data)
    for p, ref in zip(painted, reference, strict=True):
        assert p.bytes_received >= p.stage.bytes_used == ref.bytes_used
        assert np.array_equal(p.stage.pixels, ref.pixels)
    assert painted[-1].stage.exact


def test_viewer_reads_at_the_given_rate(photo):
    _, data = photo
    rate = len(data) / 2.0  # the whole file in 2 s: room for a slow first decode on a busy CI
    started = time.monotonic()
    painted = list(paint_sequence(data, rate=rate, piece_size=len(data) // 20))
    elapsed = time.monotonic() - started
    assert elapsed >= 1.8
    assert painted[-1].stage.exact
    # The first stage was painted long before the whole file had arrived.
    assert painted[0].bytes_received < len(data) / 2


def test_viewer_on_a_cut_file_ends_with_truncated(photo):
    _, data = photo
    got = []
    with pytest.raises(TruncatedFile):
        got.extend(paint_sequence(data[: len(data) // 2], piece_size=97))
    assert got and not got[-1].stage.exact


@pytest.fixture()
def xvfb_display():
    """A private X display from Xvfb (the GUI test is skipped without Xvfb or Tk)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the GUI smoke test needs it")
    try:
        import tkinter  # noqa: F401

        from PIL import ImageTk  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"Tk for Python is not available: {exc}")
    for number in range(90 + os.getpid() % 100, 400):
        if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        server = subprocess.Popen(
            ["Xvfb", f":{number}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.poll() is None:
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                break
            time.sleep(0.05)
        if server.poll() is None:
            try:
                yield f":{number}"
            finally:
                server.terminate()
                server.wait(10)
            return
    pytest.skip("no free X display number for Xvfb")


def test_view_window_under_xvfb(photo, tmp_path, xvfb_display):
    _, data = photo
    path = tmp_path / "photo.idf"
    path.write_bytes(data)
    env = {**os.environ, "DISPLAY": xvfb_display, "OMP_WAIT_POLICY": "PASSIVE"}
    assert env.get(store.MODELS_ENV)
    command = [sys.executable, "-c", "from idfcompress.app.cli import main; main(prog_name='idfc')"]
    rate_kb = len(data) / 1000 / 0.5  # about half a second of "download"
    done = subprocess.run(
        [*command, "view", str(path), "--rate", f"{rate_kb:.3f}", "--close-after", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{STAGES} stages shown, the last one exact" in done.stderr

    cut = tmp_path / "cut.idf"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    done = subprocess.run(
        [*command, "view", str(cut), "--rate", "0", "--close-after", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == PREVIEW_EXIT, done.stderr
    assert "preview only" in done.stderr


def test_decoding_leaves_grad_mode_alone(photo):
    """The generator must not leave gradients disabled in the caller between stages."""
    import torch

    _, data = photo
    for _ in decode_progressive(data):
        assert torch.is_grad_enabled()


def test_view_reports_bad_files_without_opening_a_window(tmp_path):
    bad = tmp_path / "bad.idf"
    bad.write_bytes(b"not an idf file")
    result = idfc("view", str(bad))
    assert result.exit_code == 1 and "not an .idf file" in result.stderr
    result = idfc("view", str(tmp_path / "missing.idf"))
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_previews_do_not_depend_on_the_thread_count(photo):
    import torch

    _, data = photo
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = arrays(decode_progressive(data))
        torch.set_num_threads(2)
        two = arrays(decode_progressive(data))
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
