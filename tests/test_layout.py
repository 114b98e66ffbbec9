"""The package's layout rules (docs/DESIGN.md, "Layout"): torch only where a network runs,
no module reaching into another's private names, modules of a readable size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "idfcompress"
# The modules that run (or train) a network; every other one must work without torch.
TORCH_MODULES = {
    "flow/layers.py",
    "flow/nets.py",
    "flow/model.py",
    "flow/loading.py",
    "flow/coding.py",
    "flow/preview.py",
}


def _sources() -> list[Path]:
    return sorted(
        [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").rglob("*.py"), *ROOT.glob("tests/**/*.py")]
    )


def _imports_torch(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any("torch" in a.name.split(".") for a in node.names):
            return True  # torch, or safetensors.torch
        if isinstance(node, ast.ImportFrom) and "torch" in (node.module or "").split("."):
            return True
    return False


def test_torch_is_imported_only_where_a_network_runs():
    found = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _imports_torch(ast.parse(path.read_text()))
    }
    assert found == TORCH_MODULES


def _module_names(tree: ast.AST) -> set[str]:
    """Local names bound to idfcompress modules (``from idfcompress.x import y``, ``import``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("idfcompress")
        ):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name.startswith("idfcompress")}
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path):
    tree = ast.parse(path.read_text())
    modules = _module_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("idfcompress")
        ):
            private = [a.name for a in node.names if _private(a.name)]
            assert not private, f"{path.name}:{node.lineno} imports {private}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and _private(node.attr)
        ):
            raise AssertionError(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_modules_stay_readable(path):
    assert len(path.read_text().splitlines()) <= 560


def test_default_files_need_no_torch(tmp_path):
    """The default mode compresses and decompresses with torch never imported, and the CLI
    starts without it."""
    script = (
        "import sys, numpy as np, idfcompress\n"
        "from idfcompress.app import cli\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        "image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)\n"
        "data = idfcompress.compress(image)\n"
        "assert np.array_equal(idfcompress.decompress(data), image)\n"
        "stages = list(idfcompress.decode_progressive(data))\n"
        "assert stages[-1].exact and len(stages) == 2 and not stages[0].exact\n"
        "assert 'torch' not in sys.modules, 'coding'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)


# torch made unimportable, as on an install without the flow extra
_WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"


def test_without_torch_only_the_flow_is_refused_in_one_line(tmp_path):
    """Without PyTorch installed, default files compress and decompress (API and CLI, with
    -T), and a flow-coded file fails with a MissingDependency that says how to install it."""
    flow_file = ROOT / "tests" / "codec" / "data" / "format7" / "rgba-40x33-flow.idf"
    script = _WITHOUT_TORCH + (
        "import numpy as np, pytest, idfcompress\n"
        "from idfcompress.errors import MissingDependency\n"
        "image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)\n"
        "idfcompress.set_threads(2)\n"
        "assert np.array_equal(idfcompress.decompress(idfcompress.compress(image)), image)\n"
        f"flow_file = open({str(flow_file)!r}, 'rb').read()\n"
        "with pytest.raises(MissingDependency, match=r'PyTorch.*idfcompress\\[flow\\]'):\n"
        "    idfcompress.decompress(flow_file)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    main = _WITHOUT_TORCH + "from idfcompress.app.cli import main; main(prog_name='idfc')"
    np_image = "import numpy as np; from PIL import Image; "
    subprocess.run(
        [sys.executable, "-c", np_image + "Image.fromarray(np.full((9, 9), 7, np.uint8))"
         ".save('p.png')"], check=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip

    def idfc(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", main, *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert idfc("compress", "-q", "-T", "2", "p.png").returncode == 0
    assert idfc("decompress", "-q", "-T", "2", "p.png.idf", "-o", "back.png").returncode == 0
    done = idfc("decompress", str(flow_file), "-o", "flow.png")
    assert done.returncode == 1 and not (tmp_path / "flow.png").exists()
    assert done.stderr.count("\n") == 1 and "needs PyTorch" in done.stderr, done.stderr
