"""Training: the paper's recipe and a CPU-budget recipe, validation every epoch, resumable runs.

The paper (section 4.1) trains with MSE on the location map, Adam at lr 1e-4, batch 12,
horizontal flips and 512x512 inputs. The ``cpu`` preset reaches useful accuracy on a laptop:
256x256 crops, batch 8, Adam at 2e-3 with a cosine decay, flips, 90-degree rotations and
colour jitter, and bfloat16 autocast (faster than fp32 on AVX-512 CPUs with bf16 support).

A run writes into ``out_dir``:

- ``last.pt``: model and optimizer state after the latest epoch (resume reads it);
- ``best/``: the best validation epoch as a Hub-ready folder (``model.safetensors`` and timm's
  ``config.json`` with the chosen ``localization`` settings);
- ``log.csv`` / ``log.jsonl``: one row per epoch; ``curves.png`` when matplotlib is installed.

Multi-process training uses torch's standard engine: launch with
``torchrun --nproc_per_node N -m liteunet train ...`` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import timm
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .inference import cpu_has_native_bf16
from .models import create_model, load_model
from .pretrained import load_localization_settings
from .complexity import count_macs, count_params
from .data import AugmentConfig, PointDataset, Sample, collate, load_split, split_label
from .data.batches import SizedCrops, sized_batches
from .data.per_set import values_per_set
from .data.targets import gaussian_target
from .teacher import teacher_targets, teachers_per_set
from .train_logs import write_logs
from .evaluate import (
    LocalizationSettings,
    best_shared_setting,
    evaluate_maps,
    predict_maps,
    settings_score_table,
)

__all__ = ["CHECKPOINT_BY", "PRESETS", "TrainConfig", "save_weights", "train"]

_logger = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    # Lite-UNet paper, section 4.1.
    "paper": dict(lr=1e-4, batch_size=12, crop_size=512, augment="paper", schedule="constant", amp="off"),
    # Good accuracy within a CPU budget.
    # amp "auto": bf16 on CUDA and on CPUs with native bf16 (AVX-512 BF16 / AMX); emulated bf16
    # on other CPUs made a step ~10x slower than fp32 (AVX2 EPYC, 2026-12-02).
    "cpu": dict(lr=2e-3, batch_size=8, crop_size=256, augment="full", schedule="cosine", amp="auto"),
}

# How the best checkpoint is scored over several validation sets (TrainConfig.checkpoint_by).
CHECKPOINT_BY = ("shared", "per-dataset")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved beside its outputs.

    Attributes:
        model: model name (``lite_unet``, ``unet``, ...).
        datasets: shared data set names (``crc``, ``mbm``, ...) or folders of images with CSV
            points (see :func:`liteunet.data.load_folder`).
        val_datasets: validation sets; by default the ``validation`` split of each shared set,
            and for a folder a fixed 20% of its images.
        out_dir: where checkpoints, weights and logs go.
        preset: ``paper`` or ``cpu``; explicit fields below override it.
        pretrained: fine-tune from a pretrained tag (``lite_unet.multi``) or a weights folder.
        samples_per_epoch: random crops per data set per epoch (default: its number of images);
            a dict maps data set names to their own counts, with key ``"*"`` for the rest, to
            weight a hard set more in one model.
        crop_sizes: crop sides to draw from, one per batch (e.g. ``(256, 384, 512)``), each
            batch holding about the pixels of ``batch_size`` crops of ``crop_size``
            (:mod:`liteunet.data.batches`): weights that see several contexts give points that
            depend less on the tile size. ``None``: every batch ``crop_size``.
        sigma: width in pixels of the Gaussian targets; a dict maps data set names to their own
            width, with key ``"*"`` for the rest: sets of large cells (bcdata's nuclei are
            15-30 px across) learn better with wider targets than sets of small ones.
        max_steps: stop after this many optimizer steps (for tests and smoke runs).
        time_limit_min: stop at the first epoch end after this many minutes of training
            (counted over resumes).
        val_max_images: validate on at most this many images per data set.
        augment: ``paper``, ``full``, ``generalist`` (scale, stain and modality changes for
            weights meant for any lab), ``generalist-ihc`` (and bright-field crops re-stained as
            nuclear IHC) or ``none``; a dict maps data set names to their own, with key ``"*"``
            for the rest (else the preset's), e.g. milder changes for a set whose annotations
            depend on colour.
        scale_range, scale_prob: replace the augmentation's random zoom (smallest and largest
            factor, and the share of crops zoomed); ``None`` keeps the preset's.
        normalize: input scaling, ``auto`` (8-bit / 255, others percentiles) or ``percentile``
            (per-image percentiles whatever the bit depth, as StarDist and Cellpose); stored with
            the weights so inference scales the same way. ``None``: the ``pretrained`` weights'
            own (``lite_unet.generalist`` stores ``percentile``), else ``auto``.
        checkpoint_by: how ``best/`` is chosen when several sets are validated: ``shared``
            scores every set with the one setting chosen for all of them (what ``localize()``
            uses by default); ``per-dataset`` scores each set with its own best setting (what
            ``tuned_for=`` uses). Either way the score is the mean over sets of mean(F1@5, F1@10).
        teachers: distillation: weights (tag or folder) whose location maps of a set's training
            images are learned beside its points, by set name with ``"*"`` for the rest
            (:mod:`liteunet.teacher`); ``teacher_weight`` is the maps' share of each target;
            ``teacher_targets`` ``"points"`` teaches the teacher's peaks drawn as Gaussians instead;
            ``teacher_tta`` (``"flips"``, ``"d4"``) averages the teacher over mirrored copies.
    """

    model: str = "lite_unet"
    datasets: Sequence[str] = ("crc",)
    val_datasets: Sequence[str] | None = None
    out_dir: str = "runs/lite_unet"
    preset: str = "cpu"
    epochs: int = 30
    batch_size: int | None = None
    crop_size: int | None = None
    crop_sizes: Sequence[int] | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    schedule: str | None = None
    amp: str | None = None
    augment: str | dict[str, str] | None = None
    scale_range: tuple[float, float] | None = None
    scale_prob: float | None = None
    normalize: str | None = None
    sigma: float | dict[str, float] = 2.0
    num_classes: int = 1
    in_chans: int = 3
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    samples_per_epoch: int | dict[str, int] | None = None
    val_max_images: int | None = None
    checkpoint_by: str = "shared"
    teachers: dict[str, str] | None = None
    teacher_weight: float = 0.5
    teacher_targets: str = "maps"
    teacher_tta: str | None = None
    max_steps: int | None = None
    time_limit_min: float | None = None
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    resume: bool = True
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with the preset's values filled in where fields are unset."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.checkpoint_by not in CHECKPOINT_BY:
            raise ValueError(f"unknown checkpoint_by {self.checkpoint_by!r}; choose one of {list(CHECKPOINT_BY)}")
        if self.crop_sizes is not None and (not self.crop_sizes or min(self.crop_sizes) < 16):
            raise ValueError(f"crop_sizes must be sides of at least 16 px, got {list(self.crop_sizes)}")
        values = asdict(self)
        for key, value in PRESETS[self.preset].items():
            if values.get(key) is None:
                values[key] = value
        if values["normalize"] is None:
            # Fine-tuning keeps the input scaling the weights learned with.
            stored = load_localization_settings(self.pretrained) if self.pretrained else {}
            values["normalize"] = stored.get("normalize", "auto")
        return TrainConfig(**values)


