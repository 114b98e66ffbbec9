"""The learned prior of the predictive coder: a small integer network that reads a value's
causal features and gives the mean and log-scale of the grid logistic that codes it.

Everything here is exact integer arithmetic, so encoder and decoder agree on any machine:
the features are integers (:func:`features`); the network's weights and biases are
integers and its activations are rounded to integers after every layer by a power of two
(:meth:`Prior.params`). Its products are carried in float64, whose sums of integers below
2**53 are exact in any order, so numpy's BLAS gives the same bits on every instruction set
and thread count (docs/FORMAT.md, "Learned prior"; ../shared/notes/determinism.md).

Files name the prior they were coded with by a one-byte id; :data:`PRIORS` pins each id to
the SHA-256 of its weights, so a changed or missing weight file is refused by name, never
used to decode (``ModelError``). Weights are trained by ``scripts/train_prior.py`` (torch)
and stored as ``models/prior-N.safetensors``; :func:`quantize` turns float weights into a
:class:`Prior` without torch.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..entropy.tables import (
    FIT_MIN_LOGSCALE,
    HALF_WIDTHS,
    LOGSCALE_COUNT,
    grid_ids,
    logistic_tables,
)
from ..errors import ModelError
from ..once import once
from . import search

__all__ = [
    "CONTEXTS",
    "COST_BITS",
    "DEFAULT_PRIOR",
    "FEATURES",
    "HIDDEN",
    "bin_costs",
    "PRIORS",
    "Prior",
    "features",
    "fit_shifts",
    "kinds",
    "load_prior",
    "quantize",
    "random_prior",
    "signed_root",
    "load_file",
]

FEATURES = 25
HIDDEN = 32
ACTIVATION_BITS = 8  # activations are kept in 256ths
ACTIVATION_MAX = (1 << 16) - 1
WEIGHT_LIMIT = 1 << 12  # |weight| <= 4096: every sum stays far below 2**53
LOGSCALE_CENTRE = 72  # the network's second output is the log-scale index minus this
MEAN_REACH = 16 * 255  # the network's mean (sixteenths) is clipped to +-this
SHIFT_REACH = 127  # stored per-context shifts are int8
CONTEXTS = 16
"""Contexts per plane (the coder's), each with its own shifts."""

PRIORS: dict[int, tuple[str, str]] = {
    1: ("prior-1", "363f2b745f4c4e5d41fcde5f90bc48f501f11da5c848503b1a9526d5efa214da"),
    2: ("prior-2", "8d0bcdd0aab9f84a8d342e0be9139d3077e53215a72f67299b54c6bb9fee6b4e"),
}
"""Prior id -> (file stem in ``models/``, SHA-256 of the file)."""
DEFAULT_PRIOR = 2
"""The id new files are coded with."""


def kinds(channels: int) -> np.ndarray:
    """The kind of each coded plane: 0 grey, 1 G, 2 R - G, 3 B - G, 4 alpha."""
    if channels in (3, 4):
        return np.array([1, 2, 3, 4][:channels], dtype=np.int64)
    return np.array([0, 4][:channels], dtype=np.int64)


def signed_root(x: np.ndarray) -> np.ndarray:
    """floor(sqrt(|x|)) with the sign of x, exact for |x| < 2**50."""
    a = np.abs(x)
    r = np.sqrt(a.astype(np.float64)).astype(np.int64)
    r -= r * r > a
    r += (r + 1) * (r + 1) <= a
    return np.where(x < 0, -r, r)


def features(
    near: np.ndarray,
    predictors: np.ndarray,
    prediction: np.ndarray,
    near_errors: np.ndarray,
    first: np.ndarray,
    previous: np.ndarray,
    earlier: np.ndarray,
    kind: np.ndarray,
) -> np.ndarray:
    """The (n, FEATURES) integer features (as float64) of n values.

    ``near`` (6, n): the neighbours' values (W, N, NW, NE, WW, NN); ``predictors`` (8, n) and
    ``prediction`` (n): the predictors and the final prediction, in sixteenths;
    ``near_errors`` (6, n): the neighbours' absolute prediction errors (sixteenths);
    ``first``, ``previous`` (n): the first and the previous plane's signed errors at the pixel
    (0 in the first plane); ``earlier`` (n): the earlier planes' absolute errors, summed;
    ``kind`` (n): :func:`kinds` of each value's plane.
    """
    n = prediction.shape[0]
    out = np.empty((n, FEATURES), dtype=np.int64)
    out[:, 0:8] = signed_root(predictors - prediction).T
    out[:, 8:14] = signed_root(near_errors).T
    west, north, northwest, northeast = near[:4]
    gradient = np.abs(west - northwest) + np.abs(north - northwest) + np.abs(north - northeast)
    out[:, 14] = signed_root(16 * gradient)
    out[:, 15] = signed_root(first)
    out[:, 16] = signed_root(previous)
    out[:, 17] = signed_root(earlier)
    out[:, 18] = prediction - 16 * ((prediction + 8) >> 4)
    out[:, 19:24] = 16 * (kind[:, None] == np.arange(5))
    total = near_errors[:4].sum(axis=0) + (near_errors[4] + near_errors[5]) // 2
    out[:, 24] = signed_root(total + 8 * gradient + (3 * earlier) // 2)
    return out.astype(np.float64)


@dataclass(frozen=True)
class Prior:
    """An integer network: three layers (FEATURES -> HIDDEN -> HIDDEN -> 2), ReLU between.

    ``weights[i]`` and ``biases[i]`` are integer-valued float64 arrays and layer i's sums
    are divided by ``2 ** shifts[i]`` and rounded (half up); the hidden activations are
    clipped to 0 .. ACTIVATION_MAX.
    """

    weights: tuple[np.ndarray, np.ndarray, np.ndarray]
    biases: tuple[np.ndarray, np.ndarray, np.ndarray]
    shifts: tuple[int, int, int]

    def params(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean (sixteenths, relative to the prediction) and log-scale index (int64)
        of each row of :func:`features`."""
        h = feats
        for i in range(3):
            h = np.floor((h @ self.weights[i] + self.biases[i]) * 2.0 ** -self.shifts[i] + 0.5)
            if i < 2:
                np.clip(h, 0, ACTIVATION_MAX, out=h)
        mean = np.clip(h[:, 0], -MEAN_REACH, MEAN_REACH).astype(np.int64)
        return mean, h[:, 1].astype(np.int64) + LOGSCALE_CENTRE

    def logistic(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean (sixteenths, relative to the rounded prediction: :meth:`params` plus the
        prediction's fraction, feature 18) and log-scale index that code each value."""
        mean, scale = self.params(feats)
        return mean + feats[:, 18].astype(np.int64), scale

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays a weight file stores (int32, C order: safetensors writes the buffer
        as it lies, so a transposed array would come back scrambled)."""
        out = {f"w{i}": np.ascontiguousarray(w, np.int32) for i, w in enumerate(self.weights)}
        out |= {f"b{i}": np.ascontiguousarray(b, np.int32) for i, b in enumerate(self.biases)}
        out["shifts"] = np.array(self.shifts, dtype=np.int32)
        return out


def _from_tensors(t: dict[str, np.ndarray]) -> Prior:
    shapes = [(FEATURES, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2)]
    try:
        weights = tuple(np.asarray(t[f"w{i}"], np.float64) for i in range(3))
        biases = tuple(np.asarray(t[f"b{i}"], np.float64) for i in range(3))
        shifts = tuple(int(s) for s in np.asarray(t["shifts"]).reshape(3))
    except (KeyError, ValueError) as exc:
        raise ModelError(f"prior weights incomplete: {exc}") from None
    if [w.shape for w in weights] != shapes or [b.shape for b in biases] != [
        (HIDDEN,),
        (HIDDEN,),
        (2,),
    ]:
        raise ModelError("prior weights have the wrong shapes")
    if max(np.abs(w).max() for w in weights) > WEIGHT_LIMIT or not all(0 <= s < 40 for s in shifts):
        raise ModelError("prior weights out of range")
    if max(np.abs(b).max() for b in biases) > 1 << 40:
        raise ModelError("prior biases out of range")
    return Prior(weights, biases, shifts)  # type: ignore[arg-type]


def quantize(
    weights: list[np.ndarray], biases: list[np.ndarray], input_scale: float = 16.0
) -> Prior:
    """The integer :class:`Prior` nearest a float network ``relu(relu(x W0 + b0) W1 + b1)
    W2 + b2`` whose input x is :func:`features` divided by ``input_scale`` (a power of two)
    and whose outputs are the mean in sixteenths and the log-scale index minus
    ``LOGSCALE_CENTRE``."""
    log_in = int(round(np.log2(input_scale)))
    scale_in = [log_in, ACTIVATION_BITS, ACTIVATION_BITS]  # log2 of each layer's input unit
    scale_out = [ACTIVATION_BITS, ACTIVATION_BITS, 0]
    ws, bs, shifts = [], [], []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        w = np.asarray(w, np.float64)
        bits = int(np.floor(np.log2(WEIGHT_LIMIT / max(np.abs(w).max(), 1e-9))))
        bits = max(min(bits, 30), scale_out[i] - scale_in[i])  # shift >= 0
        ws.append(np.clip(np.rint(w * 2.0**bits), -WEIGHT_LIMIT, WEIGHT_LIMIT))
        bs.append(np.rint(np.asarray(b, np.float64) * 2.0 ** (bits + scale_in[i])))
        shifts.append(bits + scale_in[i] - scale_out[i])
    return Prior(tuple(ws), tuple(bs), tuple(shifts))  # type: ignore[arg-type]


def random_prior(seed: int) -> Prior:
    """An untrained prior: random weights of the trained ones' initial scale (the ablation
    that shows what training brings)."""
    rng = np.random.default_rng(seed)
    sizes = [(FEATURES, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2)]
    weights = [rng.uniform(-1, 1, s) / np.sqrt(s[0]) for s in sizes]
    biases = [rng.uniform(-1, 1, s[1]) / np.sqrt(s[0]) for s in sizes]
    return quantize(weights, biases)


def _model_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("IDFC_MODELS", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent.parent
    return [*dirs, here / "models", here.parent / "models"]


def load_file(path: Path) -> Prior:
    """The prior stored at ``path`` (unverified: for training and tests)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as read

    try:
        return _from_tensors(read(str(path)))
    except (OSError, ValueError, SafetensorError) as exc:
        raise ModelError(f"cannot read prior weights {path}: {exc}") from None


@functools.cache
def load_prior(prior_id: int) -> Prior:
    """The shipped prior of a file's id, its weights checked against :data:`PRIORS`."""
    if prior_id not in PRIORS:
        known = ", ".join(map(str, sorted(PRIORS))) or "none"
        raise ModelError(f"unknown learned prior {prior_id} (this version knows {known})")
    stem, sha = PRIORS[prior_id]
    for folder in _model_dirs():
        path = folder / f"{stem}.safetensors"
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise ModelError(f"{path} is not prior {prior_id} (its SHA-256 differs)")
            return load_file(path)
    raise ModelError(f"prior weights {stem}.safetensors not found in the model folders")


COST_BITS = 20
"""The shift search sums costs in units of 2**-COST_BITS bits: integers, exact in any order."""


@once
def bin_costs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cost of every bin of every grid table (-log2 p, at most 40 bits, in fixed point),
    flattened, with the escape's extra 8 bits appended; each table's start and size."""
    tables = logistic_tables()
    sizes = np.array([t.size for t in tables], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    with np.errstate(divide="ignore"):
        flat = np.minimum(-np.log2(np.concatenate(tables)), 40.0)
    costs = np.rint(np.append(flat, 8.0) * 2.0**COST_BITS).astype(np.int32)  # < 2**26
    for a in (costs, starts, sizes):
        a.setflags(write=False)
    return costs, starts, sizes


def bits(coded: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> float:
    """Estimated bits of integer values under grid logistics of mean ``mean`` (sixteenths)
    and log-scale index ``scale`` (values past a table's end cost as at its edge + 8)."""
    costs, starts, sizes = bin_costs()
    table, offset = grid_ids(mean, scale)
    at = coded - offset
    inside = np.clip(at, 0, sizes[table] - 1)
    escapes = np.count_nonzero(at != inside)
    total = int(costs[starts[table] + inside].sum(dtype=np.int64)) + int(costs[-1]) * escapes
    return total / 2.0**COST_BITS


def fit_shifts(
    coded: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    contexts: np.ndarray,
    *,
    scale_steps: tuple[int, ...] = (16, 8, 4, 2, 1),
    mean_steps: tuple[int, ...] = (8, 4, 2),
    passes: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per context of one plane (``contexts``: each value's, below ``CONTEXTS``), the mean
    shift (sixteenths) and log-scale shift (grid steps) that code its values ``coded`` in
    about the fewest bits, given the network's ``mean`` (relative to each value's rounded
    prediction) and ``scale``: a coordinate search on the estimated bits (:func:`bits`).
    Returns the (CONTEXTS, 2) shifts, every value's moved mean and log-scale index (kept
    on the coder's grid) and the estimated bits."""
    shifts, moved_mean, moved_scale, total = search.fit_shifts(
        coded.astype(np.int64), mean.astype(np.int64), scale.astype(np.int64),
        contexts.astype(np.int64), CONTEXTS, *bin_costs(), HALF_WIDTHS, FIT_MIN_LOGSCALE,
        LOGSCALE_COUNT - 1, SHIFT_REACH, np.array(scale_steps, np.int64),
        np.array(mean_steps, np.int64), passes,
    )  # fmt: skip
    return shifts, moved_mean, moved_scale, total / 2.0**COST_BITS
