"""Shipped models: find them by name, load them safely (safetensors), verify their hash."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .errors import ModelError
from .flow import IntegerFlow

# The model used for each channel count when none is named.
DEFAULT_MODELS = {3: "idf-rgb-c1", 1: "idf-gray-c2"}
MODELS_ENV = "IDFC_MODELS"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for coding, with the identity recorded in files it writes."""

    name: str
    sha256: bytes
    flow: IntegerFlow


def model_dirs() -> list[Path]:
    """Folders searched for NAME.safetensors, in order."""
    dirs = [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
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


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def save_model(flow: IntegerFlow, path: Path, extra: dict[str, str] | None = None) -> str:
    """Write the weights and config to ``path``; returns the file's SHA-256 (hex)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in flow.state_dict().items()}
    metadata = {"config": flow.config.to_json(), **(extra or {})}
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return file_sha256(path).hex()


def load_flow(path: Path) -> IntegerFlow:
    """Build a flow from a .safetensors file (never unpickles)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            config = ModelConfig.from_json(metadata["config"])
            state = {key: handle.get_tensor(key) for key in handle.keys()}
        flow = IntegerFlow(config)
        if any(key.endswith(".quantized") for key in flow.state_dict()) and not any(
            key.endswith(".quantized") for key in state
        ):
            raise ValueError("float weights from before exact arithmetic; quantise them first")
        flow.load_state_dict(state, strict=True)
        flow.check_exact()
    except (
        SafetensorError,
        KeyError,
        ValueError,
        RuntimeError,
        json.JSONDecodeError,
        OSError,
    ) as exc:
        raise ModelError(f"model file {path} is not a valid idfcompress model ({exc})") from None
    flow.eval()
    for parameter in flow.parameters():
        parameter.requires_grad_(False)
    return flow


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> LoadedModel:
    file = Path(path)
    return LoadedModel(file.stem, file_sha256(file), load_flow(file))


def load_model(name: str) -> LoadedModel:
    """Load a model by name or path (cached per process)."""
    path = find_model(name)
    return _load_cached(str(path.resolve()), path.stat().st_mtime)


def default_model_name(channels: int) -> str:
    return DEFAULT_MODELS[channels]
