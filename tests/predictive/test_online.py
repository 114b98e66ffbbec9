"""The online filter (``predictive.online``): it learns, encoder and decoder agree on it
for regions of every shape, and the encoder switches it on where it pays."""

from __future__ import annotations

import numpy as np
import pytest
from test_kernel import RANDOM, SHAPES, _photo_like

from idfcompress.errors import CorruptFile
from idfcompress.predictive import coder, online, prior

SHIPPED = prior.load_prior(prior.DEFAULT_PRIOR)


def test_the_filter_learns_a_steady_relation():
    weights = np.zeros(online.TAPS, dtype=np.int64)
    u = np.zeros(online.TAPS, dtype=np.int64)
    u[0], u[6] = 40, -24  # a residual at W and a neighbour's difference ...
    target = 30  # ... that always come with this residual
    errors = []
    for _ in range(4000):
        c = online.output(weights, u)
        errors.append(abs(target - c))
        online.update(weights, u, target - c, int(online.RATES[-1]), online.power(u))
    assert errors[0] == target and errors[-1] <= 1
    assert all(a >= b for a, b in zip(errors, errors[1:], strict=False))  # never moves away


def _textured(rng, h: int, w: int, c: int) -> np.ndarray:
    """A smooth image plus noise correlated along rows: residuals the filter can predict
    from the residual at W, which neither the blend nor the prior does."""
    y, x = np.mgrid[0:h, 0:w]
    base = 110 + 40 * np.sin(x / 11.0) * np.cos(y / 17.0)
    noise = rng.normal(0, 4, (h, w))
    for i in range(1, w):
        noise[:, i] += 0.85 * noise[:, i - 1]
    planes = np.stack([base + noise * (1 - 0.3 * k) for k in range(c)], -1)
    return np.clip(planes, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("make", [_photo_like, _textured], ids=["photo", "textured"])
def test_the_decoder_walk_with_the_filter_gives_back_every_shape(rng, shape, make):
    region = make(rng, *shape)
    payload = coder.plan([region], RANDOM, online=True).payload()
    assert np.array_equal(coder.decode(payload, [shape], learned=RANDOM, online=True)[0], region)


def _rates(payload: bytes, c: int) -> list[int]:
    return list(payload[2 * (c - 1) : 2 * (c - 1) + c])


def test_the_encoder_uses_the_filter_where_it_pays(rng):
    region = _textured(rng, 96, 96, 3)
    with_filter = coder.plan([region], SHIPPED, online=True)
    without = coder.plan([region], SHIPPED)
    assert all(_rates(with_filter.payload(), 3))
    assert len(with_filter.payload()) < 0.97 * len(without.payload())
    decoded = coder.decode(with_filter.payload(), [region.shape], learned=SHIPPED, online=True)
    assert np.array_equal(decoded[0], region)


def test_an_unknown_rate_is_refused(rng):
    region = _textured(rng, 20, 20, 3)
    payload = bytearray(coder.plan([region], RANDOM, online=True).payload())
    payload[2 * 2] = online.RATE_RANGE[1] + 1  # the first plane's rate
    with pytest.raises(CorruptFile, match="unknown online rate"):
        coder.decode(bytes(payload), [region.shape], learned=RANDOM, online=True)
