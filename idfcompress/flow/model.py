"""The Integer Discrete Flow: levels of squeeze + couplings, factor-out, and the priors.

``IntegerFlow.coding_stages`` maps pixels to integer latents (coarsest stage first), each
with its prior: the transform's forward (what the retired encoder coded; the tests check
the inverse against it). ``StagedInverse`` walks the other way one stage at a
time and hands out the prior of each stage before its latents are known, which is what an
entropy decoder needs. Both compute every prior from the same kept channels, which exact
arithmetic makes identical whether they were computed forwards or inverted back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..entropy.tables import LOGSCALE_COUNT, LOGSCALE_MIN, LOGSCALE_STEP
from .config import ModelConfig
from .layers import AdditiveCoupling, Chain, GeneralCoupling, Permute, Squeeze
from .nets import ConvNet

LOGSCALE_MAX = LOGSCALE_MIN + (LOGSCALE_COUNT - 1) * LOGSCALE_STEP
PIXEL_OFFSET = 128  # pixels are centred before entering the flow


@dataclass
class LogisticPrior:
    """One discretized logistic per latent: mean and log-scale tensors shaped like it."""

    mean: torch.Tensor
    log_scale: torch.Tensor


@dataclass
class MixturePrior:
    """A position-independent mixture per channel; the latents have ``shape``."""

    shape: tuple[int, ...]


Prior = LogisticPrior | MixturePrior


def _first_half(prior: LogisticPrior) -> LogisticPrior:
    """The prior of a context-split stage's first half (its first C // 2 channels)."""
    c = prior.mean.shape[1] // 2
    return LogisticPrior(prior.mean[:, :c], prior.log_scale[:, :c])


