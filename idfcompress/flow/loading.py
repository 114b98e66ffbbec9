"""Load a model's weights into a network (safetensors only) and save them.

A model is built from the bytes that were hashed: :func:`load_verified` reads the file
once, checks its SHA-256, and only then parses the config (checked against the schema in
``config``) and the tensors of those same bytes, so a file swapped or edited in between
can never be built in place of the one the hash named.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from ..errors import ModelError
from .config import ModelConfig
from .model import IntegerFlow
from .store import ModelInfo, config_from_bytes, describe_model, file_sha256


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for coding, with the identity recorded in files it writes."""

    name: str
    sha256: bytes
    flow: IntegerFlow

    @property
    def config(self) -> ModelConfig:
        return self.flow.config


def save_model(flow: IntegerFlow, path: Path, extra: dict[str, str] | None = None) -> str:
    """Write the weights and config to ``path``; returns the file's SHA-256 (hex)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in flow.state_dict().items()}
    metadata = {"config": flow.config.to_json(), **(extra or {})}
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return file_sha256(path).hex()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read ({exc})") from None


def flow_from_bytes(data: bytes, source: object) -> IntegerFlow:
    """Build a flow from the bytes of a .safetensors file (never unpickles): the config is
    checked before anything is built, the tensors must fit it exactly."""
    config = config_from_bytes(data, source)  # ModelError unless within the schema
    try:
        state = load_tensors(data)
        flow = IntegerFlow(config)
        if any(key.endswith(".quantized") for key in flow.state_dict()) and not any(
            key.endswith(".quantized") for key in state
        ):
            raise ValueError("float weights from before exact arithmetic; quantise them first")
        flow.load_state_dict(state, strict=True)
        flow.check_exact()
    except (SafetensorError, KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise ModelError(
            f"model file {source} is not a valid idfcompress model ({message})"
        ) from None
    flow.eval()
    for parameter in flow.parameters():
        parameter.requires_grad_(False)
    return flow


def load_flow(path: Path) -> IntegerFlow:
    """Build a flow from a .safetensors file (never unpickles)."""
    return flow_from_bytes(_read(Path(path)), path)


@lru_cache(maxsize=8)
def load_verified(path: Path, sha256: bytes, name: str) -> LoadedModel:
    """The model in ``path`` if its bytes hash to ``sha256`` (checked before the config is
    parsed or anything built), recorded as ``name``; cached per (path, hash, name)."""
    data = _read(path)
    actual = hashlib.sha256(data).digest()
    if actual != sha256:
        raise ModelError(
            f"model '{name}' has sha256 {actual.hex()[:16]}…, not {sha256.hex()[:16]}… "
            "(it changed while it was loaded)"
        )
    return LoadedModel(name, sha256, flow_from_bytes(data, path))


def load_model(model: str | ModelInfo) -> LoadedModel:
    """Load a model by the user's name or path (:func:`store.model_path`) or by
    :class:`ModelInfo` (cached per process)."""
    info = model if isinstance(model, ModelInfo) else describe_model(model)
    return load_verified(info.path, info.sha256, info.name)
