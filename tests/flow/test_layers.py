"""Every invertible layer, and the whole flow, inverts exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_flow
from torch import nn

from idfcompress.flow.layers import (
    AdditiveCoupling,
    Chain,
    GeneralCoupling,
    Permute,
    Squeeze,
    round_ste,
)
from idfcompress.flow.model import LogisticPrior, StagedInverse


def _net(cin: int, cout: int) -> nn.Module:
    torch.manual_seed(cin * 31 + cout)
    return nn.Sequential(
        nn.Conv2d(cin, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, cout, 3, padding=1)
    )


def _pixels(batch=2, channels=8, h=6, w=10) -> torch.Tensor:
    return torch.randint(-300, 300, (batch, channels, h, w)).float()


@pytest.mark.parametrize(
    "layer",
    [
        Squeeze(),
        Permute(torch.randperm(8)),
        AdditiveCoupling(8, _net),
        GeneralCoupling(8, _net),
        Chain([Permute(torch.randperm(8)), AdditiveCoupling(8, _net), GeneralCoupling(8, _net)]),
    ],
    ids=["squeeze", "permute", "two-way", "four-way", "chain"],
)
def test_layer_inverts_exactly(layer):
    x = _pixels()
    with torch.no_grad():
        y = layer(x)
        assert torch.equal(y, torch.round(y)), "outputs must stay integers"
        assert torch.equal(layer.inverse(y), x)


def test_couplings_change_their_input():
    x = _pixels()
    with torch.no_grad():
        for layer in (AdditiveCoupling(8, _net), GeneralCoupling(8, _net)):
            assert not torch.equal(layer(x), x)


def test_round_ste_passes_gradients():
    x = torch.tensor([0.2, 1.7, -2.5], requires_grad=True)
    y = round_ste(x)
    y.sum().backward()
    assert torch.equal(y.detach(), torch.round(x.detach()))
    assert torch.equal(x.grad, torch.ones(3))


@pytest.mark.parametrize("coupling", ["two-way", "four-way"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("top_split", [True, False])
@pytest.mark.parametrize("context_split", [False, True])
def test_flow_latents_invert_stage_by_stage(coupling, channels, top_split, context_split):
    """The decoder's staged inverse rebuilds the pixels and hands out, stage by stage, the
    same priors as the encoder's single forward pass (``coding_stages``)."""
    flow = make_tiny_flow(
        channels, coupling=coupling, top_split=top_split, context_split=context_split
    )
    x = torch.randint(0, 256, (2, channels, 16, 24)).float()
    with torch.no_grad():
        coded = flow.coding_stages(x)
        assert len(coded) == flow.config.stages
        assert sum(z[0].numel() for z, _ in coded) == x[0].numel()
        staged = StagedInverse(flow, 2, 16, 24)
        for z, prior_coded in coded:
            prior = staged.prior()
            assert type(prior) is type(prior_coded)
            if isinstance(prior, LogisticPrior):
                assert torch.equal(prior.mean, prior_coded.mean)
                assert torch.equal(prior.log_scale, prior_coded.log_scale)
            else:
                assert prior.shape == prior_coded.shape == tuple(z.shape)
            staged.push(z)
        assert torch.equal(staged.pixels(), x)
