"""The training loop: learning happens, resume is exact, export writes a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY, smooth_image
from PIL import Image

from idfcompress import model_io
from idfcompress.config import ModelConfig
from idfcompress.training import CropSampler, Trainer, TrainSettings, image_files, learning_rate


@pytest.fixture()
def photo_dirs(tmp_path):
    rng = np.random.default_rng(5)
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(rng, 40 + 8 * i, 48, 3)).save(train / f"t{i}.png")
    Image.fromarray(smooth_image(rng, 21, 27, 3)).save(val / "v.png")
    return train, val


def _settings(tmp_path, train, val, **kw) -> TrainSettings:
    base = dict(
        name="tiny",
        train=[str(train)],
        val=[str(val)],
        out_dir=str(tmp_path / "runs"),
        models_dir=str(tmp_path / "models"),
        steps=4,
        batch=2,
        crop=16,
        warmup=2,
        validate_every=2,
        val_images=1,
        checkpoint_minutes=1e9,
        pad_fraction=0.5,
    )
    base.update(kw)
    return TrainSettings(**base)


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.flow.parameters()]


def test_resume_is_exact(tmp_path, photo_dirs):
    config = ModelConfig(**TINY)
    straight = Trainer(config, _settings(tmp_path / "a", *photo_dirs))
    straight.run(progress=False)

    first = Trainer(config, _settings(tmp_path / "b", *photo_dirs, steps=2))
    first.run(progress=False)
    resumed = Trainer(config, _settings(tmp_path / "b", *photo_dirs))
    assert resumed.step == 2
    resumed.run(progress=False)
    for a, b in zip(_weights(straight), _weights(resumed), strict=True):
        assert torch.equal(a, b)
    log = [
        json.loads(line) for line in (tmp_path / "b/runs/tiny/log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in log] == [2, 4] and all(np.isfinite(r["val_bpd"]) for r in log)


def test_training_lowers_the_loss_and_exports(tmp_path, photo_dirs):
    trainer = Trainer(ModelConfig(**TINY), _settings(tmp_path, *photo_dirs, steps=60, lr=3e-3))
    before = trainer.validate(None)
    trainer.run(progress=False)
    assert trainer.validate(None) < before
    weights = trainer.export()
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["sha256"] == model_io.file_sha256(weights).hex()
    assert card["training"]["steps"] == 60
    flow = model_io.load_flow(weights)
    assert flow.config == trainer.config


def test_crops_have_the_requested_shape_and_padding(photo_dirs):
    sampler = CropSampler(image_files([photo_dirs[0]]), 1, 16, seed=0, pad_fraction=1.0, max_pad=7)
    batch = sampler.batch(8)
    assert batch.shape == (8, 1, 16, 16)
    assert batch.min() >= 0 and batch.max() <= 255


def test_learning_rate_warms_up_then_decays():
    s = TrainSettings(
        name="x", train=[], val=[], steps=100, warmup=10, lr=1.0, final_lr_fraction=0.1
    )
    rates = [learning_rate(s, i) for i in range(100)]
    assert rates[0] < rates[9] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1, abs=0.01) and rates[50] < rates[10]
