"""Load a model's weights into a network (safetensors only) and save them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ModelError
from .config import ModelConfig
from .model import IntegerFlow
from .store import ModelInfo, describe_model, file_sha256


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
def _load_cached(info: ModelInfo) -> LoadedModel:
    return LoadedModel(info.name, info.sha256, load_flow(info.path))


def load_model(model: str | ModelInfo) -> LoadedModel:
    """Load a model by name, path or :class:`ModelInfo` (cached per process)."""
    return _load_cached(model if isinstance(model, ModelInfo) else describe_model(model))
