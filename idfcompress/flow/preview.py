"""Previews of a partly decoded flow: the stages not received yet are filled with their
priors' most likely values, or with seeded draws from them, and the inverse flow runs."""

from __future__ import annotations

import copy
import weakref

import numpy as np
import torch

from ..entropy import ans
from ..entropy.tables import MEAN_LIMIT, PROB_TOTAL
from .coding import BatchDecoder, exact_arithmetic
from .model import LogisticPrior, StagedInverse


def prior_mode(mean: np.ndarray) -> np.ndarray:
    """Most likely value of discretized logistics with these means: round(mean) (int64).

    A discretized logistic peaks at the integer nearest its mean; halves round up. This is
    also a mode of the snapped grid table that codes the value (tests check it), and, unlike
    an argmax over a wide table whose top is flat after snapping, it does not drift to one
    side.
    """
    m = np.clip(np.nan_to_num(np.asarray(mean, dtype=np.float64)), -MEAN_LIMIT, MEAN_LIMIT)
    return np.floor(m + 0.5).astype(np.int64)


class TableFacts:
    """Mode and sampler of every table of a TableSet (built lazily, cached per set)."""

    def __init__(self, tables: ans.TableSet) -> None:
        self.tables = tables
        self._modes: np.ndarray | None = None
        self._keys: np.ndarray | None = None
        self._starts: np.ndarray | None = None

    def modes(self) -> np.ndarray:
        """Bin of largest probability of each table (first one on ties)."""
        if self._modes is None:
            self._modes = np.array(
                [int(np.argmax(self.tables.table(t))) for t in range(len(self.tables))]
            )
        return self._modes

    def sample(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One bin per position drawn from the table ``ids`` names (exact integer weights)."""
        if self._keys is None:
            # Table t owns the keys t * PROB_TOTAL + (cumulative weight up to each bin): one
            # sorted array, so a single searchsorted samples every position at once.
            keys, starts, start = [], [], 0
            for t in range(len(self.tables)):
                weights = np.rint(self.tables.table(t) * PROB_TOTAL).astype(np.int64)
                keys.append(t * PROB_TOTAL + np.cumsum(weights))
                starts.append(start)
                start += weights.size
            self._keys = np.concatenate(keys)
            self._starts = np.array(starts, dtype=np.int64)
        assert self._starts is not None
        tid = ids.astype(np.int64)
        draw = rng.integers(0, PROB_TOTAL, size=tid.shape, dtype=np.int64)
        found = np.searchsorted(self._keys, tid * PROB_TOTAL + draw, side="right")
        return found - self._starts[tid]


_facts: weakref.WeakKeyDictionary[ans.TableSet, TableFacts] = weakref.WeakKeyDictionary()


def table_facts(tables: ans.TableSet) -> TableFacts:
    """The (cached) :class:`TableFacts` of ``tables``."""
    if tables not in _facts:
        _facts[tables] = TableFacts(tables)
    return _facts[tables]


@exact_arithmetic
@torch.no_grad()
def completed(decoder: BatchDecoder, rng: np.random.Generator | None) -> StagedInverse:
    """A copy of the decoder's inverse flow with every missing stage filled in.

    Filled values: the prior's mode (logistic: round(mean); mixture: its table's argmax),
    or with ``rng`` a draw from the stage's coding table (tails end at the table's end
    bins). The decoder itself is left untouched.
    """
    staged = copy.copy(decoder.staged)  # push() only rebinds attributes: a shallow copy is safe
    while staged.stage < decoder.stages:
        prior, tables, ids, offsets = decoder.parameters(staged)
        if rng is not None:
            z = offsets + table_facts(tables).sample(ids, rng)
        elif isinstance(prior, LogisticPrior):
            z = prior_mode(prior.mean.double().numpy())
        else:
            z = offsets + table_facts(tables).modes()[ids]
        staged.push(torch.from_numpy(z).float())
    return staged


def write_preview(
    decoder: BatchDecoder, plane: np.ndarray, rng: np.random.Generator | None
) -> None:
    """Put the decoder's cores, missing stages filled (:func:`completed`), into ``plane``."""
    decoder.write_pixels(completed(decoder, rng), plane, exact=False)
