"""Exact integer arithmetic of the coupling and prior networks (docs/FORMAT.md, arithmetic 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY

from idfcompress.entropy import tables as D
from idfcompress.flow import nets
from idfcompress.flow.config import ModelConfig
from idfcompress.flow.model import IntegerFlow
from idfcompress.flow.nets import ACCUMULATOR_LIMIT, ConvNet


def _trained_like(kernel: int = 1, width: int = 32, seed: int = 0, spread: float = 0.3):
    """A quantised network with weights of a realistic spread (random, calibrated)."""
    torch.manual_seed(seed)
    net = ConvNet(6, 12, width, 1, kernel)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, spread)
    x = torch.randint(-300, 300, (4, 6, 24, 24)).float()
    net.quantize(net.activation_samples(x))
    return net.eval(), x


@pytest.mark.parametrize("kernel", [1, 3])
def test_exact_path_equals_the_training_path(kernel):
    """The codec's folded integer path computes the numbers training sees, bit for bit."""
    net, x = _trained_like(kernel)
    net.check_exact()
    assert torch.equal(net._exact(x), net._fake_quantized(x))
    out = net(x)
    assert out.abs().max() > 0.1  # not a network that outputs zeros


def test_outputs_are_dyadic_with_bounded_accumulators():
    net, x = _trained_like(3)
    shift = net.shift2.double().view(1, -1, 1, 1)
    scaled = net(x).double() * torch.pow(2.0, shift + int(net.exponents[-1]))
    assert torch.equal(scaled, torch.round(scaled))
    assert scaled.abs().max() <= ACCUMULATOR_LIMIT


def test_extreme_inputs_are_clamped_not_overflowing():
    net, _ = _trained_like(3)
    big = torch.full((1, 6, 8, 8), 1e7)
    assert torch.equal(net(big), net(torch.full((1, 6, 8, 8), float(nets.INPUT_LIMIT))))


def test_batching_and_cropping_do_not_change_outputs():
    net, x = _trained_like(3, seed=1)
    whole = net(x)
    assert torch.equal(torch.cat([net(x[i : i + 1]) for i in range(len(x))]), whole)


@pytest.mark.parametrize("spread", [1e-4, 0.05, 3.0, 100.0])
def test_shifts_keep_the_bound_for_any_weight_scale(spread):
    net, _ = _trained_like(3, spread=spread)
    net.train()
    net(torch.zeros(1, 6, 8, 8))  # training forward recomputes the exponents
    net.snap()
    net.check_exact()


def test_check_exact_rejects_bad_weights():
    net, _ = _trained_like(1)
    with torch.no_grad():
        net.convs[1].weight[0, 0, 0, 0] += 2.0 ** -(int(net.shift1[0]) + 1)  # half a step
    with pytest.raises(ValueError, match="integer grid"):
        net.check_exact()
    net, _ = _trained_like(1)
    with torch.no_grad():
        net.shift1[0] += 8  # finer grid: still integers, but sums beyond 2**24
    with pytest.raises(ValueError, match="2\\*\\*24"):
        net.check_exact()
    net.quantized.fill_(False)
    with pytest.raises(ValueError, match="not quantised"):
        net.check_exact()


def test_quantisation_barely_changes_a_float_network():
    torch.manual_seed(3)
    net = ConvNet(6, 12, 32, 1, 3)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    x = torch.randint(-300, 300, (4, 6, 24, 24)).float()
    with torch.no_grad():
        before = net(x)
    net.quantize(net.activation_samples(x))
    after = net.eval()(x)
    assert not torch.equal(before, after)
    assert float((after - before).abs().max()) < 0.05 * float(before.abs().max())


def test_flow_quantize_makes_every_network_exact():
    torch.manual_seed(0)
    flow = IntegerFlow(ModelConfig(in_channels=3, **TINY))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert not flow.quantized
    flow.quantize()
    assert flow.quantized
    flow.check_exact()


def test_deterministic_exp_matches_libm():
    x = np.linspace(-700.0, 700.0, 100_001)
    assert np.max(np.abs(D.portable_exp(x) / np.exp(x) - 1.0)) < 1e-15
    assert D.portable_exp(np.array([-1000.0]))[0] >= 0.0 and np.isfinite(
        D.portable_exp(np.array([1000.0]))[0]
    )


@pytest.mark.parametrize("kernel", [1, 3])
def test_the_gpu_formulation_gives_the_same_numbers(kernel):
    """unfold + matmul (used on GPUs) against the CPU convolution, on integer operands within
    the exactness bound: every value must agree bit for bit."""
    g = torch.Generator().manual_seed(kernel)
    x = torch.randint(0, 256, (2, 16, 12, 12), generator=g).float()
    w = torch.randint(-127, 128, (8, 16, kernel, kernel), generator=g).float() * 2.0**-9
    b = torch.randint(-5000, 5000, (8,), generator=g).float() * 2.0**-9
    assert torch.equal(nets.unfold_conv2d(x, w, b), nets.exact_conv2d(x, w, b))
