"""The README's "Using it" block runs as written, in order, in a folder with ``photo.png``
and ``photos/`` (issue 20): ``idfc`` is this environment's, the models the shipped ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import smooth_image
from PIL import Image

from idfcompress import api
from idfcompress.flow import store

ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = "import sys\nfrom idfcompress.app.entry import main\nsys.exit(main())\n"


def shell_block(section: str, index: int = 0) -> list[str]:
    """The command lines of the ``index``-th ```sh block under the README heading."""
    text = (ROOT / "README.md").read_text()
    part = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", part, flags=re.S)[index]
    return [line for line in block.splitlines() if line.strip()]


def idfc_on_path(folder: Path) -> dict[str, str]:
    """An environment whose PATH finds this venv's ``idfc`` first."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "idfc").exists():  # not installed as a script: a stand-in
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        (bin_dir / "idfc").write_text(f"#!{sys.executable}\n{CONSOLE_SCRIPT}")
        (bin_dir / "idfc").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.update(OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    for name in (store.MODELS_ENV, "IDFC_DEBUG"):
        env.pop(name, None)
    return env


def run_lines(lines: list[str], cwd: Path, env: dict[str, str], allowed=(0,)) -> None:
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode in allowed, (line, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr, (line, done.stderr)


def test_using_it_runs_as_written(tmp_path):
    rng = np.random.default_rng(20)
    photo = smooth_image(rng, 48, 64, 3)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    tree = {
        "a.png": smooth_image(rng, 24, 32, 3),
        "sub/b.png": smooth_image(rng, 16, 24, 1)[..., 0],
    }
    for name, array in tree.items():
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp_path / "photos" / name)
    lines = shell_block("Using it")
    assert any(line.startswith("idfc compress -r") for line in lines)
    env = idfc_on_path(tmp_path)
    run_lines(lines, tmp_path, env)

    def pixels(path: Path) -> np.ndarray:
        with Image.open(tmp_path / path) as image:
            return np.asarray(image)

    # what the comments say came out
    for name in ("photo.png.idf", "stdin.idf"):
        assert np.array_equal(api.decompress((tmp_path / name).read_bytes()), photo), name
    for name in ("copy.png", "back/copy.png", "back/photo.png", "photo.tif"):
        assert np.array_equal(pixels(Path(name)), photo), name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.png.idf", "photo.png.idf"]
    for name, array in tree.items():
        assert (tmp_path / "archive" / f"{name}.idf").is_file()
        assert np.array_equal(pixels(Path("restored") / name), array), name

    # and the progressive display's commands, but the window
    lines = [line for line in shell_block("Progressive display") if "idfc view" not in line]
    run_lines(lines, tmp_path, env, allowed=(0, 3))
    assert (tmp_path / "preview.png").is_file()
    stages = sorted((tmp_path / "stages").iterdir(), key=lambda p: int(p.stem.split("-")[1]))
    assert np.array_equal(pixels(stages[-1]), photo)  # the last stage is the exact image
