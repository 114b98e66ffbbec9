"""Architecture of a flow model; saved beside the weights so a file can rebuild its model.

A config read from a model file is untrusted until proven otherwise: :meth:`ModelConfig.
from_json` checks it against a schema (the exact type of every field, its range, and bounds
on the network it describes: parameters, networks, convolutions, first-stage table entries)
and raises ``ModelError`` for anything else, before a single tensor is allocated. The
bounds are far above the shipped models (1.06 M parameters, 30 networks of 3 convolutions)
and below what takes a second or more than a few hundred MB to build (docs/RELIABILITY.md,
"Hostile models").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from ..errors import ModelError

# Inclusive (low, high) range of every integer field.
INT_RANGES = {
    "in_channels": (1, 3),
    "levels": (1, 6),
    "couplings_per_level": (1, 32),
    "width": (1, 512),
    "hidden_layers": (0, 8),
    "middle_kernel": (1, 3),
    "prior_width": (1, 512),
    "mixture_components": (1, 32),
    "top_low": (-(1 << 15), (1 << 15) - 1),
    "top_high": (-(1 << 15), (1 << 15) - 1),
    "seed": (0, (1 << 63) - 1),
}
CHOICES = {"in_channels": (1, 3), "middle_kernel": (1, 3), "coupling": ("two-way", "four-way")}
MAX_PARAMETERS = 1 << 24  # 64 MiB of float32 weights; the shipped RGB model has 1.06 M
MAX_NETWORKS = 256  # convolutional networks in the whole flow (the shipped RGB one: 30)
MAX_CONVOLUTIONS = 1536  # their layers: building and loading time grows with them (90)
MAX_MIXTURE_BINS = 1 << 22  # first-stage table entries: mixture channels x (top_high - top_low + 1)
MAX_CONFIG_CHARS = 1 << 16  # a config is a few hundred characters of JSON


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters that fully determine a model's structure."""

    in_channels: int = 3
    levels: int = 3
    couplings_per_level: int = 8
    coupling: str = "two-way"  # "two-way" or "four-way" (general invertible transformation)
    width: int = 96
    hidden_layers: int = 1
    middle_kernel: int = 1
    prior_width: int = 96
    mixture_components: int = 5
    top_split: bool = True
    context_split: bool = False  # logistic stages in two halves, the second reading the first
    top_low: int = -512
    top_high: int = 511
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = {"int": int, "str": str, "bool": bool}[str(f.type)]
            if type(value) is not expected:  # exact: True is not an int here, 3.0 not a 3
                raise ModelError(
                    f"model config field '{f.name}' must be {f.type}, got {_shown(value)}"
                )
            if f.name in CHOICES and value not in CHOICES[f.name]:
                raise ModelError(
                    f"model config field '{f.name}' must be one of {list(CHOICES[f.name])}, "
                    f"got {_shown(value)}"
                )
            if f.name not in INT_RANGES:
                continue
            low, high = INT_RANGES[f.name]
            number: int = getattr(self, f.name)
            if not low <= number <= high:
                raise ModelError(
                    f"model config field '{f.name}' must be in {low}..{high}, got {value}"
                )
        if self.top_low >= self.top_high:
            raise ModelError(
                f"model config needs top_low < top_high, got {self.top_low} and {self.top_high}"
            )
        self._check_size()

    def _check_size(self) -> None:
        parameters, networks, mixture_channels = self.size()
        bins = mixture_channels * (self.top_high - self.top_low + 1)
        for what, value, limit in (
            ("parameters", parameters, MAX_PARAMETERS),
            ("networks", networks, MAX_NETWORKS),
            ("convolutions", networks * (self.hidden_layers + 2), MAX_CONVOLUTIONS),
            ("first-stage table entries", bins, MAX_MIXTURE_BINS),
        ):
            if value > limit:
                raise ModelError(f"model config describes {value:,} {what} (at most {limit:,})")

    def size(self) -> tuple[int, int, int]:
        """(parameters, convolutional networks, mixture channels) of the flow this config
        builds, counted without building it (``IntegerFlow`` has exactly these)."""
        nets: list[tuple[int, int, int]] = []  # (in, out, width) of every ConvNet
        channels = self.in_channels
        for level in range(self.levels):
            channels *= 4
            for _ in range(self.couplings_per_level):
                if self.coupling == "two-way":
                    nets.append((channels // 2, channels - channels // 2, self.width))
                else:
                    nets += [(3 * (channels // 4), channels // 4, self.width)] * 4
            if level < self.levels - 1:
                keep = channels // 2
                nets += self._priors(keep, channels - keep)
                channels = keep
        mixture_channels = channels
        if self.top_split:
            mixture_channels = channels // 2
            nets += self._priors(mixture_channels, channels - mixture_channels)
        parameters = sum(self._net_parameters(*net) for net in nets)
        parameters += 3 * mixture_channels * self.mixture_components
        return parameters, len(nets), mixture_channels

    def _priors(self, kept: int, coded: int) -> list[tuple[int, int, int]]:
        """The prior network of a logistic stage, and its context network if split."""
        nets = [(kept, 2 * coded, self.prior_width)]
        if self.context_split:
            first = coded // 2
            nets.append((kept + first, 2 * (coded - first), self.prior_width))
        return nets

    def _net_parameters(self, cin: int, cout: int, width: int) -> int:
        """conv3x3 -> (conv kxk) * hidden -> conv3x3, with biases (``nets.ConvNet``)."""
        k = self.middle_kernel
        first = cin * width * 9 + width
        hidden = self.hidden_layers * (width * width * k * k + width)
        return first + hidden + width * cout * 9 + cout

    @property
    def parameters(self) -> int:
        """Number of trainable parameters of the flow."""
        return self.size()[0]

    @property
    def granularity(self) -> int:
        """Side lengths of coded tiles must be multiples of this."""
        return 2**self.levels

    @property
    def stages(self) -> int:
        """Number of separately coded latent groups (entropy streams) per tile."""
        logistic = self.levels - 1 + (1 if self.top_split else 0)
        return 1 + logistic * (2 if self.context_split else 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> ModelConfig:
        """The config a JSON object describes; ``ModelError`` unless it is an object whose
        keys are fields (missing ones take their defaults) with valid values."""
        if not isinstance(data, dict):
            raise ModelError(f"a model config must be a JSON object, got {_shown(data)}")
        known = {f.name for f in fields(cls)}
        unknown = [key for key in data if key not in known]
        if unknown:
            shown = ", ".join(_shown(key) for key in sorted(map(str, unknown))[:5])
            raise ModelError(f"unknown model config keys: {shown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: object) -> ModelConfig:
        """Parse and check a config as stored in a model file (``ModelError`` if invalid)."""
        if not isinstance(text, str):
            raise ModelError(f"a model config must be JSON text, got {type(text).__name__}")
        if len(text) > MAX_CONFIG_CHARS:
            raise ModelError(f"the model config is {len(text):,} characters long")
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ModelError(f"the model config is not valid JSON ({_one_line(exc)})") from None
        return cls.from_dict(data)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _shown(value: object) -> str:
    """A short, one-line repr of a value from an untrusted config."""
    text = _one_line(repr(value))
    return text if len(text) <= 40 else text[:37] + "..."
