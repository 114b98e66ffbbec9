"""Architecture of a flow model; saved beside the weights so a file can rebuild its model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


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
        if self.in_channels not in (1, 3):
            raise ValueError("in_channels must be 1 or 3")
        if self.levels < 1:
            raise ValueError("levels must be at least 1")
        if self.coupling not in ("two-way", "four-way"):
            raise ValueError("coupling must be 'two-way' or 'four-way'")
        if self.middle_kernel not in (1, 3):
            raise ValueError("middle_kernel must be 1 or 3")

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
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))
