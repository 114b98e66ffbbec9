"""Start-up: Ctrl-C while ``idfc`` is still importing ends with one line and 130 (issue 19,
finding 7), and the console script goes through ``idfcompress.app.entry``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "idfcompress.app.entry:main"
# What pip writes for [project.scripts] idfc = "idfcompress.app.entry:main".
CONSOLE_SCRIPT = """\
import sys
from idfcompress.app.entry import main
if __name__ == '__main__':
    sys.exit(main())
"""


def test_console_script_is_the_entry_module():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["idfc"] == ENTRY
    installed = Path(sys.executable).with_name("idfc")
    if installed.exists():  # an install made before the entry module would be stale
        assert "idfcompress.app.entry" in installed.read_text()


def _imported(line: str) -> str | None:
    """The module an ``-X importtime`` line reports as imported, if it is one."""
    if not line.startswith("import time:"):
        return None
    return line.rsplit("|", 1)[-1].strip()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "moment",
    [
        "idfcompress.app.entry",  # the handler is in place; nothing else imported yet
        "click.core",  # importing the command line's libraries
        "idfcompress.app.cli",  # the command line is imported, click parses
        "numpy",  # the command runs: its own imports
        "idfcompress.api",
    ],
)
def test_ctrl_c_during_start_up(tmp_path, moment):
    """SIGINT right after ``moment`` is imported (``-X importtime`` reports each import as
    it ends): exit 130, ``idfc: interrupted`` and no traceback, at every moment."""
    script = tmp_path / "idfc"
    script.write_text(CONSOLE_SCRIPT)
    image = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    env.pop("IDFC_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", str(script), "compress", "photo.png"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen = []
        for line in process.stderr:
            seen.append(_imported(line))
            if seen[-1] == moment:
                process.send_signal(signal.SIGINT)
                break
        assert moment in seen, f"{moment} was never imported"
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    said = [line for line in rest.splitlines() if _imported(line) is None]
    assert process.returncode == 130, (moment, said)
    assert said == ["idfc: interrupted"], said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idfc", "photo.png"]
