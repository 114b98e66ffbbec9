"""Small convolutional networks used inside couplings and priors, in exact integer arithmetic.

A network is trained in float32 and then quantised (:meth:`ConvNet.quantize`). A quantised
network computes only with dyadic numbers whose integer parts are bounded, so float32 carries
every sum exactly, in any order and with any instruction set or thread count
(docs/FORMAT.md, "arithmetic 2"):

* inputs are the integer latents, clamped to +-INPUT_LIMIT and scaled by 2**-INPUT_BITS;
* each convolution has integer weights and biases with a per-output-channel power-of-two
  scale 2**-shift, chosen so that sum(|w|) * max|input| + |bias| <= 2**24 in units of the
  accumulator;
* each ReLU becomes ``clamp(round(z * 2**e), 0, ACTIVATION_MAX) * 2**-e`` with a per-layer
  exponent ``e`` fixed at quantisation.

The same code runs in training (straight-through rounding) and in the codec, so a network
computes the same numbers in both.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import round_ste

INPUT_BITS = 6  # integer latents enter the networks as x * 2**-6
INPUT_LIMIT = 1023  # ... after clamping to [-INPUT_LIMIT, INPUT_LIMIT]
INPUT_SCALE = 2.0**-INPUT_BITS
ACTIVATION_BITS = 8
ACTIVATION_MAX = (1 << ACTIVATION_BITS) - 1
ACCUMULATOR_LIMIT = 1 << 24  # float32 represents every integer up to here
SHIFT_RANGE = (-16, 48)  # per-channel weight exponents allowed in a model file


def weight_shifts(weight: torch.Tensor, bias: torch.Tensor, input_max: float, input_bits: int):
    """Finest per-output-channel exponents k with sum|round(w 2^k)| * input_max + |b| within
    half the accumulator limit (the other half absorbs rounding), as int32."""
    with torch.no_grad():
        load = weight.abs().flatten(1).sum(1).double() * input_max
        load = load + bias.abs().double() * 2.0**input_bits
        k = torch.floor(math.log2(ACCUMULATOR_LIMIT // 2) - torch.log2(load.clamp_min(1e-30)))
        return k.clamp(*SHIFT_RANGE).to(torch.int32)


def _quantize(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """round(x * 2**exponent) * 2**-exponent, exponents broadcast over the first axis."""
    scale = torch.pow(2.0, exponent.to(x.dtype)).view(-1, *([1] * (x.dim() - 1)))
    return round_ste(x * scale) / scale


def exact_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A convolution that only multiplies and adds (no Winograd or FFT), padding k // 2.

    On a CPU, PyTorch's oneDNN and native convolutions are direct (NNPACK is switched off by
    the codec); on a GPU, cuDNN may pick Winograd or FFT, so unfold + matmul is used there.
    """
    if not x.is_cuda:
        return nn.functional.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
    return unfold_conv2d(x, weight, bias)


