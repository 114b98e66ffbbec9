"""The compiled arithmetic (``kernel``) is the numpy reference's: the prior's logistics,
the decoder's walk over regions of every shape, and the shift search's estimate."""

from __future__ import annotations

import numpy as np
import pytest

from idfcompress.predictive import coder, prior

RANDOM = prior.random_prior(5)
# bands (64 rows), a single row or column, narrow and wide (transposed), 1 to 4 planes
SHAPES = [(1, 1, 1), (5, 1, 3), (1, 7, 2), (64, 1, 1), (70, 3, 4), (130, 9, 2), (20, 20, 3),
          (150, 40, 3), (33, 140, 3), (66, 66, 4)]  # fmt: skip


def _photo_like(rng, h: int, w: int, c: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(x / 5.0) * np.cos(y / 8.0)
    planes = np.stack([base * (1 - 0.2 * i) for i in range(c)], -1)
    noise = rng.laplace(0, 1 + 6 * (x > w // 2), (c, h, w)).transpose(1, 2, 0)
    return np.clip(planes + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "net", [RANDOM, prior.load_prior(prior.DEFAULT_PRIOR)], ids=["random", "shipped"]
)
def test_compiled_logistics_are_the_numpy_network(rng, net):
    planes, _ = coder.analyse(_photo_like(rng, 70, 90, 3), with_features=True, learned=net)
    for p in planes:
        assert p.features is not None and p.mean is not None
        mean, scale = net.logistic(p.features)
        assert np.array_equal(p.mean, mean) and np.array_equal(p.scale, scale)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("net", [RANDOM, None], ids=["learned", "rule"])
def test_the_decoder_walk_gives_back_every_shape(rng, shape, net):
    region = _photo_like(rng, *shape)
    payload = coder.plan([region], net).payload()
    assert np.array_equal(coder.decode(payload, [shape], learned=net)[0], region)


def test_fitted_shifts_cost_what_they_estimate(rng):
    region = _photo_like(rng, 60, 60, 1)
    (plane,), _ = coder.analyse(region, learned=RANDOM)
    assert plane.mean is not None and plane.scale is not None
    shifts, mean, scale, bits = prior.fit_shifts(
        plane.coded, plane.mean, plane.scale, plane.contexts
    )
    assert bits == pytest.approx(prior.bits(plane.coded, mean, scale), abs=1e-9)
    # the search only moves where that pays: every context's shift beats none
    for k in np.unique(plane.contexts):
        sel = plane.contexts == k
        kept = prior.bits(plane.coded[sel], mean[sel], scale[sel])
        assert kept <= prior.bits(plane.coded[sel], plane.mean[sel], plane.scale[sel])
    assert np.abs(shifts).max() <= prior.SHIFT_REACH
    finer = prior.fit_shifts(
        plane.coded, plane.mean, plane.scale, plane.contexts, mean_steps=(8, 4, 2, 1), passes=2
    )
    assert finer[3] <= bits
