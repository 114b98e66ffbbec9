"""Shared fixtures: tiny models made on the fly and the recorded flow-coded files (CI never
trains a real model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from idfcompress.flow import store
from idfcompress.flow.config import ModelConfig
from idfcompress.flow.model import IntegerFlow

TINY = {"width": 8, "prior_width": 8, "couplings_per_level": 2, "hidden_layers": 1}


def make_tiny_flow(in_channels: int, seed: int = 0, **overrides) -> IntegerFlow:
    """A small flow whose zero-initialised layers are perturbed so every coupling acts."""
    torch.manual_seed(seed)
    flow = IntegerFlow(ModelConfig(in_channels=in_channels, **{**TINY, **overrides}))
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    flow.quantize()
    return flow.eval()


# Flow-coded files recorded by the flow's last encoder, with the tiny models that made them
# (codec/data/README.md): the flow's decoder is tested on them.
FLOW_DATA = Path(__file__).parent / "codec" / "data" / "flow"


def recorded(name: str) -> bytes:
    """The bytes of the recorded flow-coded file ``name`` (codec/data/flow/NAME.idf)."""
    return (FLOW_DATA / f"{name}.idf").read_bytes()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The folder of the recorded files' tiny models (tiny-rgb, tiny-gray); read only."""
    return FLOW_DATA / "models"


@pytest.fixture()
def tiny_models(tiny_model_dir, monkeypatch):
    """Put the tiny models on the model search path for this test."""
    monkeypatch.setenv(store.MODELS_ENV, str(tiny_model_dir))
    return tiny_model_dir


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


def smooth_image(rng: np.random.Generator, height: int, width: int, channels: int) -> np.ndarray:
    """A photo-like (smooth plus mild noise) uint8 image."""
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / 9.0 + rng.uniform(0, 6)) * np.cos(y / 13.0 + rng.uniform(0, 6))
    planes = [base + rng.normal(0, 4, base.shape) + 20 * c for c in range(channels)]
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)


def default_sigint() -> None:
    """``preexec_fn`` for a child that must take Ctrl-C: a shell that starts the suite in
    the background (``pytest &``) ignores SIGINT, and its children inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
