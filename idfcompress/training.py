"""Training of flow models on folders of photographs, with exact resume and export."""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from .flow.config import ModelConfig
from .flow.loading import save_model
from .flow.model import IntegerFlow
from .format.container import FORMAT_VERSION

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"}


def image_files(folders: Sequence[str | Path]) -> list[Path]:
    """Every image file below the given folders (or the files themselves), sorted."""
    found: list[Path] = []
    for item in map(Path, folders):
        if item.is_file():
            found.append(item)
        else:
            found += [p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def load_pixels(path: Path, channels: int) -> np.ndarray:
    """An image file as uint8 (H, W, channels): RGB, or luma for one channel."""
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


class CropSampler:
    """Random crops with flips from images held in memory, drawn in proportion to area.

    With ``upscale`` above 1, a share ``upscale_share`` of the crops is cut smaller and
    enlarged (bicubic) by a random factor between 1 and ``upscale``: pixel-scale content as
    smooth as a full-resolution camera image's, which the box-reduced photographs lack."""

    def __init__(
        self,
        files: Sequence[Path],
        channels: int,
        crop: int,
        seed: int,
        upscale: float = 1.0,
        upscale_share: float = 0.0,
    ):
        self.images = [
            a for a in (load_pixels(f, channels) for f in files) if min(a.shape[:2]) >= crop
        ]
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop}")
        areas = np.array([a.shape[0] * a.shape[1] for a in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.crop = crop
        self.upscale = upscale
        self.upscale_share = upscale_share
        self.rng = np.random.default_rng(seed)

    @property
    def pixels(self) -> int:
        return sum(a.shape[0] * a.shape[1] for a in self.images)

    def batch(self, size: int) -> torch.Tensor:
        crops = []
        for index in self.rng.choice(len(self.images), size=size, p=self.weights):
            patch = self._patch(self.images[index])
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            crops.append(patch.transpose(2, 0, 1))
        return torch.from_numpy(np.ascontiguousarray(np.stack(crops))).float()

    def _patch(self, image: np.ndarray) -> np.ndarray:
        side = self.crop
        if self.upscale > 1 and self.rng.random() < self.upscale_share:
            side = math.ceil(self.crop / self.rng.uniform(1.0, self.upscale))
        y = self.rng.integers(0, image.shape[0] - side + 1)
        x = self.rng.integers(0, image.shape[1] - side + 1)
        patch = image[y : y + side, x : x + side]
        if side == self.crop:
            return patch
        channels = patch.shape[2]
        small = Image.fromarray(patch[:, :, 0] if channels == 1 else patch)
        large = small.resize((self.crop, self.crop), Image.Resampling.BICUBIC)
        return np.asarray(large).reshape(self.crop, self.crop, channels)


@torch.no_grad()
def validation_bits(flow: IntegerFlow, files: Sequence[Path], tile: int = 256) -> float:
    """Bits per subpixel of whole images tiled as the codec tiles them: the ideal bits of the
    tiles' cores as the codec codes them (``flow.coding.core_ideal_bits``: the model's priors, a
    fitted first stage where it is smaller, each other stage's log-scale shift) plus the real
    size of their margins' payloads."""
    from .flow.coding import core_ideal_bits
    from .format.layout import core_of, margin_shapes, margins_of, tiles_of
    from .predictive.regions import encode_regions

    flow.eval()
    side = flow.config.granularity
    bits = 0.0
    subpixels = 0
    for path in files:
        pixels = load_pixels(path, flow.config.in_channels)
        subpixels += pixels.size
        for t in tiles_of(pixels.shape[0], pixels.shape[1], tile):
            if margin_shapes(t, side, pixels.shape[2]):
                bits += 8 * len(encode_regions(margins_of(pixels, t, side)))
            core = core_of(pixels, t, side)
            if core.size:
                x = torch.from_numpy(core.transpose(2, 0, 1).copy()).float().unsqueeze(0)
                bits += core_ideal_bits(flow, x)
    return bits / max(subpixels, 1)


def validation_file_bits(flow: IntegerFlow, files: Sequence[Path], tile: int = 256) -> float:
    """Bits per subpixel of real .idf files of whole images (RGB or grey as the model codes)
    with every tile core coded by the flow (``mode="flow"``, ``idfc compress
    --progressive``): the model's own figure, since the default encoder codes every tile
    without it."""
    from .codec.encoder import encode
    from .flow.loading import LoadedModel
    from .imageio import from_array

    # a snapshot: the codec caches tables per flow object, and training moves the weights
    loaded = LoadedModel("validation", bytes(32), copy.deepcopy(flow).eval())
    bits = 0
    subpixels = 0
    for path in files:
        pixels = load_pixels(path, flow.config.in_channels)
        if pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        data, stats = encode(from_array(pixels), model=loaded, tile_size=tile, mode="flow")
        bits += 8 * len(data)
        subpixels += stats.subpixels
    return bits / max(subpixels, 1)


@dataclass
class TrainSettings:
    """Everything a training run needs besides the architecture."""

    name: str
    train: list[str]
    val: list[str]
    out_dir: str = "runs"
    models_dir: str = "models"
    steps: int = 20000
    minutes: float = 0.0  # > 0: a wall-clock budget; the schedule then follows elapsed time
    batch: int = 16
    crop: int = 64
    upscale: float = 1.0
    upscale_share: float = 0.0
    lr: float = 1e-3
    warmup: int = 300
    final_lr_fraction: float = 0.05
    ema: float = 0.999
    seed: int = 0
    checkpoint_minutes: float = 5.0
    validate_every: int = 1000
    val_images: int = 8
    qat: bool = False
    init_from: str = ""
    device: str = "auto"
    extra: dict = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    """``auto``: a GPU where there is one; under torchrun, the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process: set by torchrun, (0, 1) otherwise."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def learning_rate(settings: TrainSettings, step: int, seconds: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``final_lr_fraction`` by
    the last step, or by the end of the time budget when ``minutes`` is set."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = min(1.0, (step - settings.warmup) / max(1, settings.steps - settings.warmup))
    if settings.minutes > 0:
        progress = min(1.0, seconds / (60.0 * settings.minutes))
    floor = settings.final_lr_fraction
    return settings.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """One training run: model, EMA copy, optimiser, data, checkpoints, log."""

    def __init__(self, config: ModelConfig, settings: TrainSettings):
        self.config = config
        self.settings = settings
        self.device = pick_device(settings.device)
        self.rank, self.world = distributed_rank()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.run_dir = Path(settings.out_dir) / settings.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(settings.seed)
        # channels-last tensors: measured 10-23 % faster training steps on CPU
        layout = torch.channels_last
        self.flow = IntegerFlow(config).to(self.device, memory_format=layout)
        self.ema = IntegerFlow(config).to(self.device, memory_format=layout)
        self.ema.load_state_dict(self.flow.state_dict())
        self.ema.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=settings.lr)
        self.sampler = CropSampler(
            image_files(settings.train),
            config.in_channels,
            settings.crop,
            settings.seed + self.rank,  # each process draws its own crops
            settings.upscale,
            settings.upscale_share,
        )
        self.val_files = image_files(settings.val)
        self.step = 0
        self.seconds = 0.0
        self.lineage: dict = {}  # where the initial weights came from (--init-from)
        # the settings the checkpoint was trained with (an --export-only run has its own)
        self.trained_settings: dict = asdict(settings)
        self.hardware = self._hardware()  # what trained the checkpoint, once it exists
        self.best_val: float | None = None
        self.checkpoint = self.run_dir / "checkpoint.pt"
        if self.checkpoint.exists():
            self._resume()
        elif settings.init_from:
            self._initialise(Path(settings.init_from))
        if settings.qat and not self.flow.quantized:
            self.quantize()
        # DistributedDataParallel averages the gradients of all processes (torchrun); every
        # process then takes the same optimiser step and keeps the same EMA copy
        self.model: torch.nn.Module = self.flow
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.flow, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    def _initialise(self, path: Path) -> None:
        """Start from another run's weights: a checkpoint.pt (its raw weights, which the
        optimiser was tracking) or a .safetensors model."""
        self.lineage = {"init_from": str(path)}
        if path.suffix == ".safetensors":
            from .flow.loading import load_flow

            state = load_flow(path).state_dict()
        else:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["config"] != self.config.to_json():
                raise ValueError(f"{path} was made with another model config")
            state = saved["flow"]
            self.lineage |= {
                "init_steps": saved["step"],
                "init_hours": round(saved["seconds"] / 3600, 3),
            }
            parent = json.loads(saved.get("lineage", "{}"))
            if parent:
                self.lineage["parent"] = parent
        # A model with context networks may start from one without: they start at zero.
        missing, unexpected = self.flow.load_state_dict(state, strict=False)
        if unexpected or any(k.split(".")[0] not in ("contexts", "top_context") for k in missing):
            raise ValueError(f"{path} does not fit this model config")
        if missing:
            self.lineage["grown_by"] = sorted({k.split(".")[0] for k in missing})
        self.ema.load_state_dict(self.flow.state_dict())

    def quantize(self) -> None:
        """Switch the model (and its EMA copy) to exact arithmetic, calibrated on a batch of
        training crops; training then goes on quantisation-aware."""
        calibration = self.sampler.batch(max(16, self.settings.batch)).to(self.device)
        self.flow.quantize(calibration)
        self._sync_ema_buffers()  # the EMA keeps its own weights, on the same exponents

    def _state(self) -> dict:
        return {
            "config": self.config.to_json(),
            "settings": json.dumps(asdict(self.settings)),
            "flow": self.flow.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "seconds": self.seconds,
            "best_val": self.best_val,
            "lineage": json.dumps(self.lineage),
            "hardware": self.hardware,
            "numpy_rng": json.dumps(self._all_rng_states()),
            "torch_rng": torch.get_rng_state(),
        }

    def _all_rng_states(self) -> list[dict]:
        """The crop samplers' states of every process (a collective call under torchrun)."""
        state = self.sampler.rng.bit_generator.state
        if self.world == 1:
            return [state]
        states: list = [None] * self.world
        dist.all_gather_object(states, state)
        return states

    def save_checkpoint(self) -> None:
        """Write the checkpoint (every process must call it; the first one writes)."""
        state = self._state()
        if self.rank:
            return
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint)

    def _resume(self) -> None:
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        if state["config"] != self.config.to_json():
            raise ValueError(f"{self.checkpoint} was made with another model config")
        self.flow.load_state_dict(state["flow"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.seconds = state["seconds"]
        self.best_val = state["best_val"]
        self.trained_settings = json.loads(state["settings"])
        self.lineage = json.loads(state.get("lineage", "{}"))
        self.hardware = state.get("hardware", "not recorded (checkpoint before 2026-12-01)")
        rng_states = json.loads(state["numpy_rng"])
        if isinstance(rng_states, dict):  # checkpoints of single-process runs before torchrun
            rng_states = [rng_states]
        if len(rng_states) == self.world:
            self.sampler.rng.bit_generator.state = rng_states[self.rank]
        else:  # another process count: resume the weights, draw new crops
            self.sampler.rng = np.random.default_rng([self.settings.seed, self.rank, self.step])
        torch.set_rng_state(state["torch_rng"])

    def log(self, record: dict) -> None:
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def train_step(self) -> float:
        self.flow.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.settings, self.step, self.seconds)
        batch = self.sampler.batch(self.settings.batch).to(self.device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        bits = self.model(batch)
        bpd = bits.mean() / batch[0].numel()
        self.optimizer.zero_grad(set_to_none=True)
        bpd.backward()
        torch.nn.utils.clip_grad_norm_(self.flow.parameters(), 100.0)
        self.optimizer.step()
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.flow.parameters(), strict=True):
                e.lerp_(p, 1.0 - self.settings.ema)
        self.step += 1
        return float(bpd.detach())

    def validate(self, limit: int | None) -> float:
        files = (
            self.val_files
            if limit is None
            else self.val_files[:: max(1, len(self.val_files) // limit)][:limit]
        )
        self._sync_ema_buffers()
        return validation_bits(self.ema, files)

    def validate_files(self, limit: int | None) -> float | None:
        """Real .idf bits per subpixel of the validation subset (exact models only)."""
        if not self.ema.quantized:
            return None
        files = self.val_files[:: max(1, len(self.val_files) // (limit or 1))][:limit]
        self._sync_ema_buffers()
        return validation_file_bits(self.ema, files)

    def _hardware(self) -> str:
        return (
            f"{platform.machine()}, {torch.get_num_threads()} threads x {self.world} "
            f"process(es), {self.device}"
        )

    def _sync_ema_buffers(self) -> None:
        """The EMA copy takes the trained model's quantisation state, then fixes its own
        weight exponents from its own weights."""
        for e, b in zip(self.ema.buffers(), self.flow.buffers(), strict=True):
            e.copy_(b)
        if self.ema.quantized:
            self.ema.snap_quantized()

    def run(self, progress: bool = True) -> None:
        settings = self.settings
        self.trained_settings = asdict(settings)
        self.hardware = self._hardware()
        last_checkpoint = time.monotonic()
        started = time.monotonic() - self.seconds
        window: list[float] = []
        bar = None
        if progress and self.rank == 0:
            try:
                from tqdm import tqdm
            except ImportError:  # the "train" extra; the log lines are written either way
                print("no progress bar: pip install 'idfcompress[train]' for one")
            else:
                total = settings.steps
                bar = tqdm(total=total, initial=self.step, unit="step", dynamic_ncols=True)
        budget = settings.minutes * 60 if settings.minutes > 0 else float("inf")
        out_of_time = self.seconds >= budget
        while self.step < settings.steps and not out_of_time:
            window.append(self.train_step())
            self.seconds = time.monotonic() - started
            out_of_time = self._agree(self.seconds >= budget)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(bpd=f"{np.mean(window[-50:]):.3f}")
            last = self.step == settings.steps or out_of_time
            if self.rank == 0 and (self.step % settings.validate_every == 0 or last):
                val = self.validate(settings.val_images)
                self.log(
                    {
                        "step": self.step,
                        "seconds": round(self.seconds, 1),
                        "lr": learning_rate(settings, self.step, self.seconds),
                        "train_bpd": float(np.mean(window)),
                        "val_bpd": val,
                        "val_file_bpsp": self.validate_files(settings.val_images),
                        "processes": self.world,
                    }
                )
                window = []
            if self._agree(time.monotonic() - last_checkpoint > settings.checkpoint_minutes * 60):
                self.save_checkpoint()
                last_checkpoint = time.monotonic()
        self.save_checkpoint()
        if bar is not None:
            bar.close()

    def _agree(self, decision: bool) -> bool:
        """The first process's decision, on every process (they checkpoint and stop together)."""
        if self.world == 1:
            return decision
        flag = torch.tensor([int(decision)], device=self.device)
        dist.broadcast(flag, 0)
        return bool(flag.item())

    def export(self, val_limit: int | None = None) -> Path:
        """Write models/NAME.safetensors and its model card models/NAME.json."""
        settings = self.settings
        models = Path(settings.models_dir)
        models.mkdir(parents=True, exist_ok=True)
        weights = models / f"{settings.name}.safetensors"
        if not self.flow.quantized:  # shipped models always compute exactly
            self.quantize()
        self._sync_ema_buffers()
        self.flow.snap_quantized()
        # the EMA copy usually validates better; ship whichever does on a validation subset
        candidates = {"ema": self.ema, "raw": self.flow}
        count = min(8, val_limit or 8)
        subset = self.val_files[:: max(1, len(self.val_files) // count)][:count]
        scores = {k: validation_bits(f, subset) for k, f in candidates.items()}
        chosen = min(scores, key=scores.get)
        flow = candidates[chosen]
        flow.check_exact()
        digest = save_model(flow, weights, {"name": settings.name})
        per_set = {}
        for folder in settings.val:
            files = image_files([folder])
            if val_limit:
                files = files[:val_limit]
            per_set[folder] = {
                "images": len(files),
                "ideal_bpsp": round(validation_bits(flow, files), 4),
                "file_bpsp": round(validation_file_bits(flow, files), 4),
                "file_format": FORMAT_VERSION,
            }
        card = {
            "name": settings.name,
            "weights": weights.name,
            "sha256": digest,
            "config": json.loads(self.config.to_json()),
            "parameters": sum(p.numel() for p in flow.parameters()),
            "data": {"train": settings.train, "train_pixels": self.sampler.pixels},
            "training": {
                "steps": self.step,
                "hours": round(self.seconds / 3600, 3),
                "batch": self.trained_settings["batch"],
                "processes": self.world,
                "crop": self.trained_settings["crop"],
                "upscale": self.trained_settings.get("upscale", 1.0),
                "upscale_share": self.trained_settings.get("upscale_share", 0.0),
                "lr": self.trained_settings["lr"],
                "ema": self.trained_settings["ema"],
                "qat": self.trained_settings["qat"],
                **self.lineage,
                "weights_shipped": chosen,
                "subset_val_bpsp": {k: round(v, 4) for k, v in scores.items()},
                "hardware": self.hardware,
            },
            "validation": per_set,
        }
        (models / f"{settings.name}.json").write_text(json.dumps(card, indent=2) + "\n")
        return weights