class IntegerFlow(nn.Module):
    """IDF over 8-bit images with ``config.in_channels`` channels."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        coupling = AdditiveCoupling if config.coupling == "two-way" else GeneralCoupling

        def make_net(cin: int, cout: int) -> nn.Module:
            return ConvNet(cin, cout, config.width, config.hidden_layers, config.middle_kernel)

        def make_prior(cin: int, cout: int) -> nn.Module:
            return ConvNet(
                cin, 2 * cout, config.prior_width, config.hidden_layers, config.middle_kernel
            )

        def make_context(kept: int, coded: int) -> nn.Module:
            first = coded // 2
            return make_prior(kept + first, coded - first)

        channels = config.in_channels
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.contexts = nn.ModuleList()
        for level in range(config.levels):
            channels *= 4
            layers: list[nn.Module] = [Squeeze()]
            for _ in range(config.couplings_per_level):
                layers.append(Permute(torch.randperm(channels, generator=generator)))
                layers.append(coupling(channels, make_net))
            self.levels.append(Chain(layers))
            if level < config.levels - 1:
                keep = channels // 2
                self.priors.append(make_prior(keep, channels - keep))
                if config.context_split:
                    self.contexts.append(make_context(keep, channels - keep))
                channels = keep
        self.top_channels = channels
        if config.top_split:
            self.mixture_channels = channels // 2
            self.top_prior = make_prior(self.mixture_channels, channels - self.mixture_channels)
            self.top_context = (
                make_context(self.mixture_channels, channels - self.mixture_channels)
                if config.context_split
                else None
            )
        else:
            self.mixture_channels = channels
            self.top_prior = None
            self.top_context = None
        k = config.mixture_components
        means = torch.linspace(-64.0, 64.0, k).repeat(self.mixture_channels, 1)
        self.mixture_logits = nn.Parameter(torch.zeros(self.mixture_channels, k))
        self.mixture_means = nn.Parameter(means)
        self.mixture_log_scales = nn.Parameter(torch.full((self.mixture_channels, k), 2.0))

    # -- exact arithmetic ---------------------------------------------------------------
    def conv_nets(self) -> list[ConvNet]:
        return [m for m in self.modules() if isinstance(m, ConvNet)]

    @property
    def quantized(self) -> bool:
        """Whether every network runs in exact integer arithmetic."""
        return all(bool(net.quantized) for net in self.conv_nets())

    @torch.no_grad()
    def quantize(self) -> None:
        """Switch every network to exact arithmetic (:meth:`ConvNet.quantize`, default
        activation ranges): how tests build small exact models."""
        for net in self.conv_nets():
            if not bool(net.quantized):
                net.quantize(None)

    def check_exact(self) -> None:
        """Raise ValueError unless every network satisfies the exact-arithmetic bounds."""
        for net in self.conv_nets():
            net.check_exact()

    # -- parameters of the priors -------------------------------------------------------
    def _context(self, level: int) -> nn.Module | None:
        """The context network of the logistic stage before inverting ``level`` (the top
        level's second half when ``level`` is the last one), or None."""
        if not self.config.context_split:
            return None
        return self.top_context if level == len(self.levels) - 1 else self.contexts[level]

    def _prior_net(self, level: int) -> nn.Module:
        return self.top_prior if level == len(self.levels) - 1 else self.priors[level]

    def _logistic(self, net: nn.Module, known: torch.Tensor) -> LogisticPrior:
        mean, log_scale = net(known).chunk(2, dim=1)
        return LogisticPrior(mean, log_scale.clamp(LOGSCALE_MIN, LOGSCALE_MAX))

    def _refined(
        self, context: nn.Module, base: LogisticPrior, known: torch.Tensor, first: torch.Tensor
    ) -> LogisticPrior:
        """The prior of a context-split stage's second half: the base prior's second half
        shifted by what ``context`` reads from the known channels and the first half."""
        c = first.shape[1]
        mean, log_scale = context(torch.cat([known, first], dim=1)).chunk(2, dim=1)
        return LogisticPrior(
            base.mean[:, c:] + mean,
            (base.log_scale[:, c:] + log_scale).clamp(LOGSCALE_MIN, LOGSCALE_MAX),
        )

    def _logistic_stages(
        self, level: int, known: torch.Tensor, z: torch.Tensor
    ) -> list[tuple[torch.Tensor, LogisticPrior]]:
        """The coded stages of latents ``z`` whose prior network reads ``known``: one, or
        two halves (channels) with ``context_split``."""
        base = self._logistic(self._prior_net(level), known)
        context = self._context(level)
        if context is None:
            return [(z, base)]
        c = z.shape[1] // 2
        return [
            (z[:, :c], _first_half(base)),
            (z[:, c:], self._refined(context, base, known, z[:, :c])),
        ]

    def mixture_parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, means, log-scales) of the top mixture, each (channels, components)."""
        return (
            self.mixture_logits,
            self.mixture_means,
            self.mixture_log_scales.clamp(LOGSCALE_MIN, LOGSCALE_MAX),
        )

    # -- forward (pixels to latents) --------------------------------------------------------------
    def _run_levels(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        h = x - PIXEL_OFFSET
        factored = []
        for index, level in enumerate(self.levels):
            h = level(h)
            if index < len(self.levels) - 1:
                keep = h.shape[1] // 2
                factored.append((h[:, :keep], h[:, keep:]))
                h = h[:, :keep]
        return h, factored

    def coding_stages(self, x: torch.Tensor) -> list[tuple[torch.Tensor, Prior]]:
        """Each stage's latents with its prior, coarsest first, from one pass over ``x``.

        The priors are those :class:`StagedInverse` hands the decoder: each prior network
        sees the same kept channels, computed forwards instead of inverted back.
        """
        top, factored = self._run_levels(x)
        top_a = top[:, : self.mixture_channels]
        stages: list[tuple[torch.Tensor, Prior]] = [(top_a, MixturePrior(tuple(top_a.shape)))]
        last = len(self.levels) - 1
        if self.top_prior is not None:
            stages += self._logistic_stages(last, top_a, top[:, self.mixture_channels :])
        for level in reversed(range(last)):
            stages += self._logistic_stages(level, *factored[level])
        return stages


class StagedInverse:
    """Rebuilds pixels from latents stage by stage, giving each stage's prior first.

    Usage: ``for each stage: prior = s.prior(); s.push(latents)``; then ``s.pixels()``.
    """

    def __init__(self, flow: IntegerFlow, batch: int, height: int, width: int):
        g = flow.config.granularity
        if height % g or width % g:
            raise ValueError(f"tile sides must be multiples of {g}")
        self.flow = flow
        self.stage = 0
        self._top_shape = (batch, flow.top_channels, height // g, width // g)
        # What the next logistic stage's prior network reads (the top level's first half,
        # or the partly inverted flow), the level to invert once that stage is complete,
        # and, within a context-split stage, its base prior and first half.
        self._known: torch.Tensor | None = None
        self._level = len(flow.levels) - 1
        self._base: LogisticPrior | None = None
        self._first: torch.Tensor | None = None

    @property
    def stages(self) -> int:
        return self.flow.config.stages

    def prior(self) -> Prior:
        """The prior of the next stage's latents."""
        flow = self.flow
        if self.stage == 0:
            b, _, h, w = self._top_shape
            return MixturePrior((b, flow.mixture_channels, h, w))
        if self._base is None:
            self._base = flow._logistic(flow._prior_net(self._level), self._known)
        base = self._base
        context = flow._context(self._level)
        if context is None:
            return base
        if self._first is None:
            return _first_half(base)
        return flow._refined(context, base, self._known, self._first)

    def push(self, z: torch.Tensor) -> None:
        """Supply the next stage's latents (float tensor of integers)."""
        flow = self.flow
        if self.stage == 0:
            if flow.top_prior is not None:
                self._known = z
            else:
                self._known = flow.levels[self._level].inverse(z)
                self._level -= 1
        elif flow._context(self._level) is not None and self._first is None:
            self._first = z
        else:
            coded = z if self._first is None else torch.cat([self._first, z], dim=1)
            self._known = flow.levels[self._level].inverse(torch.cat([self._known, coded], dim=1))
            self._level -= 1
            self._base = None
            self._first = None
        self.stage += 1

    def pixels(self) -> torch.Tensor:
        """The reconstructed pixels once every stage was pushed."""
        if self.stage != self.stages:
            raise RuntimeError("not every stage was pushed")
        return self._known + PIXEL_OFFSET