# --- data -------------------------------------------------------------------------------------


def _crops_per_set(samples: int | dict[str, int] | None, names: list[str], sizes: list[int]) -> list[int]:
    """Crops drawn from each training set per epoch: one count for all, or per name with ``*`` as default."""
    counts = values_per_set(samples, names, "samples_per_epoch")
    return [count or size for count, size in zip(counts, sizes)]


def _sigma_per_set(sigma: float | dict[str, float], names: list[str]) -> list[float]:
    """Target width of each training set: one width for all, or per name with ``*`` (else 2 px) for the rest."""
    widths = [float(width) for width in values_per_set(sigma, names, "sigma", default=2.0)]
    if not all(w > 0 for w in widths):  # `not >` also catches NaN
        raise ValueError(f"sigma must be a positive width in pixels for every set, got {sigma}")
    return widths


def _augment_per_set(cfg: TrainConfig) -> list[AugmentConfig | Literal[False]]:
    """Each training set's augmentation: one preset for all, or per name with ``*`` (else the
    recipe's preset) for the rest; ``scale_range`` / ``scale_prob`` apply to every set that augments."""
    names = values_per_set(cfg.augment, list(cfg.datasets), "augment", default=PRESETS[cfg.preset]["augment"])
    if not isinstance(cfg.augment, dict):  # one preset for all: 'none' with a zoom is refused by preset()
        return [AugmentConfig.preset(names[0], cfg.scale_range, cfg.scale_prob) or False] * len(names)
    return [False if name == "none" else AugmentConfig.preset(name, cfg.scale_range, cfg.scale_prob) for name in names]


