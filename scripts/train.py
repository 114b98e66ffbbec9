#!/usr/bin/env python3
"""Train an idfcompress model; resumes from runs/NAME/checkpoint.pt when it exists.

Float training, then quantisation-aware fine-tuning to exact integer arithmetic (every
exported model is quantised; --qat true trains with the quantised networks from the start or
from --init-from, a checkpoint or a .safetensors model):
  OMP_WAIT_POLICY=PASSIVE python scripts/train.py --name my-rgb --steps 15000 \
      --train ../shared/data/train/rgb \
      --val ../shared/data/val/rgb/mcmaster ../shared/data/val/rgb/bsds500-val
  OMP_WAIT_POLICY=PASSIVE python scripts/train.py --name my-rgb-x --qat true \
      --init-from runs/my-rgb/checkpoint.pt --steps 3000 --lr 2e-4 --warmup 100 ...
--minutes M trains for a wall-clock budget instead (the learning-rate schedule follows the
clock); --export-only writes the model and its card from the run's checkpoint.

Several GPUs or machines: the same command under torchrun (DistributedDataParallel; --batch
is per process, each process draws its own crops, the first one logs, validates, checkpoints
and exports):
  torchrun --standalone --nproc-per-node 8 scripts/train.py --name ... --device auto ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

import torch

from idfcompress.flow.config import ModelConfig
from idfcompress.training import Trainer, TrainSettings


def _kind(default: object):
    if isinstance(default, bool):
        return lambda v: v.lower() in ("1", "true", "yes")
    return type(default)


HELP = {
    "out_dir": "where runs/NAME/ (checkpoint.pt, log.jsonl) goes",
    "models_dir": "where the exported NAME.safetensors and NAME.json go",
    "steps": "optimiser steps in all (the schedule's length unless --minutes is set)",
    "minutes": "wall-clock budget; > 0: stop there, the schedule follows the clock",
    "batch": "crops per step (per process under torchrun)",
    "crop": "side of the square training crops, a multiple of 2**levels",
    "upscale": "largest factor by which a crop is enlarged (bicubic); 1: never",
    "upscale_share": "share of the crops enlarged, by a factor drawn between 1 and --upscale",
    "lr": "peak learning rate (Adam)",
    "warmup": "steps of linear warm-up",
    "final_lr_fraction": "the cosine decay ends at this share of --lr",
    "ema": "decay of the exponential moving average of the weights",
    "seed": "seed of the crops and the initial weights",
    "checkpoint_minutes": "minutes between checkpoints",
    "validate_every": "steps between validations (log line)",
    "val_images": "validation images per validation",
    "qat": "true: train the quantised (exact) networks",
    "init_from": "start from this checkpoint.pt or .safetensors model",
    "device": "auto (a GPU where there is one), cpu or cuda",
    "in_channels": "3 (colour) or 1 (grey: luma of the training images)",
    "levels": "squeeze levels (tiles are coded in cores of multiples of 2**levels)",
    "couplings_per_level": "permutation + coupling pairs per level",
    "coupling": "two-way or four-way",
    "width": "channels of the coupling networks",
    "hidden_layers": "middle convolutions of every network",
    "middle_kernel": "1 or 3: kernel of the middle convolutions",
    "prior_width": "channels of the prior networks",
    "mixture_components": "logistics in the top level's mixtures",
    "top_split": "code the top level in two stages, the second conditioned on the first",
    "context_split": "code each logistic stage in two halves, the second half's prior also "
    "conditioned on the first half (warm-starts from a model without it)",
    "top_low": "smallest top-level value the mixture tables cover",
    "top_high": "largest top-level value the mixture tables cover",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="model name (file stem in models/)")
    parser.add_argument("--train", nargs="+", required=True, help="training image folders")
    parser.add_argument("--val", nargs="+", required=True, help="validation image folders")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--export-only", action="store_true", help="export the checkpoint, no training"
    )
    parser.add_argument(
        "--export-val-limit",
        type=int,
        default=None,
        help="images per val set at export; also caps the (at most 8) validation images that "
        "decide between the EMA and the raw weights",
    )
    for f in fields(TrainSettings):
        if f.name in ("name", "train", "val", "extra"):
            continue
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=_kind(f.default),
            default=f.default,
            help=f"{HELP[f.name]} (default {f.default})",
        )
    for f in fields(ModelConfig):
        if f.name == "seed":  # permutation seed: kept at its default
            continue
        kind = _kind(f.default)
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=kind,
            default=f.default,
            dest=f"model_{f.name}",
            help=f"{HELP[f.name]} (default {f.default})",
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
    if trainer.rank == 0:
        print(
            f"{sum(p.numel() for p in trainer.flow.parameters())} parameters, "
            f"{len(trainer.sampler.images)} training images, {trainer.world} process(es), "
            f"resuming at step {trainer.step}"
        )
    if not args.export_only:
        trainer.run()
    if torch.distributed.is_initialized():
        # all processes leave together, before the first one exports on its own: a process
        # that tore its group down while another still used it died with SIGABRT in gloo
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if trainer.rank:
            # the other processes are done (their checkpoint is saved): leave without the
            # interpreter's teardown, where a rank once aborted with "terminate called
            # without an active exception" while the machine was loaded
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    if trainer.rank == 0:
        path = trainer.export(args.export_val_limit)
        card = json.loads(path.with_suffix(".json").read_text())
        print(json.dumps(card["validation"], indent=1))


if __name__ == "__main__":
    main()
