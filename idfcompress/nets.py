"""Small convolutional networks used inside couplings and priors.

Plain convolutions and ReLUs only, so that they can later run in exact integer arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SCALE = 1.0 / 64.0  # integer latents are fed to the networks at this scale


class ConvNet(nn.Module):
    """conv3x3 -> ReLU -> (conv kxk -> ReLU) * hidden -> conv3x3, last layer zero-initialised."""

    def __init__(
        self, in_channels: int, out_channels: int, width: int, hidden_layers: int, kernel: int
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(hidden_layers):
            layers += [nn.Conv2d(width, width, kernel, padding=kernel // 2), nn.ReLU()]
        last = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * INPUT_SCALE)
