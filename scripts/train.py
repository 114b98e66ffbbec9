#!/usr/bin/env python3
"""Train an idfcompress model; resumes from runs/NAME/checkpoint.pt when it exists.

Example (the first shipped RGB model):
  OMP_WAIT_POLICY=PASSIVE python scripts/train.py --name idf-rgb-s1 --steps 7000 \
      --train ../shared/data/train/rgb \
      --val ../shared/data/val/rgb/mcmaster ../shared/data/val/rgb/bsds500-val
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import torch

from idfcompress.config import ModelConfig
from idfcompress.training import Trainer, TrainSettings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="model name (file stem in models/)")
    parser.add_argument("--train", nargs="+", required=True, help="training image folders")
    parser.add_argument("--val", nargs="+", required=True, help="validation image folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--export-only", action="store_true", help="export the checkpoint, no training"
    )
    parser.add_argument(
        "--export-val-limit", type=int, default=None, help="images per val set at export"
    )
    for f in fields(TrainSettings):
        if f.name in ("name", "train", "val", "extra"):
            continue
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default
        )
    for f in fields(ModelConfig):
        if f.name == "seed":  # permutation seed: kept at its default
            continue
        kind = (
            (lambda v: v.lower() in ("1", "true", "yes"))
            if isinstance(f.default, bool)
            else type(f.default)
        )
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=kind, default=f.default, dest=f"model_{f.name}"
        )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ModelConfig(
        **{
            f.name: getattr(args, f"model_{f.name}")
            for f in fields(ModelConfig)
            if f.name != "seed"
        }
    )
    settings = TrainSettings(
        **{f.name: getattr(args, f.name) for f in fields(TrainSettings) if f.name != "extra"}
    )
    trainer = Trainer(config, settings)
    print(
        f"{sum(p.numel() for p in trainer.flow.parameters())} parameters, "
        f"{len(trainer.sampler.images)} training images, resuming at step {trainer.step}"
    )
    if not args.export_only:
        trainer.run()
    path = trainer.export(args.export_val_limit)
    print(json.dumps(json.loads(path.with_suffix(".json").read_text())["validation"], indent=1))


if __name__ == "__main__":
    main()
