"""The training loop: learning happens, resume is exact, export writes a loadable model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, smooth_image
from PIL import Image

import idfcompress as ic
from idfcompress.flow import loading, store
from idfcompress.flow.config import ModelConfig
from idfcompress.format import container
from idfcompress.training import (
    CropSampler,
    Trainer,
    TrainSettings,
    image_files,
    learning_rate,
    load_pixels,
    validation_bits,
)


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
    assert card["sha256"] == store.file_sha256(weights).hex()
    assert card["training"]["steps"] == 60
    assert all(v["file_format"] == container.FORMAT_VERSION for v in card["validation"].values())
    flow = loading.load_flow(weights)
    assert flow.config == trainer.config


def test_crops_have_the_requested_shape(photo_dirs):
    sampler = CropSampler(image_files([photo_dirs[0]]), 1, 16, seed=0)
    batch = sampler.batch(8)
    assert batch.shape == (8, 1, 16, 16)
    assert batch.min() >= 0 and batch.max() <= 255


@pytest.mark.parametrize("channels", [1, 3])
def test_enlarged_crops_are_smoother(tmp_path, channels):
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    files = image_files([tmp_path])
    plain = CropSampler(files, channels, 32, seed=0).batch(8)
    enlarged = CropSampler(files, channels, 32, seed=0, upscale=4.0, upscale_share=1.0).batch(8)
    assert enlarged.shape == plain.shape == (8, channels, 32, 32)

    def roughness(batch: torch.Tensor) -> float:
        return float((batch[..., 1:] - batch[..., :-1]).abs().mean())

    assert roughness(enlarged) < 0.7 * roughness(plain)


def test_learning_rate_warms_up_then_decays():
    s = TrainSettings(
        name="x", train=[], val=[], steps=100, warmup=10, lr=1.0, final_lr_fraction=0.1
    )
    rates = [learning_rate(s, i) for i in range(100)]
    assert rates[0] < rates[9] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1, abs=0.01) and rates[50] < rates[10]


def test_quantisation_aware_training_from_a_float_run_exports_an_exact_model(
    tmp_path, photo_dirs, monkeypatch
):
    float_run = Trainer(ModelConfig(**TINY), _settings(tmp_path, *photo_dirs, steps=30, lr=3e-3))
    float_run.run(progress=False)
    assert not float_run.flow.quantized
    qat = Trainer(
        ModelConfig(**TINY),
        _settings(
            tmp_path,
            *photo_dirs,
            name="tiny-qat",
            qat=True,
            init_from=str(float_run.checkpoint),
            steps=20,
            lr=1e-3,
        ),
    )
    assert qat.flow.quantized and qat.ema.quantized
    start = qat.validate(None)
    assert start < float_run.validate(None) * 1.05  # calibrated quantisation keeps the model
    qat.run(progress=False)
    weights = qat.export()
    flow = loading.load_flow(weights)  # checks the exactness bounds
    assert flow.quantized
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["training"]["qat"] is True and card["training"]["init_steps"] == 30
    monkeypatch.setenv(store.MODELS_ENV, str(weights.parent))
    image = smooth_image(np.random.default_rng(2), 24, 40, 3)
    data = ic.compress(image, model="tiny-qat", tile_size=16)
    assert np.array_equal(ic.decompress(data), image)


def test_export_of_a_float_run_quantises_it_and_keeps_the_ema(tmp_path, photo_dirs):
    settings = _settings(tmp_path, *photo_dirs, steps=5, ema=0.5, lr=0.05)
    trainer = Trainer(ModelConfig(**TINY), settings)
    trainer.run(progress=False)
    ema_before = [p.clone() for p in trainer.ema.parameters()]
    card = json.loads(trainer.export().with_suffix(".json").read_text())
    assert trainer.flow.quantized and trainer.ema.quantized

    def gap(a, b):
        return max(float((x - y).detach().abs().max()) for x, y in zip(a, b, strict=True))

    # the EMA copy was quantised on its own weights, not replaced by the raw ones
    moved = gap(trainer.ema.parameters(), ema_before)
    assert moved < gap(trainer.ema.parameters(), trainer.flow.parameters()) / 4
    scores = card["training"]["subset_val_bpsp"]
    assert scores["ema"] != scores["raw"]
    assert loading.load_flow(Path(tmp_path / "models/tiny.safetensors")).quantized


@pytest.mark.slow
def test_torchrun_trains_on_two_processes_and_resumes(tmp_path, photo_dirs):
    """DistributedDataParallel over two CPU processes (gloo), as on several GPUs."""
    import subprocess
    import sys
    from pathlib import Path

    train, val = photo_dirs
    script = Path(__file__).parent.parent / "scripts" / "train.py"
    common = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc-per-node", "2", str(script), "--name", "ddp", "--train", str(train),
              "--val", str(val), "--out-dir", str(tmp_path / "runs"), "--models-dir",
              str(tmp_path / "models"), "--batch", "2", "--crop", "16", "--warmup", "2",
              "--validate-every", "2", "--val-images", "1", "--width", "8", "--prior-width",
              "8", "--couplings-per-level", "2", "--threads", "1", "--device", "cpu"]  # fmt: skip
    for steps, resumed in (("2", "resuming at step 0"), ("4", "resuming at step 2")):
        done = subprocess.run(
            [*common, "--steps", steps], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"2 process(es), {resumed}" in done.stdout
    log = [json.loads(x) for x in (tmp_path / "runs/ddp/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and {r["processes"] for r in log} == {2}
    state = torch.load(tmp_path / "runs/ddp/checkpoint.pt", weights_only=True)
    assert len(json.loads(state["numpy_rng"])) == 2  # each process's crop sampler
    flow = loading.load_flow(tmp_path / "models/ddp.safetensors")
    card = json.loads((tmp_path / "models/ddp.json").read_text())
    assert flow.quantized and card["training"]["processes"] == 2


def test_a_time_budget_ends_the_run_and_drives_the_schedule(tmp_path, photo_dirs):
    settings = _settings(tmp_path, *photo_dirs, steps=10**6, minutes=0.02, warmup=1)
    trainer = Trainer(ModelConfig(**TINY), settings)
    trainer.run(progress=False)
    assert 1 < trainer.step < 10**6 and trainer.seconds >= 1.2
    log = [json.loads(x) for x in (tmp_path / "runs/tiny/log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == trainer.step  # the last step is validated
    assert learning_rate(settings, 5, 0.6) < learning_rate(settings, 5, 0.1)
    assert learning_rate(settings, 5, 1.2) == pytest.approx(settings.lr * 0.05)


def test_validation_measures_what_the_codec_codes(tmp_path, rng):
    """Validation bits = the codec's ideal bits: flow on the tiles' cores plus the real
    payload size of their margins (a 45x29 image has margins in every tile)."""
    from conftest import make_tiny_flow

    from idfcompress.codec import encoder
    from idfcompress.flow.loading import LoadedModel
    from idfcompress.imageio import from_array

    pixels = smooth_image(rng, 29, 45, 3)
    Image.fromarray(pixels).save(tmp_path / "v.png")
    flow = make_tiny_flow(3)
    loaded = LoadedModel("v", bytes(32), flow)
    _, stats = encoder.encode(from_array(pixels), model=loaded, tile_size=16, mode="flow")
    assert stats.ideal_bits > 0
    expected = stats.ideal_bits / pixels.size
    assert validation_bits(flow, [tmp_path / "v.png"], tile=16) == pytest.approx(expected, rel=1e-6)


def test_export_only_cards_record_the_training_settings(tmp_path, photo_dirs):
    config = ModelConfig(**TINY)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        trainer = Trainer(config, _settings(tmp_path, *photo_dirs, steps=2, lr=3e-3, ema=0.9))
        trainer.run(progress=False)
        torch.set_num_threads(2)  # the export-only run has other threads and settings
        later = Trainer(config, _settings(tmp_path, *photo_dirs, steps=2))  # default lr, ema
        card = json.loads(later.export().with_suffix(".json").read_text())
    finally:
        torch.set_num_threads(threads)
    assert card["training"]["lr"] == 3e-3 and card["training"]["ema"] == 0.9
    assert "1 threads x 1 process(es)" in card["training"]["hardware"]


def test_a_model_grown_by_context_networks_starts_as_its_parent_and_codes(
    tmp_path, photo_dirs, monkeypatch
):
    """--init-from a model without context networks: they start at zero (same bits), the
    parent's quantised networks keep their exponents, and the grown model trains, exports
    and round-trips through the codec."""
    parent_run = Trainer(ModelConfig(**TINY), _settings(tmp_path, *photo_dirs, qat=True))
    parent_run.run(progress=False)
    parent = parent_run.export()
    config = ModelConfig(**{**TINY, "context_split": True})
    grown = Trainer(
        config,
        _settings(tmp_path, *photo_dirs, name="grown", qat=True, init_from=str(parent), steps=6),
    )
    assert grown.flow.quantized and grown.lineage["grown_by"] == ["contexts", "top_context"]
    before = loading.load_flow(parent).state_dict()
    after = grown.flow.state_dict()
    assert all(torch.equal(value, after[key]) for key, value in before.items())
    pixels = load_pixels(image_files([photo_dirs[1]])[0], 3)
    pixels = pixels[: pixels.shape[0] // 8 * 8, : pixels.shape[1] // 8 * 8]
    x = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float()[None]
    with torch.no_grad():
        expected = loading.load_flow(parent).nll_bits(x)
        assert torch.allclose(grown.flow.nll_bits(x), expected, rtol=1e-6)
    grown.run(progress=False)
    weights = grown.export()
    flow = loading.load_flow(weights)
    assert flow.config.context_split and flow.config.stages == 7
    monkeypatch.setenv(store.MODELS_ENV, str(weights.parent))
    image = smooth_image(np.random.default_rng(3), 40, 56, 3)
    data = ic.compress(image, model="grown", tile_size=32)
    assert np.array_equal(ic.decompress(data), image)
