"""The model store: find shipped models by name and say what they are (name, SHA-256,
config) from the safetensors header alone, without torch. Loading the weights into a
network is ``loading``'s job.

Names and paths. A model name read from an ``.idf`` file is only ever a name: it is looked
up as ``NAME.safetensors`` in :func:`model_dirs` (:func:`find_model`), never opened as a
path, whatever it ends with. A script's own model (``loading.load_model``) may also be a
path to a ``.safetensors`` file (:func:`model_path`).

The shipped flow models (``idf-rgb-c1``, ``idf-gray-c2``) stay in ``models/`` to decode
files made before the flow's encoder was retired.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ModelError
from .config import ModelConfig

MODELS_ENV = "IDFC_MODELS"
MODEL_SUFFIX = ".safetensors"
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")  # what an .idf header can record
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on its JSON header


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
    """Path of model ``name``: ``NAME.safetensors`` in the first of :func:`model_dirs` that
    has it. ``name`` is a name, never a path (this is what decoding a file uses)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ModelError(f"{name!r} is not a model name (1..64 of [A-Za-z0-9._-])")
    for folder in model_dirs():
        path = folder / f"{name}{MODEL_SUFFIX}"
        if path.is_file():
            return path
    raise ModelError(f"model '{name}' not found (searched {', '.join(map(str, model_dirs()))})")


def is_path(spec: str) -> bool:
    """Whether a user's model argument is a file path rather than a name."""
    separators = [os.sep] + ([os.altsep] if os.altsep else []) + ["/"]
    return spec.endswith(MODEL_SUFFIX) or any(s in spec for s in separators)


def model_path(spec: str) -> Path:
    """The weights a user's model argument means: a path to a ``.safetensors`` file (any
    argument that ends so or contains a path separator; its stem must be a valid model
    name, which files record), else a name looked up by :func:`find_model`. Only for the
    user's own arguments: names read from files go to :func:`find_model`."""
    if not is_path(spec):
        return find_model(spec)
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"model file {spec} not found")
    if not NAME_PATTERN.fullmatch(path.stem) or path.suffix != MODEL_SUFFIX:
        raise ModelError(
            f"model file {spec}: a model file must be NAME{MODEL_SUFFIX} with NAME of 1..64 "
            "characters [A-Za-z0-9._-] (files record the name)"
        )
    return path


def available_models() -> list[str]:
    """Names of every flow model found in the search folders (safetensors files with a
    model config: the predictive coder's priors, stored beside them, have none)."""
    names = set()
    for d in model_dirs():
        for p in sorted(d.glob(f"*{MODEL_SUFFIX}")) if d.is_dir() else []:
            if NAME_PATTERN.fullmatch(p.stem) and _is_model(p):
                names.add(p.stem)
    return sorted(names)


def _is_model(path: Path) -> bool:
    try:
        read_config(path)
    except ModelError:
        return False
    return True


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a file's bytes (what .idf files record of their model)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _invalid(source: object, reason: object) -> ModelError:
    return ModelError(f"model file {source} is not a valid idfcompress model ({reason})")


def header_length(prefix: bytes, source: object, size: int) -> int:
    """Length of the JSON header of a safetensors file of ``size`` bytes, from its first 8."""
    if len(prefix) < 8:
        raise _invalid(source, "shorter than a safetensors header")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise _invalid(source, f"its safetensors header claims {length:,} bytes")
    return length


def config_from_header(header: bytes, source: object) -> ModelConfig:
    """The checked config in a safetensors JSON header (``ModelError`` for anything else)."""
    try:
        parsed = json.loads(header)
    except (ValueError, RecursionError):
        raise _invalid(source, "its safetensors header is not JSON") from None
    metadata = parsed.get("__metadata__") if isinstance(parsed, dict) else None
    if not isinstance(metadata, dict) or "config" not in metadata:
        raise _invalid(source, "no model config in its metadata")
    try:
        return ModelConfig.from_json(metadata["config"])
    except ModelError as exc:
        raise _invalid(source, exc) from None


def config_from_bytes(data: bytes | memoryview, source: object) -> ModelConfig:
    """The checked config of a model file held in memory (no tensor is read)."""
    view = memoryview(data)
    length = header_length(bytes(view[:8]), source, view.nbytes)
    return config_from_header(bytes(view[8 : 8 + length]), source)


def read_config(path: Path) -> ModelConfig:
    """The checked config stored in a model file's safetensors header (no tensor is read);
    ``ModelError`` if the file is not a model or its config fails the schema."""
    try:
        with open(path, "rb") as handle:
            length = header_length(handle.read(8), path, os.fstat(handle.fileno()).st_size)
            header = handle.read(length)
    except OSError as exc:
        raise _invalid(path, exc) from None
    return config_from_header(header, path)


@lru_cache(maxsize=8)
def _described(path: str, name: str, mtime_ns: int, size: int) -> ModelInfo:
    file = Path(path)
    try:
        sha256 = file_sha256(file)
    except OSError as exc:
        raise _invalid(file, exc) from None
    return ModelInfo(name, sha256, file, read_config(file))


def describe_model(spec: str) -> ModelInfo:
    """Name, SHA-256, path and checked config of the model a user names (a name, or a path
    as :func:`model_path` says; cached). ``ModelError`` if it is missing or invalid."""
    path = model_path(spec)
    try:
        stat = path.stat()
    except OSError as exc:
        raise _invalid(path, exc) from None
    return _described(str(path.resolve()), path.stem, stat.st_mtime_ns, stat.st_size)
