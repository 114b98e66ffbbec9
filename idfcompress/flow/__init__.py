"""The Integer Discrete Flow: its config and model store (``config``, ``store``: no torch),
the networks and layers (``layers``, ``nets``, ``model``) and the glue between flow stages
and the ANS coder (``coding``). Only the modules that run a network import torch, which is
an optional dependency (the ``flow`` extra): :func:`runtime` checks for it."""

from __future__ import annotations

import importlib.util

from ..errors import MissingDependency

__all__ = ["INSTALL_HINT", "runtime"]

INSTALL_HINT = "pip install 'idfcompress[flow]' (or torch==2.13.0, the CPU build)"


def runtime(purpose: str, threads: int | None = None) -> None:
    """Check that PyTorch can be imported, for ``purpose`` (``MissingDependency`` naming it
    otherwise), and give its networks ``threads`` CPU threads (None: torch's own count)."""
    if importlib.util.find_spec("torch") is None:
        raise MissingDependency(f"{purpose} needs PyTorch, which is not installed: {INSTALL_HINT}")
    if threads is not None:
        from .coding import set_threads

        set_threads(threads)
