"""The model store: find shipped models by name and say what they are (name, SHA-256,
config) from the safetensors header alone, without torch. Loading the weights into a
network is ``loading``'s job."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..errors import ModelError
from .config import ModelConfig

# The model used for each channel count when none is named.
DEFAULT_MODELS = {3: "idf-rgb-c1", 1: "idf-gray-c2"}
MODELS_ENV = "IDFC_MODELS"


@dataclass(frozen=True)
class ModelInfo:
    """A model's identity as files record it, and the structure its config fixes."""

    name: str
    sha256: bytes
    path: Path
    config: ModelConfig


def model_dirs() -> list[Path]:
    """Folders searched for NAME.safetensors, in order."""
    dirs = [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent
    dirs += [here / "models", here.parent / "models"]
    return dirs


def find_model(name: str) -> Path:
    """Path of the weights of model ``name`` (a name, or a path to a .safetensors file)."""
    if name.endswith(".safetensors") or os.sep in name:
        path = Path(name)
        if path.is_file():
            return path
        raise ModelError(f"model file {name} not found")
    for folder in model_dirs():
        path = folder / f"{name}.safetensors"
        if path.is_file():
            return path
    raise ModelError(f"model '{name}' not found (searched {', '.join(map(str, model_dirs()))})")


def available_models() -> list[str]:
    """Names of every model found in the search folders."""
    names = {p.stem for d in model_dirs() if d.is_dir() for p in d.glob("*.safetensors")}
    return sorted(names)


def default_model_name(channels: int) -> str:
    """The model used for images of ``channels`` colour channels when none is named."""
    return DEFAULT_MODELS[channels]


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file's bytes (what .idf files record of their model)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def read_config(path: Path) -> ModelConfig:
    """The config stored in a model file's safetensors header (no tensor is read)."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        return ModelConfig.from_json(metadata["config"])
    except (SafetensorError, KeyError, TypeError, ValueError, OSError) as exc:
        raise ModelError(f"model file {path} is not a valid idfcompress model ({exc})") from None


@lru_cache(maxsize=8)
def _described(path: str, mtime: float) -> ModelInfo:
    file = Path(path)
    return ModelInfo(file.stem, file_sha256(file), file, read_config(file))


def describe_model(name: str) -> ModelInfo:
    """Name, SHA-256, path and config of model ``name`` (a name or a path; cached)."""
    path = find_model(name)
    return _described(str(path.resolve()), path.stat().st_mtime)
