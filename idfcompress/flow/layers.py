"""Invertible integer layers: every layer maps integer tensors to integer tensors exactly.

Tensors hold integers in float32 (exact below 2**24). Each layer has ``forward`` and
``inverse`` side by side; ``inverse(forward(x)) == x`` bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, with a straight-through gradient when training."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return torch.round(x)
    return x + (torch.round(x) - x).detach()


class InvertibleLayer(nn.Module):
    """Protocol of an exactly invertible map on integer tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Chain(InvertibleLayer):
    """Composition of invertible layers; the inverse runs them backwards."""

    def __init__(self, layers: Sequence[InvertibleLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class Squeeze(InvertibleLayer):
    """Space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_unshuffle(x, 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.pixel_shuffle(y, 2)


class Permute(InvertibleLayer):
    """A fixed channel permutation."""

    def __init__(self, permutation: torch.Tensor):
        super().__init__()
        permutation = permutation.to(torch.int64)
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.permutation]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, self.inverse_permutation]


NetFactory = Callable[[int, int], nn.Module]


class AdditiveCoupling(InvertibleLayer):
    """Two-way coupling: y_b = x_b + round(t(x_a)), x_a passes unchanged."""

    def __init__(self, channels: int, make_net: NetFactory):
        super().__init__()
        self.split = channels // 2
        self.net = make_net(self.split, channels - self.split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xa, xb = x[:, : self.split], x[:, self.split :]
        return torch.cat([xa, xb + round_ste(self.net(xa))], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.split], y[:, self.split :]
        return torch.cat([ya, yb - torch.round(self.net(ya))], dim=1)


class GeneralCoupling(InvertibleLayer):
    """Four-way coupling (Tomczak 2021): each quarter is shifted by a rounded function of
    the other three, using the parts already updated; inverted in reverse order."""

    def __init__(self, channels: int, make_net: NetFactory):
        super().__init__()
        if channels % 4:
            raise ValueError("four-way coupling needs a channel count divisible by 4")
        self.part = channels // 4
        self.nets = nn.ModuleList(make_net(3 * self.part, self.part) for _ in range(4))

    def _others(self, parts: list[torch.Tensor], i: int) -> torch.Tensor:
        return torch.cat([p for j, p in enumerate(parts) if j != i], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(torch.split(x, self.part, dim=1))
        for i, net in enumerate(self.nets):
            parts[i] = parts[i] + round_ste(net(self._others(parts, i)))
        return torch.cat(parts, dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        parts = list(torch.split(y, self.part, dim=1))
        for i in reversed(range(4)):
            parts[i] = parts[i] - torch.round(self.nets[i](self._others(parts, i)))
        return torch.cat(parts, dim=1)