def unfold_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The same convolution as a matrix product over unfolded windows."""
    k = weight.shape[-1]
    b, _, h, w = x.shape
    columns = nn.functional.unfold(x, k, padding=k // 2)  # (B, C*k*k, H*W)
    out = torch.matmul(weight.flatten(1), columns) + bias.view(1, -1, 1)
    return out.view(b, -1, h, w)


class ConvNet(nn.Module):
    """conv3x3 -> ReLU -> (conv kxk -> ReLU) * hidden -> conv3x3, last layer zero-initialised."""

    def __init__(
        self, in_channels: int, out_channels: int, width: int, hidden_layers: int, kernel: int
    ):
        super().__init__()
        convs = [nn.Conv2d(in_channels, width, 3, padding=1)]
        convs += [
            nn.Conv2d(width, width, kernel, padding=kernel // 2) for _ in range(hidden_layers)
        ]
        convs.append(nn.Conv2d(width, out_channels, 3, padding=1))
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)
        self.convs = nn.ModuleList(convs)
        for i, conv in enumerate(convs):
            self.register_buffer(f"shift{i}", torch.zeros(conv.out_channels, dtype=torch.int32))
        self.register_buffer("exponents", torch.zeros(len(convs) - 1, dtype=torch.int32))
        self.register_buffer("quantized", torch.tensor(False))

    def shifts(self) -> list[torch.Tensor]:
        return [getattr(self, f"shift{i}") for i in range(len(self.convs))]

    def input_bounds(self) -> list[tuple[float, int]]:
        """(max |input| in integer units, input exponent) of each convolution."""
        bounds = [(float(INPUT_LIMIT), INPUT_BITS)]
        bounds += [(float(ACTIVATION_MAX), int(e)) for e in self.exponents]
        return bounds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.quantized):
            h = x * INPUT_SCALE
            for i, conv in enumerate(self.convs):
                h = conv(h)
                if i < len(self.convs) - 1:
                    h = torch.relu(h)
            return h
        if self.training:
            self.update_shifts()
            return self._fake_quantized(x)
        return self._exact(x)

    def _fake_quantized(self, x: torch.Tensor) -> torch.Tensor:
        """Exact arithmetic written for training: real-valued activations, straight-through
        rounding."""
        h = x.clamp(-INPUT_LIMIT, INPUT_LIMIT) * INPUT_SCALE
        bounds = self.input_bounds()
        for i, (conv, shift) in enumerate(zip(self.convs, self.shifts(), strict=True)):
            weight = _quantize(conv.weight, shift)
            bias = _quantize(conv.bias, shift + bounds[i][1])
            h = exact_conv2d(h, weight, bias)
            if i < len(self.convs) - 1:
                e = float(self.exponents[i])
                h = round_ste(h.clamp(0.0, ACTIVATION_MAX * 2.0**-e) * 2.0**e) * 2.0**-e
        return h

    @torch.no_grad()
    def _exact(self, x: torch.Tensor) -> torch.Tensor:
        """The same numbers as :meth:`_fake_quantized`, with activations kept as integers
        and the power-of-two scales folded into the weights.

        Channels-last tensors make oneDNN's convolutions about twice as fast here; with exact
        arithmetic the memory layout cannot change a result.
        """
        layout = torch.channels_last
        h = x.clamp(-INPUT_LIMIT, INPUT_LIMIT).contiguous(memory_format=layout)
        bounds = self.input_bounds()
        last = len(self.convs) - 1
        for i, (conv, shift) in enumerate(zip(self.convs, self.shifts(), strict=True)):
            e_out = 0.0 if i == last else float(self.exponents[i])
            weight = _quantize(conv.weight, shift) * 2.0 ** (e_out - bounds[i][1])
            bias = _quantize(conv.bias, shift + bounds[i][1]) * 2.0**e_out
            h = exact_conv2d(h, weight.contiguous(memory_format=layout), bias)
            if i < last:
                h = h.round_().clamp_(0.0, ACTIVATION_MAX)
        return h.contiguous()

    def update_shifts(self) -> None:
        for conv, shift, (amax, bits) in zip(
            self.convs, self.shifts(), self.input_bounds(), strict=True
        ):
            shift.copy_(weight_shifts(conv.weight, conv.bias, amax, bits))

    @torch.no_grad()
    def quantize(self, activations: list[torch.Tensor] | None = None) -> None:
        """Switch to exact arithmetic.

        ``activations`` (the float ReLU outputs of each hidden layer on typical data, from
        :meth:`activation_samples`) set each layer's exponent so that a high quantile fits
        the activation range; without them every exponent is 4 (range 0 .. 15.9).
        """
        for i in range(len(self.exponents)):
            top = 16.0
            if activations is not None:
                values = activations[i].flatten().float()
                values = values[values > 0]
                if values.numel():
                    sample = values[torch.randperm(values.numel())[:1_000_000]]
                    top = float(torch.quantile(sample, 0.9999))
            e = math.floor(math.log2(ACTIVATION_MAX / max(top, 1e-6)))
            self.exponents[i] = max(0, min(e, 24))
        self.quantized.fill_(True)
        self.update_shifts()
        self.snap()

    @torch.no_grad()
    def snap(self) -> None:
        """Replace the float weights and biases by their quantised values (exact on disk)."""
        bounds = self.input_bounds()
        for i, (conv, shift) in enumerate(zip(self.convs, self.shifts(), strict=True)):
            conv.weight.copy_(_quantize(conv.weight, shift))
            conv.bias.copy_(_quantize(conv.bias, shift + bounds[i][1]))

    @torch.no_grad()
    def activation_samples(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Float ReLU outputs of the hidden layers for input ``x`` (for :meth:`quantize`)."""
        h = x * INPUT_SCALE
        out = []
        for conv in self.convs[:-1]:
            h = torch.relu(conv(h))
            out.append(h)
        return out

    def check_exact(self) -> None:
        """Raise ValueError unless the stored weights satisfy the exactness bound."""
        if not bool(self.quantized):
            raise ValueError("network is not quantised")
        if any(int(e) < 0 or int(e) > 24 for e in self.exponents):
            raise ValueError("activation exponent out of range")
        for i, (conv, shift, (amax, bits)) in enumerate(
            zip(self.convs, self.shifts(), self.input_bounds(), strict=True)
        ):
            if int(shift.min()) < SHIFT_RANGE[0] or int(shift.max()) > SHIFT_RANGE[1]:
                raise ValueError(f"convolution {i}: weight exponent out of range")
            k = shift.double().view(-1, 1)
            w = conv.weight.detach().double().flatten(1) * torch.pow(2.0, k)
            b = conv.bias.detach().double() * torch.pow(2.0, k.view(-1) + bits)
            if not (torch.equal(w, torch.round(w)) and torch.equal(b, torch.round(b))):
                raise ValueError(f"convolution {i}: weights are not on their integer grid")
            load = w.abs().sum(1) * amax + b.abs()
            if float(load.max()) > ACCUMULATOR_LIMIT:
                raise ValueError(f"convolution {i}: sums could exceed 2**24")
