"""scripts/train_prior.py on tiny generated folders: it trains, writes a prior the codec
loads and a card, resumes its own run and continues from a shipped prior."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import smooth_image
from PIL import Image

from idfcompress.predictive import prior

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_prior.py"


def _train(tmp_path: Path, *args: str) -> dict:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--minutes", "0.03", "--run", str(tmp_path / "run"),
         "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"),
         "--out", str(tmp_path / "out" / "prior-t"), *args],
        check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return json.loads((tmp_path / "out" / "prior-t.json").read_text())


def test_training_writes_a_loadable_prior_and_resumes(tmp_path, rng):
    for folder, count in (("train", 3), ("val", 1)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            image = smooth_image(rng, 80, 72, 3)
            Image.fromarray(image).save(tmp_path / folder / f"{i}.png")
    card = _train(tmp_path)
    weights = tmp_path / "out" / "prior-t.safetensors"
    prior.load_file(weights)  # a well-formed prior
    assert card["steps"] > 0 and card["data"]["values"] > 0
    assert np.isfinite(card["validation_bits_per_value"]["integer"])
    assert card["sha256"] == __import__("hashlib").sha256(weights.read_bytes()).hexdigest()
    resumed = _train(tmp_path, "--resume")
    assert resumed["steps"] > card["steps"]  # the run's own checkpoint continued
    start = tmp_path / "start.safetensors"
    start.write_bytes(weights.read_bytes())
    (tmp_path / "run" / "checkpoint.pt").unlink()
    continued = _train(tmp_path, "--init-from", str(start), "--lr", "0")
    assert continued["init_from"] == str(start)
    # at learning rate 0 the continued prior is exactly the one it started from
    after, before = prior.load_file(weights).tensors(), prior.load_file(start).tensors()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    # another sample seed: other training values, the same validation values
    other = _train(tmp_path, "--run", str(tmp_path / "other"), "--sample-seed", "5")
    assert card["data"]["sample_seed"] == 1 and other["data"]["sample_seed"] == 5
    a, b = (np.load(tmp_path / run / "samples.npz") for run in ("run", "other"))
    assert not np.array_equal(a["tf"], b["tf"]) and np.array_equal(a["vf"], b["vf"])


def test_a_probe_of_another_width_writes_its_curve_and_no_prior(tmp_path, rng):
    for folder in ("train", "val"):
        (tmp_path / folder).mkdir()
        Image.fromarray(smooth_image(rng, 64, 64, 3)).save(tmp_path / folder / "0.png")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--minutes", "0.03", "--hidden", "8",
         "--run", str(tmp_path / "run"), "--train", str(tmp_path / "train"),
         "--val", str(tmp_path / "val"), "--out", str(tmp_path / "out" / "prior-w")],
        check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert isinstance(json.loads((tmp_path / "run" / "curve.json").read_text()), list)
    assert not (tmp_path / "out").exists()