def _stored_sigma(sigma: float | dict[str, float]) -> float:
    """The one width the weights' settings record: that of the sets not named (the per-set widths go in ``training``)."""
    return float(sigma.get("*", 2.0)) if isinstance(sigma, dict) else float(sigma)


def _epoch_indices(sizes: Sequence[int], per_set: Sequence[int], seed: int, epoch: int) -> list[int]:
    """Indices into the concatenated training sets: ``per_set[i]`` draws from set ``i``, shuffled.

    Drawing a fixed number from each set balances small and large data sets in one model.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    out, offset = [], 0
    for size, n in zip(sizes, per_set):
        picks = rng.permutation(np.resize(np.arange(size), n)) if n >= size else rng.choice(size, n, replace=False)
        out.extend((offset + picks).tolist())
        offset += size
    return rng.permutation(out).tolist()


def _epoch_batches(
    cfg: TrainConfig, sizes: Sequence[int], per_set: Sequence[int], rank: int, world: int, epoch: int,
) -> list[list[tuple[int, int]]]:
    """This process's batches of ``(index, crop side)`` keys for ``epoch``.

    Batches are cut before they are shared out, so every process gets whole batches of one side
    and, the total trimmed to a multiple of ``world``, the same number of steps.
    """
    indices = _epoch_indices(sizes, per_set, cfg.seed, epoch)
    rng = np.random.default_rng([cfg.seed, epoch, 11])
    batches = sized_batches(indices, cfg.batch_size, cfg.crop_size, cfg.crop_sizes, rng)
    return batches[: len(batches) // world * world][rank::world]


# --- weights ------------------------------------------------------------------------------------


def save_weights(
    model: nn.Module,
    folder: str | Path,
    settings: LocalizationSettings,
    model_args: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a Hub-ready weights folder: ``model.safetensors`` and timm's ``config.json``.

    The config carries ``localization`` (threshold, min_distance, sigma), so a model loaded
    from this folder localizes without tuning, and ``extra`` (e.g. training metadata).
    """
    folder = Path(folder)
    model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    timm.models.save_for_hf(model, folder, model_args=model_args, safe_serialization=True)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["localization"] = settings.to_dict()
    if extra:
        config.update(extra)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    # safetensors writes through a private temporary file (mode 0600); weights are meant to be
    # shared, so give the file the permissions any other new file gets here.
    umask = os.umask(0)
    os.umask(umask)
    (folder / "model.safetensors").chmod(0o666 & ~umask)
    return folder


# --- loop ---------------------------------------------------------------------------------------


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _amp_dtype(kind: str, device: torch.device) -> torch.dtype | None:
    if kind == "auto":
        kind = "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "off"
    if kind == "off":
        return None
    if kind in ("bf16", "fp16") and device.type == "cpu" and not cpu_has_native_bf16():
        # One step (batch 8, 256 px, 1 thread) took 201 s in bf16 against 10 s in fp32 on an
        # AVX2 EPYC (session 41): say so before hours go by.
        _logger.warning("amp %s on this CPU is emulated (no AVX-512 BF16 or AMX): each step runs "
                        "about 20x slower than --amp off", kind)
    if kind == "bf16":
        return torch.bfloat16
    if kind == "fp16":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    raise ValueError(f"unknown amp {kind!r}; use auto, off, bf16 or fp16")


def _build_model(cfg: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    model_args = dict(cfg.model_args, num_classes=cfg.num_classes, in_chans=cfg.in_chans)
    if cfg.pretrained is None:
        return create_model(cfg.model, **model_args), model_args
    source_args = {k: v for k, v in model_args.items() if k != "num_classes"}
    model = load_model(cfg.pretrained, **source_args)
    if model.num_classes != cfg.num_classes:
        _adapt_head(model, cfg.num_classes)
    return model, model_args


@torch.no_grad()
def _adapt_head(model: nn.Module, num_classes: int) -> None:
    """Give a pretrained model ``num_classes`` location maps.

    A one-map head is copied into every new map, so fine-tuning starts from a model that already
    finds cells and only has to learn which class each one is; otherwise the head starts afresh.
    """
    old = model.get_classifier()
    model.reset_classifier(num_classes)
    if isinstance(old, nn.Conv2d) and old.out_channels == 1:
        new = model.get_classifier()
        new.weight.copy_(old.weight.expand_as(new.weight))
        new.bias.copy_(old.bias.expand_as(new.bias))
    _logger.info("head: %d -> %d location maps%s", old.out_channels, num_classes,
                 " (each a copy of the pretrained map)" if old.out_channels == 1 else "")


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run. Returns the best validation record.

    Example:
        >>> from liteunet.train import TrainConfig, train
        >>> train(TrainConfig(datasets=["crc"], out_dir="runs/crc", epochs=40))  # doctest: +SKIP
    """
    cfg = config.resolved()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = _device(cfg.device)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if device.type == "cuda" and distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    is_main = rank == 0
    out = Path(cfg.out_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=list))
    torch.manual_seed(cfg.seed)

    model, model_args = _build_model(cfg)
    model.to(device)
    amp_dtype = _amp_dtype(cfg.amp, device)

    sigmas = _sigma_per_set(cfg.sigma, list(cfg.datasets))
    teachers = teachers_per_set(cfg.teachers, list(cfg.datasets))
    augments = _augment_per_set(cfg)
    samples = [load_split(name, "train") for name in cfg.datasets]
    train_sets = [
        PointDataset(
            set_samples,
            crop_size=cfg.crop_size,
            augment=augment,
            target_fn=functools.partial(gaussian_target, sigma=sigma),
            num_classes=cfg.num_classes,
            in_chans=cfg.in_chans,
            seed=cfg.seed,
            # Mirror images smaller than a crop (with their points): zero frames would become a
            # cue the model ties to the small data sets (seen with ADI's 150x150 images).
            pad_mode="symmetric",
            normalize=cfg.normalize,
            soft_targets=teacher_targets(
                teacher, set_samples, cfg.teacher_targets, name, functools.partial(gaussian_target, sigma=sigma),
                cfg.num_classes, device, amp_dtype, cfg.teacher_tta,
            ) if teacher else None,
            soft_target_weight=cfg.teacher_weight,
        )
        for name, set_samples, sigma, teacher, augment in zip(cfg.datasets, samples, sigmas, teachers, augments)
    ]
    val_names = list(cfg.val_datasets or cfg.datasets)
    val_sets = {split_label(n): load_split(n, "validation")[: cfg.val_max_images] for n in val_names}
    crops = SizedCrops(train_sets)
    sizes = [len(s) for s in train_sets]
    per_set = _crops_per_set(cfg.samples_per_epoch, list(cfg.datasets), sizes)
    # The batches of every epoch are known up front (seeded), so the schedule's length is too.
    batches_by_epoch = [_epoch_batches(cfg, sizes, per_set, rank, world, epoch) for epoch in range(cfg.epochs)]
    total_steps = sum(map(len, batches_by_epoch))
    if not all(batches_by_epoch):
        raise ValueError(f"batch_size {cfg.batch_size} x {world} processes exceeds the {sum(per_set)} crops per epoch")

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use cosine or constant")

    start_epoch, step, best, rows, elapsed_before = 0, 0, {"score": -1.0}, [], 0.0
    last_path = out / "last.pt"
    if cfg.resume and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], json.loads(state["best"])
        rows, elapsed_before = json.loads(state["rows"]), state["elapsed"]
        if is_main:
            _logger.info("resumed %s at epoch %d (step %d)", last_path, start_epoch, step)

    net: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed else model
    started = time.time()
    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        for ds in train_sets:
            ds.set_epoch(epoch)
        loader = DataLoader(
            crops, batch_sampler=batches_by_epoch[epoch], num_workers=cfg.num_workers, collate_fn=collate,
            persistent_workers=False,
        )
        net.train()
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and is_main), leave=False)
        for batch in bar:
            image, target = batch["image"].to(device), batch["target"].to(device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                pred = net(image)
            loss = F.mse_loss(pred.float(), target)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(cfg, step, total_steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4g}")
            if cfg.max_steps and step >= cfg.max_steps:
                stop = True
                break
        # The time limit ends a run at an epoch boundary only: a checkpoint always holds whole
        # epochs, so a resumed run never skips the rest of a cut-short one.
        if cfg.time_limit_min and (elapsed_before + time.time() - started) / 60 >= cfg.time_limit_min:
            stop = True
        row: dict[str, Any] = {
            "epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else math.nan,
            "lr": optimizer.param_groups[0]["lr"], "minutes": round((elapsed_before + time.time() - started) / 60, 2),
        }
        if is_main:
            row.update(_validate(model, val_sets, cfg, device, amp_dtype, best, model_args, out, row))
            rows.append(row)
            write_logs(rows, out)
            torch.save(
                {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "step": step, "best": json.dumps(best), "rows": json.dumps(rows),
                    "elapsed": elapsed_before + time.time() - started,
                },
                last_path.with_suffix(".tmp"),
            )
            os.replace(last_path.with_suffix(".tmp"), last_path)  # never leave a half-written checkpoint
            _logger.info("%s", epoch_line(row, cfg.epochs))
        if distributed:
            dist.barrier()
        if stop:
            break
    if distributed:
        _check_replicas_agree(model, out, is_main)
        # Free the DDP reducer (it holds the process group) and let every process get here before
        # the group goes: tearing it down under a live reducer aborted a gloo run now and then.
        del net
        dist.barrier()
        dist.destroy_process_group()
    return best


def _learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at ``step``: constant, or a short linear warm-up then a cosine decay.

    A pure function of the step, so a resumed run (even with more epochs) continues smoothly.
    """
    if cfg.schedule == "constant":
        return cfg.lr
    warmup = max(1, int(0.03 * total_steps))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def _check_replicas_agree(model: nn.Module, out: Path, is_main: bool) -> None:
    """Gather a checksum of every process's parameters; DDP keeps them identical."""
    checksum = torch.tensor([sum(p.detach().double().abs().sum().item() for p in model.parameters())])
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    values = [float(t.item()) for t in gathered]
    if is_main:
        (out / "ddp_check.json").write_text(json.dumps({"param_checksums": values}))
    if max(values) - min(values) > 1e-9 * max(abs(v) for v in values):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One readable log line for an epoch: loss, validation F1 per set, time.

    Example:
        >>> epoch_line({"epoch": 3, "train_loss": 0.0123, "lr": 1e-4, "minutes": 2.5,
        ...             "val/crc/f1@10": 0.8123, "val/mean_score": 0.8123}, 30)
        'epoch 3/30: loss 0.0123, lr 0.0001, F1@10 crc 0.812, score 0.812, 2.5 min'
    """
    f1 = ", ".join(
        f"{key.split('/')[1]} {value:.3f}" for key, value in row.items() if key.startswith("val/") and key.endswith("/f1@10")
    )
    parts = [f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4g}", f"lr {row['lr']:.3g}"]
    if f1:
        parts.append(f"F1@10 {f1}")
    if "val/mean_score" in row:
        parts.append(f"score {row['val/mean_score']:.3f}")
    return ", ".join(parts) + f", {row['minutes']:g} min"


def _validate(
    model: nn.Module,
    val_sets: dict[str, list[Sample]],
    cfg: TrainConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    best: dict[str, Any],
    model_args: dict[str, Any],
    out: Path,
    row: dict[str, Any],
) -> dict[str, Any]:
    """Validate, choose localization settings, and save ``best/`` when the mean score improves."""
    maps = {
        name: predict_maps(model, samples, device, amp_dtype, progress=False, normalize=cfg.normalize)
        for name, samples in val_sets.items()
    }
    candidates, table = _score_settings(maps, val_sets, cfg)
    # One setting for all sets: a user of the weights gets one threshold.
    settings, shared_score = best_shared_setting(candidates, table)
    settings.normalize = cfg.normalize
    result: dict[str, Any] = {"threshold": settings.threshold, "min_distance": settings.min_distance}
    for name, samples in val_sets.items():
        summary = evaluate_maps(maps[name], samples, settings, num_classes=cfg.num_classes).compute()
        for key in ("f1@5", "f1@10", "precision@10", "recall@10", "mae", "rmse"):
            result[f"val/{name}/{key}"] = summary[key]
        if "positive_index_error" in summary:
            result[f"val/{name}/ki67_index_error"] = summary["positive_index_error"]
        result[f"val/{name}/own_settings_score"] = float(table[name].max())
    result["val/shared_score"] = shared_score
    result["val/own_settings_score"] = float(np.mean([t.max() for t in table.values()]))
    result["val/mean_score"] = result["val/own_settings_score" if cfg.checkpoint_by == "per-dataset" else "val/shared_score"]
    if result["val/mean_score"] > best["score"]:
        best.clear()
        best.update(score=result["val/mean_score"], epoch=row["epoch"], **result)
        save_weights(
            model, out / "best", settings, model_args,
            extra={"training": {
                "datasets": [str(d) for d in cfg.datasets], "epoch": row["epoch"], "step": row["step"],
                "sigma": dict(zip(map(str, cfg.datasets), _sigma_per_set(cfg.sigma, list(cfg.datasets)))),
                **({"teachers": dict(cfg.teachers), "teacher_weight": cfg.teacher_weight, "teacher_targets": cfg.teacher_targets,
                    **({"teacher_tta": cfg.teacher_tta} if cfg.teacher_tta else {})} if cfg.teachers else {}),
                "minutes": row["minutes"], "preset": cfg.preset, "hardware": _hardware(device),
                "params": count_params(model), "macs_512": count_macs(model, (cfg.in_chans, 512, 512)),
                "validation": {k: v for k, v in result.items() if k.startswith("val/")},
            }},
        )
    return result


def _score_settings(
    maps: dict[str, list[np.ndarray]], val_sets: dict[str, list[Sample]], cfg: TrainConfig
) -> tuple[list[LocalizationSettings], dict[str, np.ndarray]]:
    if len(maps) == 1:
        return settings_score_table(maps, val_sets, sigma=_stored_sigma(cfg.sigma), num_classes=cfg.num_classes)
    # A coarser grid while training; the final weights are re-tuned by liteunet.release.
    return settings_score_table(
        maps, val_sets, thresholds=np.round(np.arange(0.1, 0.91, 0.1), 2), min_distances=(2, 3, 4),
        sigma=_stored_sigma(cfg.sigma), num_classes=cfg.num_classes,
    )


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()} CPU, {threads} thread{'s' if threads > 1 else ''}"


if __name__ == "__main__":  # pragma: no cover - `python -m liteunet.train ...`, kept working
    import os
    import sys

    # The command line is `liteunet train`; hand over to it (environment, and so torchrun's rank
    # variables, kept) rather than import the CLI into a library module.
    os.execv(sys.executable, [sys.executable, "-m", "liteunet", "train", *sys.argv[1:]])
